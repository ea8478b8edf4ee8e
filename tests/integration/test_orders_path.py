"""The orders path on real stores: an admitted intent → planned children → placements queued for
the bridge, each committed with its IB order id first and queued under one id only (issue 11,
item 7), on SQLite and PostgreSQL with the machine's Redis.

The venue side is the bridge's real command stream (`ib:commands`) read back here; the whole path
through the bridge and the simulator to fills is `tests/integration/test_procfile.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ibgateway_bridge import commands as cmds
from models.ledger_reports import ContractReport
from services.intake import process_submission
from services.ledger.record_contract import record_contract
from services.orders.plan_intent import plan_admitted
from services.orders.send_due import CONTRACT_WAIT, RESEND_AFTER, send_due
from store.db import write_transaction
from store.schema import execution_orders, intents, order_events
from tasks.orders import BridgeVenue

T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
AAPL = 265598


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    client.set("ib:order:last_id", 100)
    yield client
    client.flushdb()


def admit(engine: Engine, r: redis.Redis, **fields: Any) -> int:
    payload = {
        "signal_id": fields.pop("signal_id", "sig-1"),
        "strategy": "Momentum_EQ",
        "instrument": "AAPL",
        "side": "BUY",
        "quantity": "300",
        "urgency": "High",
        "time_in_force": "DAY",
        **fields,
    }
    outcome = process_submission(
        payload, engine=engine, redis_client=r, now=T0, max_active=lambda _s: 100
    )
    assert outcome["status"] == "VALIDATED", outcome
    return int(outcome["intent_id"])


def describe_aapl(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        record_contract(
            conn,
            ContractReport.model_validate(
                {
                    "con_id": AAPL,
                    "symbol": "AAPL",
                    "sec_type": "STK",
                    "exchange": "SMART",
                    "currency": "USD",
                    "min_tick": "0.01",
                    "received_at": T0.isoformat(),
                }
            ),
            T0,
        )


def quote(r: redis.Redis, at: datetime, bid: str = "200.00", ask: str = "200.02") -> None:
    r.hset(
        f"md:{AAPL}",
        mapping={"bid": bid, "ask": ask, "last": bid, "bar_volume": "100000", "ts": at.isoformat()},
    )


def placements(r: redis.Redis) -> list[cmds.PlaceOrder]:
    found = []
    for stream_id, fields in r.xrange(cmds.COMMAND_STREAM):
        env = cmds.parse_entry(stream_id, fields)
        if isinstance(env, cmds.Envelope) and isinstance(env.command, cmds.PlaceOrder):
            found.append(env.command)
    return found


def children(engine: Engine, intent_id: int) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(execution_orders)
                .where(execution_orders.c.intent_id == intent_id)
                .order_by(execution_orders.c.id)
            ).all()
        )


def status(engine: Engine, intent_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(intents).where(intents.c.id == intent_id)).one()


def test_a_sweep_step_is_committed_with_its_ib_id_then_queued_once(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    intent_id = admit(engine, r)
    venue = BridgeVenue(engine, r, client_id=1)
    planned = plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    assert (planned.outcome, planned.template) == ("planned", "SWEEP")
    assert status(engine, intent_id).status == "WORKING"
    # Planning again (a redelivered task) plans nothing more.
    assert plan_admitted(engine, venue, intent_id, client_id=1, now=T0).outcome == "already"
    assert len(children(engine, intent_id)) == planned.children

    quote(r, T0)
    tick = send_due(engine, venue, T0)
    assert tick.sent == [f"epm-{intent_id}-sweep-1"]
    placed = placements(r)
    assert len(placed) == 1
    first = children(engine, intent_id)[0]
    assert placed[0].ib_order_id == first.ib_order_id == 101
    assert placed[0].client_order_id == first.client_order_id
    assert placed[0].order.action == "BUY" and placed[0].order.quantity == Decimal(300)
    # At the touch (aggression 0 on the first step), an IOC limit.
    assert placed[0].order.lmt_price == Decimal("200.02") and placed[0].order.tif == "IOC"
    assert placed[0].contract.con_id == AAPL
    assert first.state == "PLACED"
    # A tick later the next step is due, but the first may still fill everything: held back.
    second = send_due(engine, venue, T0 + timedelta(seconds=1))
    assert second.sent == [] and len(placements(r)) == 1
    assert "in flight" in second.held[f"epm-{intent_id}-sweep-2"]


def test_a_placement_lost_between_commit_and_queue_is_queued_again_under_the_same_id(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    intent_id = admit(engine, r)
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)

    class DiesBeforeQueueing(BridgeVenue):
        def place(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionError("worker killed before XADD")

    with pytest.raises(ConnectionError):
        send_due(engine, DiesBeforeQueueing(engine, r, client_id=1), T0)
    committed = children(engine, intent_id)[0]
    assert committed.ib_order_id == 101 and committed.state == "SCHEDULED"
    assert placements(r) == []
    # Not before RESEND_AFTER (an ack may be on its way), then under the same id.
    assert send_due(engine, venue, T0 + timedelta(seconds=1)).resent == []
    later = send_due(engine, venue, T0 + RESEND_AFTER + timedelta(seconds=1))
    assert later.resent == [committed.client_order_id]
    assert [p.ib_order_id for p in placements(r)] == [101]
    assert children(engine, intent_id)[0].state == "PLACED"


def test_concurrent_schedulers_never_queue_a_slice_twice(engine: Engine, r: redis.Redis) -> None:
    describe_aapl(engine)
    intent_id = admit(engine, r, urgency="Passive", quantity="1000")
    venue = BridgeVenue(engine, r, client_id=1)
    planned = plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    assert planned.template == "TWAP" and planned.children == 41  # 10 min every 15 s
    rows = children(engine, intent_id)
    errors: list[BaseException] = []

    def scheduler(now: datetime) -> None:
        try:
            send_due(engine, BridgeVenue(engine, r, client_id=1), now)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    # Every slice due in turn; four schedulers race at each moment (three workers, two beats).
    for k, row in enumerate(rows[:6]):
        now = row.due_at + timedelta(milliseconds=10)
        quote(r, now)
        threads = [threading.Thread(target=scheduler, args=(now,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        placed = placements(r)
        assert len(placed) == k + 1, [p.client_order_id for p in placed]
        # Nothing filled: each slice asks for its schedule share less what is in flight.
        assert sum(p.order.quantity for p in placed) == sum(
            Decimal(25 if i < 16 else 24) for i in range(k + 1)
        )
    ids = [p.ib_order_id for p in placements(r)]
    assert len(set(ids)) == len(ids)
    with engine.connect() as conn:
        placed_events = conn.execute(
            sa.select(sa.func.count()).where(order_events.c.event_type == "PLACED")
        ).scalar_one()
    assert placed_events == 6


def test_a_stale_quote_holds_the_child_and_nothing_is_sent(engine: Engine, r: redis.Redis) -> None:
    describe_aapl(engine)
    intent_id = admit(engine, r)
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0 - timedelta(seconds=30))
    tick = send_due(engine, venue, T0)
    assert tick.sent == [] and "market data" in tick.held[f"epm-{intent_id}-sweep-1"]
    assert placements(r) == []


def test_an_instrument_the_venue_never_describes_is_refused(engine: Engine, r: redis.Redis) -> None:
    intent_id = admit(engine, r)
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    # The contract was asked for, since the cache does not know it.
    asked = [
        cmds.parse_entry(i, f).command  # type: ignore[union-attr]
        for i, f in r.xrange(cmds.COMMAND_STREAM)
    ]
    assert [type(c).__name__ for c in asked] == ["RequestContractDetails"]
    assert send_due(engine, venue, T0).held
    late = T0 + CONTRACT_WAIT + timedelta(seconds=1)
    send_due(engine, venue, late)
    row = status(engine, intent_id)
    assert (row.status, row.reject_reason) == ("REJECTED", "UNKNOWN_CONTRACT")
    assert placements(r) == []


def test_a_spread_roll_without_legs_is_rejected_at_planning(engine: Engine, r: redis.Redis) -> None:
    intent_id = admit(
        engine, r, strategy="Spread_Roll", instrument="SPY   271217C00600000", quantity="2"
    )
    venue = BridgeVenue(engine, r, client_id=1)
    assert plan_admitted(engine, venue, intent_id, client_id=1, now=T0).outcome == "rejected"
    row = status(engine, intent_id)
    assert (row.status, row.reject_reason) == ("REJECTED", "COMBO_LEGS_REQUIRED")
    assert children(engine, intent_id) == []
