"""`python -m tws_sim [options]`: the same as `epm sim [options]`, without loading the rest of
epm's commands (a drill or a test can start the simulator with nothing else imported)."""

from __future__ import annotations

import sys

import typer


def main() -> None:
    from epm.commands.sim import sim_command

    app = typer.Typer(add_completion=False)
    app.command()(sim_command)
    app(args=sys.argv[1:], prog_name="python -m tws_sim")


if __name__ == "__main__":
    main()
