"""The orders path on real stores: an admitted intent → planned children → placements queued for
the bridge, each committed with its IB order id first and queued under one id only (issue 11,
item 7), on SQLite and PostgreSQL with the machine's Redis.

The venue side is the bridge's real command stream (`ib:commands`) read back here; the whole path
through the bridge and the simulator to fills is `tests/integration/test_procfile.py`.
"""

from __future__ import annotations

import json
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
from services.ledger.callbacks import process_callback
from services.ledger.record_contract import record_contract
from services.orders.cancel_intent import cancel_intent
from services.orders.plan_intent import plan_admitted
from services.orders.reprice import reprice_pegged
from services.orders.send_due import CONTRACT_WAIT, RESEND_AFTER, send_due
from store.db import write_transaction
from store.schema import audit_log, execution_orders, intents, order_events, risk_events
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


def fill(engine: Engine, row: Any, shares: str, price: str, exec_id: str) -> None:
    """The venue's execution of a child, recorded as the bridge would deliver it."""
    outcome = process_callback(
        "execution",
        {
            "exec_id": exec_id,
            "ib_order_id": row.ib_order_id,
            "client_id": 1,
            "perm_id": 7000 + row.ib_order_id,
            "con_id": AAPL,
            "symbol": "AAPL",
            "sec_type": "STK",
            "currency": "USD",
            "side": "BOT",
            "shares": shares,
            "price": price,
            "order_ref": row.client_order_id,
            "time": T0.isoformat(),
            "received_at": T0.isoformat(),
        },
        engine=engine,
        redis_client=None,
        now=T0,
    )
    assert outcome["outcome"] == "recorded", outcome


def cancels(r: redis.Redis) -> list[int]:
    found = []
    for stream_id, fields in r.xrange(cmds.COMMAND_STREAM):
        env = cmds.parse_entry(stream_id, fields)
        if isinstance(env, cmds.Envelope) and isinstance(env.command, cmds.CancelOrder):
            found.append(env.command.ib_order_id)
    return found


def test_a_filled_sweep_completes_the_intent(engine: Engine, r: redis.Redis) -> None:
    describe_aapl(engine)
    intent_id = admit(engine, r)
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    first = children(engine, intent_id)[0]
    fill(engine, first, "300", "200.02", "0001.01.01")
    assert send_due(engine, venue, T0 + timedelta(seconds=1)).finished_intents == [intent_id]
    # The steps left were never needed: nothing more sent.
    assert len(placements(r)) == 1
    row = status(engine, intent_id)
    assert row.status == "COMPLETED" and row.reject_reason is None
    states = [c.state for c in children(engine, intent_id)]
    assert states == ["FILLED", "CANCELLED", "CANCELLED", "CANCELLED"]


