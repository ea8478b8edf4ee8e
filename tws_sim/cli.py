"""The simulator's command line: `epm sim [options]` and `python -m tws_sim [options]`.

With no options it serves an always-open regular session of the default instruments on
127.0.0.1:4002 (`EPM_IB_PORT`), so a client can trade at any hour. `--port 0` lets the OS choose
a port; the first line printed says which (`tws_sim listening on 127.0.0.1:PORT`), so scripts
and tests can start it and read the port.

The command lives here, not in epm, because the simulator knows nothing of epm (a test pins
it): `epm/commands/sim.py` only registers `sim_command` on the `epm` app. The default port is
read from the same environment variable epm's settings read, so `EPM_IB_PORT` points the bridge
and the simulator at one port without the simulator importing epm's settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import typer

#: the environment variable epm's settings read the gateway port from (`Settings.ib_port`)
PORT_ENV = "EPM_IB_PORT"
#: IB Gateway's paper-trading port, epm's default too
DEFAULT_PORT = 4002


def default_port(environ: Mapping[str, str] | None = None) -> int:
    """The port `--port` defaults to: `EPM_IB_PORT` when set (as epm reads it), else 4002.

    A value that is not an integer is a `ValueError`, which `sim_command` turns into a clean
    exit 2 rather than serving on some other port than the operator asked for.
    """
    env = os.environ if environ is None else environ
    raw = env.get(PORT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_PORT
    try:
        return int(raw.strip())
    except ValueError as e:
        raise ValueError(f"{PORT_ENV}={raw!r} is not a port number") from e


def sim_command(
    port: int | None = typer.Option(
        None, "--port", help="TCP port (default EPM_IB_PORT; 0 = OS-chosen, printed)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    scenario: str | None = typer.Option(
        None, "--scenario", help="Scenario name (default, fomc, faults) or YAML file."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the scenario's)."),
    start: str | None = typer.Option(
        None, "--start", help="Simulated start, ET HH:MM (default: the scenario's, else now)."
    ),
    speed: float = typer.Option(1.0, "--speed", min=0.001, help="Simulated seconds per second."),
    exec_log: str | None = typer.Option(
        None, "--exec-log", help="Append every execution/correction/commission as JSON lines."
    ),
    state_dir: str | None = typer.Option(
        None, "--state-dir", help="Keep the account (positions, orders, fills) across restarts."
    ),
    account: str = typer.Option("DU1234567", "--account", help="The paper account id."),
    no_pacing: bool = typer.Option(
        False, "--no-pacing", help="Do not enforce IB's 50 messages/s per client (benchmarks)."
    ),
) -> None:
    """Serve the simulated TWS / IB Gateway until interrupted."""
    # Imported here so `epm --help` (which registers this command) does not load the server.
    from tws_sim.server.process import serve_forever

    try:
        serve_forever(
            host=host,
            port=default_port() if port is None else port,
            scenario=scenario,
            seed=seed,
            start=start,
            speed=speed,
            exec_log=Path(exec_log) if exec_log else None,
            state_dir=Path(state_dir) if state_dir else None,
            account=account,
            pacing_limit=None if no_pacing else 50,
        )
    except (ValueError, OSError) as e:
        typer.echo(f"epm sim: {e}", err=True)
        raise typer.Exit(code=2) from e


def make_app() -> typer.Typer:
    """`sim_command` as a one-command Typer app (what `python -m tws_sim` runs; tests invoke it)."""
    app = typer.Typer(add_completion=False)
    app.command()(sim_command)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m tws_sim [options]`: the simulator's command with no epm loaded."""
    args = list(sys.argv[1:] if argv is None else argv)
    make_app()(args=args, prog_name="python -m tws_sim")
