"""Use case step: a combo's margin checked with a what-if before the BAG goes out (§6.4).

The first time a combo child is due and priced, a what-if copy of it (`{key}-whatif`, a freshly
allocated IB order id on the orders connection, client 1: ids come from that client's counter)
is queued instead of the BAG and the child is held. Each later tick reads the bridge's answer
(`ib:whatif:{order_ref}`) and `models.what_if.verdict` decides: still waiting (held), fits (the
numbers kept on the child, the BAG goes out), or refused: the combo and its legged fallback are
cancelled unsent, the intent REJECTED with the code, and a `risk_events` row
(`COMBO_MARGIN_REFUSED`) holds the numbers. No answer within `WHAT_IF_TIMEOUT` refuses
(fails closed).

With no account to check (`EPM_HEADROOM_CHECK=off`, or `auto` without a risk connection: the
rule intake's headroom gate follows) the combo goes out unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Row

from models.child_orders import ChildOrder
from models.intent import IntentStatus
from models.orders import OrderEvent, OrderEventType
from models.what_if import Fits, Refused, Waiting, verdict
from services.ledger.own_events import apply_order_event
from services.orders.venue import Venue
from services.orders.wind_down import wind_down
from services.risk.current_limits import current_limits
from store import intent_life, risk_events
from store import orders as orders_repo
from store.orders import OrderRow

WHAT_IF = "what_if"


@dataclass(frozen=True, slots=True)
class Ask:
    """Queue this what-if (after commit, in id order with the tick's placements)."""

    ib_order_id: int
    client_order_id: str
    order: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Wait:
    reason: str


@dataclass(frozen=True, slots=True)
class Refuse:
    code: str


def combo_margin(
    conn: Connection,
    venue: Venue,
    intent: Row[Any],
    row: OrderRow,
    child: ChildOrder,
    now: datetime,
) -> Ask | Wait | Refuse | None:
    """What the combo child may do now as far as its margin goes; None: send it."""
    account = venue.account(now)
    if account is None:
        return None
    details = dict(row.details or {})
    state = dict(details.get(WHAT_IF) or {})
    if state.get("verdict") == "fits":
        return None
    if not state:
        ask = Ask(
            ib_order_id=venue.allocate_id(),
            client_order_id=f"{row.client_order_id}-whatif",
            order={
                "action": row.action,
                "quantity": str(child.quantity),
                "order_type": child.order_type,
                "lmt_price": None if child.limit_price is None else str(child.limit_price),
                "tif": child.tif,
                "what_if": True,
            },
        )
        details[WHAT_IF] = {
            "ib_order_id": ask.ib_order_id,
            "order_ref": ask.client_order_id,
            "asked_at": now.isoformat(),
        }
        orders_repo.update_columns(conn, row, {"details": details}, now)
        return ask
    answer = venue.what_if_answer(str(state["order_ref"]))
    share = current_limits(conn).account.min_margin_headroom
    decided = verdict(answer, account, share, datetime.fromisoformat(state["asked_at"]), now)
    if isinstance(decided, Waiting):
        return Wait(decided.reason)
    if isinstance(decided, Fits):
        details[WHAT_IF] = {**state, "verdict": "fits", **decided.numbers}
        orders_repo.update_columns(conn, row, {"details": details}, now)
        return None
    _refuse(conn, intent, row, state, decided, now)
    return Refuse(decided.code)


def _refuse(
    conn: Connection,
    intent: Row[Any],
    row: OrderRow,
    state: dict[str, Any],
    refused: Refused,
    now: datetime,
) -> None:
    details = dict(row.details or {})
    details[WHAT_IF] = {**state, "verdict": refused.code, **refused.numbers}
    row = orders_repo.update_columns(conn, row, {"details": details}, now)
    apply_order_event(
        conn,
        row.client_order_id,
        OrderEvent(OrderEventType.CANCELLED, ts_init=now),
        payload={"reason": f"{refused.code}: {refused.message}", "unsent": True},
        dedupe_key=f"unsent:{row.client_order_id}",
    )
    # The legs would need the same margin: the fallback does not run either.
    wind_down(conn, intent.id, f"combo refused: {refused.code}", now)
    intent_life.set_status(
        conn,
        intent.id,
        IntentStatus.REJECTED.value,
        now,
        reason=refused.code,
        message=refused.message,
    )
    risk_events.record(
        conn,
        kind="COMBO_MARGIN_REFUSED",
        severity="warning",
        scope="intent",
        scope_key=str(intent.signal_id),
        code=refused.code,
        message=refused.message,
        details={"child": row.client_order_id, **state, **refused.numbers},
        now=now,
    )
