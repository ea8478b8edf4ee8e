"""`epm sim`: the TWS gateway simulator (IB's socket protocol, a matching engine, market data).

With no options it serves an always-open regular session of the default instruments on
127.0.0.1:4002 (`EPM_IB_PORT`), so a client can trade at any hour. `--port 0` lets the OS choose
a port; the first line printed says which (`tws_sim listening on 127.0.0.1:PORT`), so scripts
and tests can start it and read the port.
"""

from __future__ import annotations

from pathlib import Path

import typer

from epm.cli import app


@app.command("sim")
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
    from tws_sim.server.process import serve_forever

    if port is None:
        from epm.settings import get_settings

        port = get_settings().ib_port
    try:
        serve_forever(
            host=host,
            port=port,
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
