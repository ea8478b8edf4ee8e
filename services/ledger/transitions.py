"""Advance an order's state machine and record the event that did it, in one step.

Every callback is recorded in `order_events`, applied or not (IB's own repeats, late statuses),
under its dedupe key, so a redelivered task finds it and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from models.ledger_reports import OpenOrderReport, OrderErrorReport, OrderStatusReport
from models.orders import OrderEvent, Transition, UnknownIbStatus, apply, event_from_ib_status
from services.ledger.orders import ensure_order
from services.ledger.result import LedgerResult, result_of
from store import order_events
from store import orders as orders_repo
from store.orders import OrderRow


def digest(prefix: str, payload: Mapping[str, object]) -> str:
    """The dedupe key of a callback with no key of its own: a hash of all of it."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return f"{prefix}:{hashlib.sha256(blob.encode()).hexdigest()[:32]}"


def save_transition(
    conn: Connection,
    row: OrderRow,
    transition: Transition,
    *,
    now: datetime,
    payload: Mapping[str, object] | None,
    dedupe_key: str | None,
) -> OrderRow:
    """Store the transition's order (when applied) and append its event; the row after it."""
    new = transition.order
    if transition.applied:
        orders_repo.store_fsm(conn, row, new, now)
    event = transition.event
    order_events.append(
        conn,
        row.id,
        event_type=event.type.value,
        applied=transition.applied,
        from_state=transition.previous.state.value,
        to_state=new.state.value,
        now=now,
        ib_status=event.ib_status,
        reason=transition.note or None,
        payload=payload,
        dedupe_key=dedupe_key,
        ts_event=event.ts_event,
    )
    return orders_repo.reload(conn, row)


def record_unapplied(
    conn: Connection,
    row: OrderRow,
    *,
    event_type: str,
    reason: str,
    now: datetime,
    payload: Mapping[str, object],
    dedupe_key: str,
    ib_status: str | None = None,
) -> LedgerResult:
    """Record a callback that changes nothing (kept for the audit of what IB said)."""
    order_events.append(
        conn,
        row.id,
        event_type=event_type,
        applied=False,
        from_state=row.state,
        to_state=row.state,
        now=now,
        ib_status=ib_status,
        reason=reason,
        payload=payload,
        dedupe_key=dedupe_key,
    )
    return result_of("recorded", row, applied=False, note=reason)


def apply_ib_event(
    conn: Connection,
    row: OrderRow,
    event: OrderEvent,
    *,
    now: datetime,
    payload: Mapping[str, object],
    dedupe_key: str,
) -> LedgerResult:
    """Apply an IB event to the order's state machine and record it."""
    transition = apply(orders_repo.to_fsm(row), event)
    row = save_transition(conn, row, transition, now=now, payload=payload, dedupe_key=dedupe_key)
    outcome = "applied" if transition.applied else "recorded"
    return result_of(outcome, row, transition.applied, transition.note or None)


def apply_ib_status(
    conn: Connection,
    row: OrderRow,
    ib_status: str,
    filled: Decimal,
    remaining: Decimal,
    *,
    now: datetime,
    payload: Mapping[str, object],
    dedupe_key: str,
) -> LedgerResult:
    """Apply an IB order status (orderStatus, or the one an openOrder carries) to the order."""
    try:
        event = event_from_ib_status(ib_status, filled, remaining, now)
    except UnknownIbStatus as e:
        return record_unapplied(
            conn,
            row,
            event_type=e.code,
            reason=str(e),
            now=now,
            payload=payload,
            dedupe_key=dedupe_key,
            ib_status=ib_status,
        )
    return apply_ib_event(conn, row, event, now=now, payload=payload, dedupe_key=dedupe_key)


def callback_order(
    conn: Connection,
    prefix: str,
    report: OrderStatusReport | OpenOrderReport | OrderErrorReport,
    *,
    perm_id: int | None,
    origin: str,
    now: datetime,
    order_ref: str | None = None,
    describe: Mapping[str, object] | None = None,
) -> tuple[dict[str, Any], str, OrderRow]:
    """The payload, dedupe key (a hash of the whole callback) and locked order of a callback."""
    payload = report.model_dump(mode="json")
    row = ensure_order(
        conn,
        order_ref=order_ref,
        client_id=report.client_id,
        ib_order_id=report.ib_order_id,
        perm_id=perm_id,
        fallback_key=f"{prefix}:{report.ib_order_id}",
        describe=describe or {},
        origin=origin,
        now=now,
    )
    return payload, digest(prefix, payload), row
