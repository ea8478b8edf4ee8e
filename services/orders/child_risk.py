"""The pre-trade gates again, before every child order (issue 13 item 2): load → one core call.

Intake checked the intent; a child is checked on its own quantity and limit price against the
limits in force and the strategy's position *now* (`models.risk.check_child`), because the book
moved since the intent was admitted (other intents filled, a halt came). A refused child is
cancelled unsent with the breach as its reason and a `risk_events` row carrying the numbers;
the intent then ends by its plan like any child that could not go.

Scope, as at intake: a stock child with its conId resolved. Bracket exits and roll hedges
(children with a parent) only ever reduce what their entry opened, and combo BAGs have no
per-instrument limit, so they pass. The NBBO band is not re-checked here: a child's price is
made from the quote inside the intent's own slippage band (a flatten may pay 1,000 bps).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection, Row

from models.child_orders import ChildOrder
from models.intent import Side
from models.risk import Breach, MarketFacts, check_child
from services.risk.current_limits import current_limits
from store import positions as positions_repo
from store import risk_events
from store.orders import OrderRow


def child_breach(
    conn: Connection, intent: Row[Any], row: OrderRow, order: ChildOrder
) -> Breach | None:
    """The first gate `order` (child `row` of `intent`) breaches, or None to send it."""
    if row.sec_type != "STK" or row.con_id is None or row.parent_order_id is not None:
        return None
    position = Decimal(0)
    for held in positions_repo.open_of(conn, str(intent.strategy)):
        if held.con_id == row.con_id:
            position += Decimal(held.quantity)
    return check_child(
        strategy=str(intent.strategy),
        key=str(intent.instrument),
        side=Side(intent.side),
        quantity=order.quantity,
        price=order.limit_price,
        limits=current_limits(conn),
        market=MarketFacts(known=True, position=position),
    )


def record_breach(
    conn: Connection, intent: Row[Any], row: OrderRow, breach: Breach, now: datetime
) -> None:
    """The refusal, with its numbers, where the desk reviews risk decisions."""
    risk_events.record(
        conn,
        kind="CHILD_REFUSED",
        severity="warning",
        scope="intent",
        scope_key=str(intent.signal_id),
        code=breach.reason.value,
        message=breach.message,
        details={"child": row.client_order_id, **breach.numbers},
        now=now,
    )
