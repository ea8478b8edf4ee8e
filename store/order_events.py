"""Repository of `order_events`: the append-only record of every fact about an order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.ledger_rules import RecordedEvent
from store.dialect import upsert
from store.schema import order_events


def recorded(conn: Connection, dedupe_key: str) -> bool:
    """Whether a callback (or command) with this key was recorded already."""
    found = conn.execute(
        sa.select(order_events.c.id).where(order_events.c.dedupe_key == dedupe_key)
    ).first()
    return found is not None


def append(
    conn: Connection,
    order_id: int,
    *,
    event_type: str,
    applied: bool,
    from_state: str | None,
    to_state: str | None,
    now: datetime,
    ib_status: str | None = None,
    reason: str | None = None,
    payload: Mapping[str, object] | None = None,
    dedupe_key: str | None = None,
    ts_event: datetime | None = None,
) -> None:
    """Append one event (a second append with the same `dedupe_key` is a no-op)."""
    stmt = upsert(conn, order_events).values(
        order_id=order_id,
        event_type=event_type,
        ib_status=ib_status,
        from_state=from_state,
        to_state=to_state,
        applied=applied,
        reason=reason,
        payload=dict(payload) if payload is not None else None,
        dedupe_key=dedupe_key,
        ts_event=ts_event,
        ts_init=now,
    )
    conn.execute(stmt.on_conflict_do_nothing())


def of_orders(conn: Connection, order_ids: Sequence[int]) -> list[RecordedEvent]:
    """The events of these orders, in recording order."""
    rows = conn.execute(
        sa.select(order_events)
        .where(order_events.c.order_id.in_(order_ids))
        .order_by(order_events.c.id)
    ).all()
    return [
        RecordedEvent(
            event_type=r.event_type,
            dedupe_key=r.dedupe_key,
            payload=r.payload,
            from_state=r.from_state,
            ts_init=r.ts_init,
            ts_event=r.ts_event,
        )
        for r in rows
    ]


def move(conn: Connection, from_orders: Sequence[int], to_order: int) -> None:
    """Re-attach the events of `from_orders` to `to_order` (an adoption)."""
    conn.execute(
        order_events.update()
        .where(order_events.c.order_id.in_(from_orders))
        .values(order_id=to_order)
    )
