"""`epm bridge`: the one process that holds the IB sockets (clients 1 and 2)."""

from __future__ import annotations

import typer

from epm.cli import app
from epm.commands.limits import require_valid_limits


@app.command("bridge")
def bridge_command() -> None:
    """Run the IB bridge until SIGTERM; refuses to start (exit 3) if another bridge runs."""
    require_valid_limits("bridge")
    from ibgateway_bridge.__main__ import main

    raise typer.Exit(main())
