"""The pure domain core: no I/O, no clock reads; time and market state are parameters."""
