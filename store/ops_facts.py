"""Read-only queries behind the operations metrics and alerts (`epm metrics`, `tasks.alerts`).

Quantities and money come back as `Decimal` and are summed in Python: SQLite stores them as
text, where a SQL sum would be a float.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.intent import ACTIVE_STATUSES
from models.orders import OrderState
from store import recon_runs
from store.schema import (
    execution_metrics,
    execution_orders,
    fills,
    intents,
    positions_current,
    risk_events,
)

# At the venue, or on its way there: what a TWAP or sweep still has in flight.
IN_FLIGHT_STATES = (
    OrderState.PLACED.value,
    OrderState.PARTIAL_FILLED.value,
    OrderState.CANCEL_REQUESTED.value,
)
_ACTIVE = [s.value for s in ACTIVE_STATUSES]


def active_intents_by_strategy(conn: Connection) -> dict[str, int]:
    """Every strategy that sent an intent, with how many of its intents are active (0 too: a
    strategy whose last intent ended reads 0, not nothing)."""
    active = sa.case((intents.c.status.in_(_ACTIVE), 1), else_=0)
    rows = conn.execute(
        sa.select(intents.c.strategy, sa.func.sum(active)).group_by(intents.c.strategy)
    )
    return {str(r[0] or ""): int(r[1] or 0) for r in rows}


def child_orders_in_flight(conn: Connection) -> int:
    """Orders of intents that are at the venue (placed, partly filled, cancel asked)."""
    count = conn.execute(
        sa.select(sa.func.count())
        .select_from(execution_orders)
        .where(
            execution_orders.c.intent_id.is_not(None),
            execution_orders.c.state.in_(IN_FLIGHT_STATES),
        )
    ).scalar_one()
    return int(count)


@dataclass(frozen=True, slots=True)
class ActiveIntentRow:
    signal_id: str
    strategy: str
    urgency: str
    received_at: datetime


def active_intents(conn: Connection, urgencies: Iterable[str]) -> list[ActiveIntentRow]:
    rows = conn.execute(
        sa.select(
            intents.c.signal_id, intents.c.strategy, intents.c.urgency, intents.c.received_at
        ).where(intents.c.status.in_(_ACTIVE), intents.c.urgency.in_(list(urgencies)))
    )
    return [
        ActiveIntentRow(r.signal_id, str(r.strategy or ""), str(r.urgency), r.received_at)
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class OpenPosition:
    con_id: int
    symbol: str | None
    quantity: Decimal


def open_positions(conn: Connection) -> list[OpenPosition]:
    """Net quantity per conId over strategies, flat ones left out."""
    rows = conn.execute(
        sa.select(
            positions_current.c.con_id, positions_current.c.symbol, positions_current.c.quantity
        )
    )
    net: dict[int, Decimal] = {}
    symbols: dict[int, str | None] = {}
    for r in rows:
        con_id = int(r.con_id)
        net[con_id] = net.get(con_id, Decimal(0)) + (r.quantity or Decimal(0))
        symbols[con_id] = symbols.get(con_id) or r.symbol
    return [OpenPosition(c, symbols[c], q) for c, q in sorted(net.items()) if q != 0]


def unrealized_by_strategy(conn: Connection) -> dict[str, Decimal]:
    """The books' unrealized P&L per strategy (positions never marked count as zero)."""
    rows = conn.execute(
        sa.select(positions_current.c.strategy_id, positions_current.c.unrealized_pl)
    )
    out: dict[str, Decimal] = {}
    for r in rows:
        out[r.strategy_id] = out.get(r.strategy_id, Decimal(0)) + (r.unrealized_pl or Decimal(0))
    return out


@dataclass(frozen=True, slots=True)
class SlippageRow:
    signal_id: str
    strategy: str
    slippage_bps: Decimal
    limit_bps: Decimal | None


def intent_slippage_since(conn: Connection, since: datetime) -> list[SlippageRow]:
    """Intent-level slippage (vs arrival) written at or after `since`, with the intent's own
    limit."""
    rows = conn.execute(
        sa.select(
            intents.c.signal_id,
            execution_metrics.c.strategy,
            execution_metrics.c.slippage_bps,
            intents.c.max_slippage_bps,
        )
        .select_from(execution_metrics.join(intents, intents.c.id == execution_metrics.c.intent_id))
        .where(
            execution_metrics.c.order_id.is_(None),
            execution_metrics.c.slippage_bps.is_not(None),
            execution_metrics.c.computed_at >= since,
        )
    )
    return [
        SlippageRow(r.signal_id, str(r.strategy or ""), r.slippage_bps, r.max_slippage_bps)
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class PositionGapRow:
    con_id: int
    symbol: str | None
    venue: Decimal
    ledger: Decimal


def latest_position_gaps(conn: Connection) -> list[PositionGapRow]:
    """The differences of the newest positions run that got the venue's answer (none before
    the first such run)."""
    for run in recon_runs.latest(conn, "positions", limit=10):
        if run.status == "failed":
            continue
        return [
            PositionGapRow(
                int(d["con_id"]), d.get("symbol"), Decimal(d["venue"]), Decimal(d["ledger"])
            )
            for d in _position_differences(run.differences)
        ]
    return []


def _position_differences(differences: Any) -> list[dict[str, Any]]:
    if not isinstance(differences, list):
        return []
    return [
        d
        for d in differences
        if isinstance(d, dict) and d.get("type") == "position" and d.get("con_id") is not None
    ]


def rejects_by_reason(conn: Connection) -> dict[tuple[str, str], int]:
    """(source, reason) → count: intents refused at intake, orders the venue rejected."""
    out: dict[tuple[str, str], int] = {}
    rows = conn.execute(
        sa.select(intents.c.reject_reason, sa.func.count())
        .where(intents.c.status == "REJECTED")
        .group_by(intents.c.reject_reason)
    )
    for r in rows:
        out[("intake", str(r[0] or "unknown"))] = int(r[1])
    rows = conn.execute(
        sa.select(execution_orders.c.reject_code, sa.func.count())
        .where(execution_orders.c.state == OrderState.REJECTED.value)
        .group_by(execution_orders.c.reject_code)
    )
    for r in rows:
        out[("venue", "unknown" if r[0] is None else str(r[0]))] = int(r[1])
    return out


def risk_events_by_kind(conn: Connection) -> dict[tuple[str, str], int]:
    """(kind, severity) → count of unresolved risk events."""
    rows = conn.execute(
        sa.select(risk_events.c.kind, risk_events.c.severity, sa.func.count())
        .where(risk_events.c.resolved_at.is_(None))
        .group_by(risk_events.c.kind, risk_events.c.severity)
    )
    return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}


def signal_time_if_first_fill(
    conn: Connection, intent_id: int, execution_id: str
) -> datetime | None:
    """The intent's signal time (its `created_at`, else when epm received it) when
    `execution_id` is the intent's only fill so far; None otherwise."""
    other = conn.execute(
        sa.select(fills.c.id)
        .select_from(fills.join(execution_orders, execution_orders.c.id == fills.c.order_id))
        .where(execution_orders.c.intent_id == intent_id, fills.c.execution_id != execution_id)
        .limit(1)
    ).first()
    if other is not None:
        return None
    row = conn.execute(
        sa.select(intents.c.payload, intents.c.received_at).where(intents.c.id == intent_id)
    ).first()
    if row is None:
        return None
    created = (row.payload or {}).get("created_at") if isinstance(row.payload, dict) else None
    if isinstance(created, str):
        try:
            parsed = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    received: datetime = row.received_at
    return received
