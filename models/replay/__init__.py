"""The pure parts of `epm replay` (blueprint §13.4): market events read from recorded data, the
replay venue's deterministic fill model, `--param` overrides and the side-by-side comparison.
`docs/replay.md`."""
