"""`epm sim`: the TWS gateway simulator, registered on the `epm` app.

The command itself is `tws_sim.cli.sim_command` (the simulator knows nothing of epm, so its
command line lives with it; `python -m tws_sim` runs the same function). This module only
puts it on `epm`'s app under the name `sim`.
"""

from __future__ import annotations

from epm.cli import app
from tws_sim.cli import sim_command

app.command("sim")(sim_command)

__all__ = ["sim_command"]
