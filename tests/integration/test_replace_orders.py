"""Structural replace on the orders path, the bridge played by its command stream and the
ledger's callbacks: the replacement is held until the old order's cancel is confirmed, then sent
under a fresh id for what the old one did not fill (a fill that raced the cancel counted); a
strategy halted meanwhile never sends it; an in-place change stays a modify."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import redis
from sqlalchemy.engine import Engine

from ibgateway_bridge import commands as cmds
from models.replace import Changes
from models.strategy_state import TradingState
from services.ledger.callbacks import process_callback
from services.orders.plan_intent import plan_admitted
from services.orders.replace import request_replace
from services.orders.send_due import send_due
from services.risk.states import operator_change
from tasks.orders import BridgeVenue
from tests.integration.test_orders_path import (
    T0,
    admit,
    children,
    describe_aapl,
    fill,
    placements,
    queued,
    quote,
    r,
)

__all__ = ["r"]  # the Redis fixture, shared with the orders path tests


def working_peg(engine: Engine, r: redis.Redis) -> tuple[int, BridgeVenue, Any]:
    describe_aapl(engine)
    intent_id = admit(engine, r, urgency="Normal")
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    (peg,) = children(engine, intent_id)
    assert peg.state == "PLACED" and peg.details["template"] == "PEGGED_MID"
    return intent_id, venue, peg


def cancelled(engine: Engine, row: Any, filled: str) -> None:
    """The venue's orderStatus Cancelled for `row`, IB's cumulative filled with it."""
    payload = {
        "order_id": row.ib_order_id,
        "client_id": 1,
        "perm_id": 9000 + row.ib_order_id,
        "ib_status": "Cancelled",
        "filled": filled,
        "remaining": str(row.quantity - Decimal(filled)),
        "avg_fill_price": "200.01",
        "received_at": T0.isoformat(),
    }
    outcome = process_callback("order_status", payload, engine=engine, redis_client=None, now=T0)
    assert outcome["outcome"] in ("applied", "recorded"), outcome


def test_the_replacement_waits_for_the_cancel_and_asks_only_for_what_was_not_filled(
    engine: Engine, r: redis.Redis
) -> None:
    intent_id, venue, peg = working_peg(engine, r)
    done = request_replace(
        engine,
        venue,
        peg.client_order_id,
        Changes(tif="IOC", limit_price=Decimal("200.05")),
        actor="alice",
        reason="take it",
        now=T0,
    )
    assert done.outcome == "replaced"
    assert [c.ib_order_id for c in queued(r, cmds.CancelOrder)] == [peg.ib_order_id]
    old, new = children(engine, intent_id)
    assert (old.state, new.state, new.parent_order_id) == ("CANCEL_REQUESTED", "SCHEDULED", old.id)
    # The cancel is not confirmed: the replacement is held, nothing placed.
    tick = send_due(engine, venue, T0 + timedelta(seconds=1))
    assert tick.held[new.client_order_id].startswith("waiting for the venue to confirm the cancel")
    assert len(placements(r)) == 1
    # 100 fill before the cancel lands (the execution arrives late, as it may).
    cancelled(engine, old, "100")
    quote(r, T0 + timedelta(seconds=3))
    send_due(engine, venue, T0 + timedelta(seconds=3))
    first, replacement = placements(r)
    assert replacement.ib_order_id > first.ib_order_id
    assert (replacement.order.tif, replacement.order.quantity) == ("IOC", Decimal(200))
    assert replacement.client_order_id == f"{peg.client_order_id}-r1"
    fill(engine, old, "100", "200.01", "0009.01.01")  # the racing fill, booked to the old order
    fill(engine, children(engine, intent_id)[1], "200", "200.02", "0009.02.01")
    send_due(engine, venue, T0 + timedelta(seconds=4))
    old, new = children(engine, intent_id)
    assert (old.filled_qty, new.filled_qty) == (Decimal(100), Decimal(200))


def test_a_strategy_halted_before_the_cancel_lands_never_sends_the_replacement(
    engine: Engine, r: redis.Redis
) -> None:
    intent_id, venue, peg = working_peg(engine, r)
    request_replace(
        engine, venue, peg.client_order_id, Changes(route="ARCA"), actor="a", reason="r", now=T0
    )
    operator_change(
        engine, venue, "Momentum_EQ", TradingState.HALTED, actor="bob", reason="drill",
        operators={"alice"}, causes=[], now=T0, halts=r,
    )  # fmt: skip
    old, _new = children(engine, intent_id)
    cancelled(engine, old, "0")
    for s in (1, 2, 3):
        quote(r, T0 + timedelta(seconds=s))
        send_due(engine, venue, T0 + timedelta(seconds=s))
    assert len(placements(r)) == 1
    assert [c.state for c in children(engine, intent_id)] == ["CANCELLED", "CANCELLED"]


def test_a_price_change_is_a_modify_under_the_same_id(engine: Engine, r: redis.Redis) -> None:
    intent_id, venue, peg = working_peg(engine, r)
    done = request_replace(
        engine,
        venue,
        peg.client_order_id,
        Changes(limit_price=Decimal("200.03")),
        actor="alice",
        reason="lift",
        now=T0,
    )
    assert done.outcome == "modified"
    (modify,) = queued(r, cmds.ModifyOrder)
    assert (modify.ib_order_id, modify.order.lmt_price) == (peg.ib_order_id, Decimal("200.03"))
    assert queued(r, cmds.CancelOrder) == []
    (row,) = children(engine, intent_id)
    # Off the peg: the re-pricer leaves the operator's price alone.
    assert row.details["template"] == "MARKETABLE_LIMIT" and row.limit_price == Decimal("200.03")
