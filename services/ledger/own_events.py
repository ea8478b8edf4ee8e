"""Use case: apply one of our own order events (SCHEDULED, PLACED, CANCEL_REQUESTED, ...).

The orders path records its commands on the order's state machine through here, in the caller's
transaction, so a placement is in the ledger before it is queued to the bridge.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.engine import Connection

from models.orders import OrderEvent, Transition, apply
from services.ledger.result import OrderNotFoundError
from services.ledger.transitions import save_transition
from store import order_events
from store import orders as orders_repo


def apply_order_event(
    conn: Connection,
    client_order_id: str,
    event: OrderEvent,
    *,
    payload: Mapping[str, object] | None = None,
    dedupe_key: str | None = None,
) -> Transition:
    """Apply one of our own events (SCHEDULED, PLACED, CANCEL_REQUESTED, CLOSED, a risk reject).

    The order row is locked, the transition persisted and the event appended in the caller's
    transaction. A `dedupe_key` makes a retried call a no-op.

    Raises
    ------
    OrderNotFoundError
        No order with this client_order_id.
    InvalidTransition
        The event cannot happen in the order's state (a bug in the caller).
    """
    row = orders_repo.lock_by_ref(conn, client_order_id)
    if row is None:
        raise OrderNotFoundError(f"no order {client_order_id}")
    fsm = orders_repo.to_fsm(row)
    if dedupe_key is not None and order_events.recorded(conn, dedupe_key):
        return Transition(fsm, fsm, event, applied=False, note="duplicate")
    transition = apply(fsm, event)
    save_transition(
        conn, row, transition, now=event.ts_init, payload=payload, dedupe_key=dedupe_key
    )
    return transition
