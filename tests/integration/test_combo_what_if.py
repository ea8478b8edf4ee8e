"""The combo what-if on the orders path, with the bridge played by its Redis keys: the what-if
is queued before any BAG (an id of its own, `whatIf` set), the combo waits for the answer, and a
venue that never answers refuses the roll after the timeout (fails closed), nothing traded."""

from __future__ import annotations

from datetime import datetime, timedelta

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.what_if import WHAT_IF_TIMEOUT
from services.orders.plan_intent import plan_admitted
from services.orders.send_due import send_due
from tasks.orders import BridgeVenue
from tests.integration.test_orders_path import (
    CALL_FAR,
    CALL_NEAR,
    T0,
    children,
    option_quote,
    placements,
    r,
    roll,
    status,
)

__all__ = ["r"]  # the Redis fixture, shared with the orders path tests


def bridge_up(r: redis.Redis, at: datetime) -> None:
    """What a running bridge keeps: client 2 READY with a fresh heartbeat, the account, and
    fresh quotes of the legs."""
    state = {"client1": "READY", "client2": "READY", "heartbeat": at.isoformat()}
    r.hset("ib:bridge:state", mapping=state)
    option_quote(r, CALL_NEAR, at, "20.00", "20.20", "0.55")
    option_quote(r, CALL_FAR, at, "15.00", "15.30", "0.45")
    r.hset(
        "ib:account:DU1",
        mapping={
            "NetLiquidation": "1000000",
            "ExcessLiquidity": "1000000",
            "AvailableFunds": "1000000",
        },
    )


def test_an_unanswered_what_if_refuses_the_roll_after_the_timeout(
    engine: Engine, r: redis.Redis
) -> None:
    intent_id = roll(engine, r)
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    bridge_up(r, T0)
    tick = send_due(engine, venue, T0)
    (asked,) = placements(r)
    assert asked.order.what_if and asked.contract.sec_type == "BAG"
    assert asked.client_order_id == f"epm-{intent_id}-combo-whatif"
    combo = children(engine, intent_id)[0]
    assert tick.held[combo.client_order_id] == "asked a what-if"
    assert (
        combo.ib_order_id is None and combo.details["what_if"]["ib_order_id"] == asked.ib_order_id
    )
    # Still within the timeout: held, nothing else queued.
    later = T0 + WHAT_IF_TIMEOUT - timedelta(seconds=1)
    bridge_up(r, later)
    tick = send_due(engine, venue, later)
    assert "waiting" in tick.held[combo.client_order_id]
    assert len(placements(r)) == 1
    late = T0 + WHAT_IF_TIMEOUT + timedelta(seconds=1)
    bridge_up(r, late)
    send_due(engine, venue, late)
    row = status(engine, intent_id)
    assert (row.status, row.reject_reason) == ("REJECTED", "WHAT_IF_TIMEOUT")
    assert len(placements(r)) == 1  # no BAG, no leg
    assert {c.state for c in children(engine, intent_id)} == {"CANCELLED"}
    assert all(c.ib_order_id is None for c in children(engine, intent_id))
    with engine.connect() as conn:
        (event,) = conn.execute(
            sa.text("SELECT kind, code FROM risk_events WHERE kind = 'COMBO_MARGIN_REFUSED'")
        ).all()
    assert event.code == "WHAT_IF_TIMEOUT"


def test_without_a_risk_connection_the_roll_goes_out_unchecked(
    engine: Engine, r: redis.Redis
) -> None:
    intent_id = roll(engine, r)
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    option_quote(r, CALL_NEAR, T0, "20.00", "20.20", "0.55")
    option_quote(r, CALL_FAR, T0, "15.00", "15.30", "0.45")
    send_due(engine, venue, T0)
    (bag,) = placements(r)
    assert not bag.order.what_if and bag.client_order_id == f"epm-{intent_id}-combo"
