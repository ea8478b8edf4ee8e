"""Repository of `execution_metrics`, and the reads an intent's shortfall is computed from.

One intent-level row per ended intent (`order_id` NULL) marks it done; per-child rows carry
the child's `order_id`. Quantities and money come back as `Decimal`; nothing is summed in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.schema import commissions, execution_metrics, execution_orders, fills, intents

ENDED = ("COMPLETED", "EXPIRED", "CANCELLED")


def _intent_done() -> sa.Exists:
    return (
        sa.select(execution_metrics.c.id)
        .where(
            execution_metrics.c.intent_id == intents.c.id,
            execution_metrics.c.order_id.is_(None),
        )
        .exists()
    )


def ended_without_metrics(conn: Connection, limit: int) -> list[int]:
    """Ids of ended intents that have no intent-level metrics row yet, oldest first."""
    rows = conn.execute(
        sa.select(intents.c.id)
        .where(intents.c.status.in_(ENDED), ~_intent_done())
        .order_by(intents.c.id)
        .limit(limit)
    )
    return [int(r.id) for r in rows]


@dataclass(frozen=True, slots=True)
class IntentRow:
    id: int
    signal_id: str
    strategy: str | None
    con_id: int | None
    side: str | None
    quantity: Decimal | None
    target_price: Decimal | None
    status: str


def lock_intent(conn: Connection, intent_id: int) -> IntentRow | None:
    """The intent, locked for this transaction on PostgreSQL (SQLite's writer lock already
    serializes), or None when it has its metrics already (another worker got there first)."""
    query = sa.select(intents).where(intents.c.id == intent_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        return None
    done = conn.execute(
        sa.select(execution_metrics.c.id)
        .where(execution_metrics.c.intent_id == intent_id, execution_metrics.c.order_id.is_(None))
        .limit(1)
    ).first()
    if done is not None:
        return None
    return IntentRow(
        id=int(row.id),
        signal_id=row.signal_id,
        strategy=row.strategy,
        con_id=row.con_id,
        side=row.side,
        quantity=row.quantity,
        target_price=row.target_price,
        status=row.status,
    )


@dataclass(frozen=True, slots=True)
class ChildRow:
    id: int
    client_order_id: str
    action: str | None
    con_id: int | None
    details: Mapping[str, Any]


def entry_children(conn: Connection, intent_id: int) -> list[ChildRow]:
    """The intent's children that are not exits of another child (bracket legs), in id order."""
    rows = conn.execute(
        sa.select(
            execution_orders.c.id,
            execution_orders.c.client_order_id,
            execution_orders.c.action,
            execution_orders.c.con_id,
            execution_orders.c.details,
        )
        .where(
            execution_orders.c.intent_id == intent_id,
            execution_orders.c.parent_order_id.is_(None),
        )
        .order_by(execution_orders.c.id)
    )
    return [
        ChildRow(int(r.id), r.client_order_id, r.action, r.con_id, r.details or {}) for r in rows
    ]


@dataclass(frozen=True, slots=True)
class FillRow:
    order_id: int
    execution_id: str
    shares: Decimal
    price: Decimal
    multiplier: Decimal | None
    executed_at: datetime
    commission: Decimal | None


def effective_fills_of(conn: Connection, order_ids: Sequence[int]) -> list[FillRow]:
    """Fills in effect of `order_ids` with their commission (None before any report)."""
    if not order_ids:
        return []
    rows = conn.execute(
        sa.select(
            fills.c.order_id,
            fills.c.execution_id,
            fills.c.shares,
            fills.c.price,
            fills.c.multiplier,
            fills.c.executed_at,
            commissions.c.commission,
        )
        .select_from(
            fills.outerjoin(commissions, commissions.c.execution_id == fills.c.execution_id)
        )
        .where(fills.c.order_id.in_(list(order_ids)), fills.c.superseded_by.is_(None))
        .order_by(fills.c.executed_at, fills.c.id)
    )
    return [
        FillRow(
            int(r.order_id),
            r.execution_id,
            r.shares,
            r.price,
            r.multiplier,
            r.executed_at,
            r.commission,
        )
        for r in rows
    ]


def insert_rows(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append metrics rows; how many."""
    values = [dict(r) for r in rows]
    # One executemany needs the same keys in every row: the absent ones are NULL.
    keys = {k for v in values for k in v}
    values = [{k: v.get(k) for k in keys} for v in values]
    if values:
        conn.execute(execution_metrics.insert(), values)
    return len(values)


def of_intent(conn: Connection, intent_id: int) -> list[Any]:
    """Every metrics row of an intent (the intent's own first), for reports and tests."""
    return list(
        conn.execute(
            sa.select(execution_metrics)
            .where(execution_metrics.c.intent_id == intent_id)
            .order_by(execution_metrics.c.order_id.is_not(None), execution_metrics.c.id)
        )
    )
