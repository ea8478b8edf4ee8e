"""The live picture while the demo trades: read from the ledger, drawn with rich.

Read-only, and only what an operator watching the session wants at a glance: the run's intents
with their progress, the orders still working at the venue, the fills so far and the P&L by
strategy (the books' own view, `services.books.views`), plus the script's event log.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

WORKING_STATES = ("PLACED", "PARTIAL_FILLED", "CANCEL_REQUESTED")
# The run's intents: its own signals, and the flat-by-close ones beat submitted since it started
# (intent ids above `:after`, the highest when the run began).
RUN_INTENTS = "(i.signal_id LIKE :run OR (i.signal_id LIKE 'flat-%' AND i.id > :after))"


def last_id(engine: sa.engine.Engine, table: str) -> int:
    """The highest id in `table` (intents, audit_log): what a run counts from."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar_one())


@dataclass(frozen=True)
class Snapshot:
    """One reading of the ledger for the live view and the end summary."""

    intents: list[dict[str, Any]]
    working: int
    orders: int
    fills: int
    pnl: list[dict[str, Any]]


def read(engine: sa.engine.Engine, run: str, after: int) -> Snapshot:
    from services.books.views import GroupBy, pnl_view
    from services.orders.intent_report import list_intents

    with engine.connect() as conn:
        working = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM execution_orders WHERE state IN "
                "('PLACED', 'PARTIAL_FILLED', 'CANCEL_REQUESTED')"
            )
        ).scalar_one()
        orders = conn.execute(
            sa.text("SELECT COUNT(*) FROM execution_orders WHERE ib_order_id IS NOT NULL")
        ).scalar_one()
        fills = conn.execute(
            sa.text("SELECT COUNT(*) FROM fills WHERE superseded_by IS NULL")
        ).scalar_one()
        pnl = pnl_view(conn, GroupBy.STRATEGY)
    # The orders path's own summary: filled counts combo units for a roll, as the intent does.
    prefix = f"demo-{run}-"
    rows = [
        r
        for r in reversed(list_intents(engine, limit=500))
        if str(r["signal_id"]).startswith(prefix)
        or (str(r["signal_id"]).startswith("flat-") and int(r["intent_id"]) > after)
    ]
    return Snapshot(rows, int(working), int(orders), int(fills), pnl)


def _qty(value: object) -> str:
    if value is None:
        return ""
    return f"{Decimal(str(value)).normalize():f}"


def intents_table(snap: Snapshot, run: str, title: str = "intents") -> Table:
    table = Table(title=title, title_justify="left")
    columns = ("signal", "strategy", "instrument", "side", "template", "filled / qty", "status")
    for column in (*columns, "why"):
        table.add_column(column)
    for row in snap.intents:
        style = {"COMPLETED": "green", "WORKING": "yellow", "REJECTED": "red"}.get(row["status"])
        table.add_row(
            str(row["signal_id"]).removeprefix(f"demo-{run}-"),
            row["strategy"] or "",
            row["instrument"] or "",
            row["side"] or "",
            row["template"] or "",
            f"{_qty(row['filled'])} / {_qty(row['quantity'])}",
            Text(row["status"], style=style or ""),
            row["reason"] or "",
        )
    return table


def pnl_table(rows: list[dict[str, Any]], key: str, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in (key, "quantity", "realized", "unrealized", "fees", "net"):
        table.add_column(column, justify="left" if column == key else "right")
    for row in rows:
        table.add_row(*(str(row.get(c) if row.get(c) is not None else "") for c in (
            key, "quantity", "realized", "unrealized", "fees", "net",
        )))  # fmt: skip
    return table


def render(
    snap: Snapshot, run: str, venue_time: str, events: list[str], pids: dict[str, int]
) -> RenderableType:
    head = Text.assemble(
        ("epm demo ", "bold"),
        f"run {run} · venue {venue_time} ET · {len(pids)} processes · ",
        f"orders at the venue {snap.orders} (working {snap.working}) · fills {snap.fills}",
    )
    log = Text("\n".join(events[-8:]) or "waiting for the venue", style="dim")
    return Group(
        head,
        intents_table(snap, run),
        pnl_table(snap.pnl, "strategy", "P&L by strategy"),
        log,
    )
