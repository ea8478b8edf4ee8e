"""`python -m tws_sim [options]`: the same as `epm sim [options]`, without loading any of epm
(a drill or a test can start the simulator with nothing else imported; see `tws_sim.cli`)."""

from __future__ import annotations

from tws_sim.cli import main

if __name__ == "__main__":
    main()
