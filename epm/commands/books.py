"""`epm positions [--json]` and `epm pnl [--by position|strategy|signal] [--json] [--day D]`.

Read-only views over the ledger (`services.books.views`): one row per position, strategy or
signal, with conid, symbol, strategy, quantity, avg_cost, realized, unrealized, fees, net
(decimals as strings; `realized`/`unrealized` gross of fees, net = realized + unrealized -
fees - financing; `docs/books.md`). Exit code 3: the ledger database cannot be used.
`--day D --by signal` reads the day's end-of-day attribution instead (cumulative figures as of
that close and the day's change, `day_*`); exit 1 when that day has none.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from epm.cli import app

_COLUMNS = (
    "conid",
    "symbol",
    "strategy",
    "signal_id",
    "quantity",
    "avg_cost",
    "realized",
    "unrealized",
    "fees",
    "financing",
    "net",
    "day_net",
    "state",
)


def _load(what: str, view: Any) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from epm.settings import get_settings
    from store.db import make_engine

    try:
        engine = make_engine(get_settings().resolved_database_url())
        with engine.connect() as conn:
            rows: list[dict[str, Any]] = view(conn)
            return rows
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm {what}: the ledger database cannot be used ({type(e).__name__}); "
            "is it migrated (`epm db upgrade`)?",
            err=True,
        )
        raise typer.Exit(3) from e


def _print(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from rich.console import Console
    from rich.table import Table

    columns = [c for c in _COLUMNS if any(r.get(c) is not None for r in rows)]
    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row[c]) for c in columns))
    Console().print(table if rows else "no positions")


@app.command("positions")
def positions_command(
    as_json: bool = typer.Option(False, "--json", help="A JSON array, one object per position."),
) -> None:
    """Every position: quantity, average cost, realized, unrealized, fees, net, state."""
    from services.books.views import positions_view

    _print(_load("positions", positions_view), as_json)


@app.command("pnl")
def pnl_command(
    by: str = typer.Option("position", "--by", help="position, strategy or signal."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array, one object per row."),
    day: str | None = typer.Option(
        None, "--day", help="A past session day (YYYY-MM-DD): its end-of-day attribution."
    ),
) -> None:
    """P&L per position, strategy or signal (attributed FIFO within a strategy)."""
    from services.books.views import GroupBy, pnl_view

    if by not in set(GroupBy):
        typer.echo(f"epm pnl: --by must be position, strategy or signal, not {by!r}", err=True)
        raise typer.Exit(2)
    group = GroupBy(by)
    if day is not None:
        from epm.commands.books_ops import attribution_rows

        if group is not GroupBy.SIGNAL:
            typer.echo(
                "epm pnl: --day is the end-of-day attribution: use it with --by signal", err=True
            )
            raise typer.Exit(2)
        _print(attribution_rows(day), as_json)
        return
    _print(_load("pnl", lambda conn: pnl_view(conn, group)), as_json)
