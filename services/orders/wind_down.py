"""Stop what is left of an intent's plan: the step cancel-intent, expiry and slippage aborts share.

Children never sent are cancelled at once (unsent, with the reason); children that may be at
the venue get CANCEL_REQUESTED and their IB order ids are returned, for the caller to ask the
bridge to cancel after its transaction commits (the venue's answer, through the ledger, ends
them). Finished children are left as they are: fills already made stay the intent's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from models.orders import TERMINAL_STATES, OrderEvent, OrderEventType, OrderState
from models.replace import REPLACES
from services.ledger.own_events import apply_order_event
from store import orders as orders_repo


def wind_down(
    conn: Connection, intent_id: int, reason: str, now: datetime, *, exits: bool = False
) -> list[int]:
    """Cancel the intent's unfinished children; the IB order ids to cancel at the venue.

    A bracket's exits (children with a parent) protect the position the entry built and keep
    working when the plan ends; only an operator's cancel (`exits=True`) takes them down too.
    """
    to_cancel: list[int] = []
    for row in orders_repo.of_intent(conn, intent_id):
        if row.parent_order_id is not None and row.parent_link != REPLACES and not exits:
            continue
        state = OrderState(row.state)
        if state in TERMINAL_STATES or state is OrderState.CANCEL_REQUESTED:
            continue
        key = row.client_order_id
        if row.ib_order_id is None:
            apply_order_event(
                conn,
                key,
                OrderEvent(OrderEventType.CANCELLED, ts_init=now),
                payload={"reason": reason, "unsent": True},
                dedupe_key=f"unsent:{key}",
            )
            continue
        apply_order_event(
            conn,
            key,
            OrderEvent(OrderEventType.CANCEL_REQUESTED, ts_init=now),
            payload={"reason": reason, "ib_order_id": row.ib_order_id},
            dedupe_key=f"cancel:{key}",
        )
        to_cancel.append(int(row.ib_order_id))
    return to_cancel
