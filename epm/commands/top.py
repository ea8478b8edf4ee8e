"""`epm top [--once] [--interval S] [--orders N]`: the operator's live terminal view (rich).

Connections (the bridge's sessions, lease, heartbeat, farms), halts (Redis halt flags and the
ledger's trading states), working orders, open positions with their P&L, and P&L by strategy,
refreshed every `--interval` seconds (default 2) until Ctrl-C on the terminal's alternate screen,
with the process's log lines sent to `DATA_DIR/logs/top.log` meanwhile; `--once` prints one frame
and exits (scripts, tests). Not on a terminal, frames are printed one after another. Read-only
(`services.top`). Exit 2: Redis not reached; 3: the ledger cannot be used.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from epm.cli import app

if TYPE_CHECKING:
    import redis
    from rich.console import Group
    from sqlalchemy.engine import Engine

    from services.top import Frame, Venue


def read_venue(client: redis.Redis) -> Venue:
    """The bridge's state as Redis holds it (the same keys `epm status` reads)."""
    from epm.commands.runbook import RedisBridge
    from services.top import Venue

    bridge = RedisBridge(client, timeout_s=0)
    state = bridge.state()
    holder, ttl = bridge.lease()
    halts = {}
    for key in sorted(client.scan_iter("epm:halt:*")):
        name = key.decode() if isinstance(key, bytes) else str(key)
        value = client.get(name)
        halts[name.removeprefix("epm:halt:")] = (
            value.decode() if isinstance(value, bytes) else str(value or "")
        )
    return Venue(
        connections={k: v for k, v in state.items() if k.startswith("client") and k[6:].isdigit()},
        lease_holder=holder,
        lease_ttl_ms=ttl,
        heartbeat=state.get("heartbeat"),
        farms=bridge.farms(),
        halts=halts,
    )


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> Any:
    from rich.table import Table

    table = Table(*columns, title=title, title_justify="left", expand=False)
    for row in rows:
        table.add_row(*row)
    if not rows:
        table.add_row(empty, *([""] * (len(columns) - 1)))
    return table


def render(frame: Frame) -> Group:
    """One frame as rich renderables, top to bottom."""
    from rich.console import Group
    from rich.text import Text

    v = frame.venue
    lease = f"lease {v.lease_holder} ({v.lease_ttl_ms} ms)" if v.lease_holder else "no bridge lease"
    header = Text(
        f"epm top  {frame.at.isoformat(timespec='seconds')}  {lease}  "
        f"heartbeat {v.heartbeat or 'none'}",
        style="bold",
    )
    connections = _table(
        "Connections",
        ("session", "state"),
        [(k, s) for k, s in sorted(v.connections.items())]
        + [(f"farm {k}", s) for k, s in sorted(v.farms.items())],
        "no bridge state",
    )
    halts = _table(
        "Halts",
        ("scope", "state", "reason", "by", "since"),
        [(k, "HALTED (flag)", reason, "", "") for k, reason in sorted(v.halts.items())]
        + [(s["scope"], s["state"], s["reason"], s["actor"], s["since"]) for s in frame.states],
        "none",
    )
    order_cols = [
        "order",
        "ib_id",
        "strategy",
        "symbol",
        "side",
        "qty",
        "filled",
        "type",
        "limit",
        "state",
        "ib_status",
    ]
    shown = len(frame.orders)
    orders = _table(
        f"Working orders ({shown} of {frame.orders_total})",
        order_cols,
        [[o[c] for c in order_cols] for o in frame.orders],
        "none",
    )
    pos_cols = [
        "symbol",
        "strategy",
        "quantity",
        "avg_cost",
        "mark",
        "unrealized",
        "realized",
        "fees",
        "net",
        "state",
    ]
    positions = _table(
        "Positions",
        pos_cols,
        [[_cell(p.get(c)) for c in pos_cols] for p in frame.positions],
        "flat",
    )
    pnl_cols = ("strategy", "realized", "unrealized", "fees", "net", "positions")
    pnl = _table(
        "P&L by strategy",
        pnl_cols,
        [[_cell(p.get(c)) for c in pnl_cols] for p in frame.strategies],
        "none",
    )
    return Group(header, connections, halts, orders, positions, pnl)


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _frame(engine: Engine, client: redis.Redis, max_orders: int) -> Frame:
    from services.top import load_frame

    return load_frame(engine, read_venue(client), datetime.now(UTC), max_orders)


@app.command("top")
def top_command(
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between refreshes.", min=0.2),
    max_orders: int = typer.Option(20, "--orders", help="Working orders shown.", min=1),
) -> None:
    """Live view: connections, halts, working orders, positions and P&L."""
    import redis
    import sqlalchemy as sa
    from rich.console import Console
    from rich.live import Live

    from epm.logging import logs_diverted_to
    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from store.db import make_engine

    settings = get_settings()
    client = get_redis(settings)
    engine = make_engine(settings.resolved_database_url())
    # Not a terminal (a pipe, a test): wide enough that the tables are not cut.
    tty = sys.stdout.isatty()
    width = None if tty else int(os.environ.get("COLUMNS", "200"))
    console = Console(width=width)
    try:
        if once or not tty:
            # One frame; not on a terminal (a pipe, a file), one frame after another.
            while True:
                console.print(render(_frame(engine, client, max_orders)))
                sys.stdout.flush()
                if once:
                    return
                time.sleep(interval)
        # Log lines would cut through the view: they go to a file while it is drawn, on the
        # terminal's alternate screen.
        log_path = settings.data_dir / "logs" / "top.log"
        with (
            logs_diverted_to(log_path),
            Live(render(_frame(engine, client, max_orders)), console=console, screen=True) as live,
        ):
            while True:
                time.sleep(interval)
                live.update(render(_frame(engine, client, max_orders)))
    except KeyboardInterrupt:
        return
    except redis.RedisError as e:
        typer.echo(f"epm top: Redis not reached: {e}", err=True)
        raise typer.Exit(2) from e
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm top: the ledger database cannot be used ({type(e).__name__}); "
            "is it migrated (`epm db upgrade`)?",
            err=True,
        )
        raise typer.Exit(3) from e