def test_a_fill_beyond_the_slippage_limit_aborts_the_plan_with_its_numbers(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    intent_id = admit(engine, r, urgency="Passive", quantity="100", max_slippage_bps="20")
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    first = children(engine, intent_id)[0]
    # Reference 200.01 (the mid); 200.60 is ~29.5 bps worse for a buy.
    fill(engine, first, str(first.quantity), "200.60", "0002.01.01")
    send_due(engine, venue, T0 + timedelta(seconds=1))
    row = status(engine, intent_id)
    assert (row.status, row.reject_reason) == ("EXPIRED", "MAX_SLIPPAGE_EXCEEDED")
    assert "bps > 20 bps" in row.reject_message
    rest = children(engine, intent_id)[1:]
    assert rest and all(c.state == "CANCELLED" for c in rest)
    with engine.connect() as conn:
        event = conn.execute(
            sa.select(risk_events).where(risk_events.c.kind == "SLIPPAGE_ABORT")
        ).one()
    assert event.details["reference"] == "200.01" and event.details["max_slippage_bps"] == "20"
    assert Decimal(event.details["slippage_bps"]) > 20
    assert len(placements(r)) == 1


def test_cancel_intent_cancels_working_and_unsent_children_once_audited(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    intent_id = admit(engine, r, urgency="Normal")
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    peg = children(engine, intent_id)[0]
    assert peg.state == "PLACED" and peg.limit_price == Decimal("200.01")
    done = cancel_intent(engine, venue, "sig-1", actor="ops:alice", reason="desk call", now=T0)
    assert (done.outcome, done.cancels_sent) == ("cancelled", [peg.ib_order_id])
    assert cancels(r) == [peg.ib_order_id]
    assert children(engine, intent_id)[0].state == "CANCEL_REQUESTED"
    row = status(engine, intent_id)
    assert (row.status, row.reject_reason) == ("CANCELLED", "CANCELLED_BY_OPERATOR")
    with engine.connect() as conn:
        audit = conn.execute(sa.select(audit_log)).one()
    assert (audit.actor, audit.action, audit.target) == (
        "ops:alice",
        "cancel_intent",
        "intent:sig-1",
    )
    # Again: the intent has ended, nothing more is sent.
    again = cancel_intent(engine, venue, "sig-1", actor="ops:alice", reason="again", now=T0)
    assert again.outcome == "already_ended" and cancels(r) == [peg.ib_order_id]
    assert (
        cancel_intent(engine, venue, "nope", actor="a", reason="b", now=T0).outcome == "not_found"
    )


def test_a_gtd_intent_expires_at_good_till_and_its_rest_is_cancelled(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    until = T0 + timedelta(minutes=1)
    intent_id = admit(
        engine, r, urgency="Passive", time_in_force="GTD", good_till=until.isoformat()
    )
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, until)
    tick = send_due(engine, venue, until)
    assert tick.finished_intents == [intent_id]
    row = status(engine, intent_id)
    assert (row.status, row.reject_reason) == ("EXPIRED", "EXPIRED")
    # Expired before anything was sent: every slice cancelled unsent, nothing at the venue.
    assert {c.state for c in children(engine, intent_id)} == {"CANCELLED"}
    assert placements(r) == [] and cancels(r) == []


def test_the_cli_lists_shows_and_cancels_intents(
    engine: Engine, r: redis.Redis, epm_env: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from epm.cli import _load_commands, app

    epm_env.setenv("EPM_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    epm_env.setenv("EPM_REDIS_URL", _url_of(r))
    describe_aapl(engine)
    intent_id = admit(engine, r, urgency="Normal")
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    first = children(engine, intent_id)[0]
    fill(engine, first, "120", "200.01", "0003.01.01")

    _load_commands()
    runner = CliRunner()
    listed = runner.invoke(app, ["intents", "--json"])
    assert listed.exit_code == 0, listed.output
    (summary,) = [json.loads(line) for line in listed.output.splitlines()]
    assert summary["signal_id"] == "sig-1" and summary["status"] == "WORKING"
    assert (summary["filled"], summary["avg_price"]) == ("120", "200.01")
    assert summary["template"] == "PEGGED_MID" and "Normal" in summary["why"]

    shown = runner.invoke(app, ["intent", "sig-1", "--json"])
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.output)
    (peg,) = detail["child_orders"]
    assert (peg["ib_order_id"], peg["state"], peg["limit_price"]) == (
        101,
        "PARTIAL_FILLED",
        "200.01",
    )
    assert runner.invoke(app, ["intent", "nope"]).exit_code == 1

    cancelled = runner.invoke(
        app, ["cancel-intent", "sig-1", "--reason", "desk", "--actor", "ops:bo"]
    )
    assert cancelled.exit_code == 0, cancelled.output
    assert "CANCELLED by ops:bo" in cancelled.output and "101" in cancelled.output
    assert cancels(r) == [101]
    assert status(engine, intent_id).status == "CANCELLED"


def _url_of(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"


def modifies(r: redis.Redis) -> list[cmds.ModifyOrder]:
    found = []
    for stream_id, fields in r.xrange(cmds.COMMAND_STREAM):
        env = cmds.parse_entry(stream_id, fields)
        if isinstance(env, cmds.Envelope) and isinstance(env.command, cmds.ModifyOrder):
            found.append(env.command)
    return found


def test_a_pegged_child_follows_the_mid_in_place_throttled(engine: Engine, r: redis.Redis) -> None:
    describe_aapl(engine)
    intent_id = admit(engine, r, urgency="Normal")
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    peg = children(engine, intent_id)[0]
    assert peg.limit_price == Decimal("200.01")
    # The mid moves within the throttle: left alone.
    soon = T0 + timedelta(seconds=1)
    quote(r, soon, bid="200.10", ask="200.12")
    assert reprice_pegged(engine, venue, soon) == []
    # After it: modified in place, same IB order id, version 1; once only at that mid.
    later = T0 + timedelta(seconds=3)
    quote(r, later, bid="200.10", ask="200.12")
    assert reprice_pegged(engine, venue, later) == [peg.client_order_id]
    assert reprice_pegged(engine, venue, later + timedelta(seconds=3)) == []
    (modify,) = modifies(r)
    assert (modify.ib_order_id, modify.version) == (peg.ib_order_id, 1)
    assert modify.order.lmt_price == Decimal("200.11") and modify.order.quantity == Decimal(300)
    assert children(engine, intent_id)[0].limit_price == Decimal("200.11")
    # A stale quote never moves it.
    stale = later + timedelta(seconds=30)
    assert reprice_pegged(engine, venue, stale) == []
    assert len(placements(r)) == 1


def test_a_momentum_intent_with_a_trail_goes_out_as_one_bracket(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    intent_id = admit(
        engine, r, params={"trail_percent": "1.5", "profit_target": "210"}, quantity="100"
    )
    venue = BridgeVenue(engine, r, client_id=1)
    planned = plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    assert (planned.template, planned.children) == ("BRACKET", 3)
    assert "trailing 1.5% stop, target 210" in (planned.reason or "")
    quote(r, T0)
    tick = send_due(engine, venue, T0)
    assert len(tick.sent) == 3, tick
    entry, target, stop = placements(r)
    # Entry first, transmit off; the exits name it, share one OCA group; the stop transmits all.
    assert (entry.order.action, entry.order.quantity, entry.order.lmt_price) == (
        "BUY",
        Decimal(100),
        Decimal("200.02"),
    )
    assert entry.order.transmit is False and entry.order.parent_id is None
    assert (target.order.action, target.order.order_type, target.order.lmt_price) == (
        "SELL",
        "LMT",
        Decimal(210),
    )
    assert target.order.parent_id == stop.order.parent_id == entry.ib_order_id
    assert target.order.transmit is False and stop.order.transmit is True
    assert target.order.oca_group == stop.order.oca_group is not None
    assert (stop.order.order_type, stop.order.trailing_percent, stop.order.tif) == (
        "TRAIL",
        Decimal("1.5"),
        "GTC",
    )
    rows = children(engine, intent_id)
    assert [c.parent_order_id for c in rows] == [None, rows[0].id, rows[0].id]
    # The entry fills: the intent completes, and the exits keep protecting the position.
    fill(engine, rows[0], "100", "200.02", "0004.01.01")
    assert send_due(engine, venue, T0 + timedelta(seconds=1)).finished_intents == [intent_id]
    assert status(engine, intent_id).status == "COMPLETED"
    assert [c.state for c in children(engine, intent_id)] == ["FILLED", "PLACED", "PLACED"]
    assert cancels(r) == []


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"trail_pct": "1"}, "UNKNOWN_PARAM", "params.trail_pct"),
        ({"trail_percent": "abc"}, "INVALID_PARAMS", "params.trail_percent"),
        ({"trail_percent": "1", "trail_amount": "2"}, "INVALID_PARAMS", "params"),
    ],
)
def test_bad_params_are_refused_at_intake_naming_the_field(
    engine: Engine, r: redis.Redis, params: dict[str, str], code: str, field: str
) -> None:
    payload = {
        "signal_id": "bad-params",
        "strategy": "Momentum_EQ",
        "instrument": "AAPL",
        "side": "BUY",
        "quantity": "10",
        "urgency": "High",
        "time_in_force": "DAY",
        "params": params,
    }
    outcome = process_submission(
        payload, engine=engine, redis_client=r, now=T0, max_active=lambda _s: 100
    )
    assert (outcome["status"], outcome["reason"]) == ("REJECTED", code)
    ((_id, entry),) = r.xrange("signals.exec.reject")
    assert entry.get("field") == field, entry
