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
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from epm.calendar import ET, session_close
from ibgateway_bridge import commands as cmds
from models.ledger_reports import ContractReport
from services.intake import process_submission
from services.ledger.callbacks import process_callback
from services.ledger.record_contract import record_contract
from services.orders.cancel_intent import cancel_intent
from services.orders.flatten import flatten_expiring
from services.orders.plan_intent import plan_admitted
from services.orders.reprice import reprice_pegged
from services.orders.send_due import CONTRACT_WAIT, RESEND_AFTER, send_due
from store.db import write_transaction
from store.schema import (
    audit_log,
    execution_orders,
    intents,
    order_events,
    positions_current,
    risk_events,
)
from tasks.orders import BridgeVenue

T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
T = TypeVar("T")
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


def queued(r: redis.Redis, kind: type[T]) -> list[T]:
    """The commands of one kind on the bridge's command stream, in queue order."""
    found: list[T] = []
    for stream_id, fields in r.xrange(cmds.COMMAND_STREAM):
        env = cmds.parse_entry(stream_id, fields)
        if isinstance(env, cmds.Envelope) and isinstance(env.command, kind):
            found.append(env.command)
    return found


def placements(r: redis.Redis) -> list[cmds.PlaceOrder]:
    return queued(r, cmds.PlaceOrder)


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
    # Ids reach the bridge in the order they were allocated (IB refuses a lower one: 103).
    assert ids == sorted(ids)
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


def execute(engine: Engine, row: Any, **fields: Any) -> None:
    """The venue's execution of a child, recorded as the bridge would deliver it."""
    payload = {
        "ib_order_id": row.ib_order_id,
        "client_id": 1,
        "currency": "USD",
        "order_ref": row.client_order_id,
        "time": T0.isoformat(),
        "received_at": T0.isoformat(),
        **fields,
    }
    outcome = process_callback("execution", payload, engine=engine, redis_client=None, now=T0)
    assert outcome["outcome"] == "recorded", outcome


def fill(engine: Engine, row: Any, shares: str, price: str, exec_id: str) -> None:
    """A stock fill of an AAPL child."""
    execute(
        engine,
        row,
        exec_id=exec_id,
        perm_id=7000 + row.ib_order_id,
        con_id=AAPL,
        symbol="AAPL",
        sec_type="STK",
        side="BOT",
        shares=shares,
        price=price,
    )


def cancels(r: redis.Redis) -> list[int]:
    return [c.ib_order_id for c in queued(r, cmds.CancelOrder)]


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
        trail = conn.execute(sa.select(audit_log).order_by(audit_log.c.id)).all()
    # The whole trail, chained: intake's decision, the child's placement, the operator's cancel.
    assert [(a.actor, a.action, a.target) for a in trail] == [
        ("intake", "intent_admitted", "intent:sig-1"),
        ("orders", "order_place", f"order:{peg.client_order_id}"),
        ("ops:alice", "cancel_intent", "intent:sig-1"),
    ]
    assert trail[1].details["ib_order_id"] == peg.ib_order_id
    assert trail[1].details["lmt_price"] == "200.01"
    assert trail[2].prev_hash == trail[1].row_hash
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
    return queued(r, cmds.ModifyOrder)


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


CALL_NEAR = 9001  # the roll closes this (sold before: bought back)
CALL_FAR = 9002  # and opens this (sold)
SPY = 756733


def describe(engine: Engine, con_id: int, **terms: str) -> None:
    with write_transaction(engine) as conn:
        record_contract(
            conn,
            ContractReport.model_validate(
                {"con_id": con_id, "currency": "USD", "received_at": T0.isoformat(), **terms}
            ),
            T0,
        )


def option_quote(r: redis.Redis, con_id: int, at: datetime, bid: str, ask: str, delta: str) -> None:
    r.hset(
        f"md:{con_id}", mapping={"bid": bid, "ask": ask, "model_delta": delta, "ts": at.isoformat()}
    )


ROLL_LEGS = [
    {"instrument": "SPY   271217C00600000", "ratio": 1, "action": "BUY"},
    {"instrument": "SPY   280121C00610000", "ratio": 1, "action": "SELL"},
]


def roll(engine: Engine, r: redis.Redis, **fields: Any) -> int:
    describe(
        engine,
        CALL_NEAR,
        symbol="SPY",
        sec_type="OPT",
        expiry="20271217",
        strike="600",
        right="C",
        multiplier="100",
    )
    describe(
        engine,
        CALL_FAR,
        symbol="SPY",
        sec_type="OPT",
        expiry="20280121",
        strike="610",
        right="C",
        multiplier="100",
    )
    describe(engine, SPY, symbol="SPY", sec_type="STK")
    return admit(
        engine,
        r,
        strategy="Spread_Roll",
        instrument="SPY   280121C00610000",
        quantity="3",
        urgency="Normal",
        legs=ROLL_LEGS,
        **fields,
    )


def leg_fill(
    engine: Engine,
    row: Any,
    con_id: int,
    shares: str,
    price: str,
    exec_id: str,
    side: str,
    sec_type: str = "OPT",
) -> None:
    """A SPY option (or BAG) execution of a child."""
    execute(
        engine,
        row,
        exec_id=exec_id,
        con_id=con_id,
        symbol="SPY",
        sec_type=sec_type,
        side=side,
        shares=shares,
        price=price,
        multiplier="100" if sec_type == "OPT" else None,
    )


def test_a_roll_goes_out_as_one_bag_and_its_fill_completes_the_intent(
    engine: Engine, r: redis.Redis
) -> None:
    intent_id = roll(engine, r)
    venue = BridgeVenue(engine, r, client_id=1)
    planned = plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    assert (planned.template, planned.children) == ("COMBO", 3)
    option_quote(r, CALL_NEAR, T0, "20.00", "20.20", "0.55")
    option_quote(r, CALL_FAR, T0, "15.00", "15.30", "0.45")
    send_due(engine, venue, T0)
    (bag,) = placements(r)
    assert bag.contract.sec_type == "BAG" and bag.contract.symbol == "SPY"
    assert [(leg.con_id, leg.ratio, leg.action) for leg in bag.contract.combo_legs or ()] == [
        (CALL_NEAR, 1, "BUY"),
        (CALL_FAR, 1, "SELL"),
    ]
    # Net: bid 20.00 - 15.30 = 4.70, ask 20.20 - 15.00 = 5.20; the limit at the mid.
    assert (bag.order.action, bag.order.quantity, bag.order.lmt_price) == (
        "BUY",
        Decimal(3),
        Decimal("4.95"),
    )
    combo = children(engine, intent_id)[0]
    # The venue reports the legs and the BAG's own execution; only the BAG counts combo units,
    # only the legs book positions.
    leg_fill(engine, combo, CALL_NEAR, "3", "20.10", "0100.01.01", "BOT")
    leg_fill(engine, combo, CALL_FAR, "3", "15.15", "0100.02.01", "SLD")
    leg_fill(engine, combo, 28812380, "3", "4.95", "0100.03.01", "BOT", sec_type="BAG")
    assert children(engine, intent_id)[0].filled_qty == Decimal(3)
    send_due(engine, venue, T0 + timedelta(seconds=1))
    assert status(engine, intent_id).status == "COMPLETED"
    assert [c.state for c in children(engine, intent_id)] == ["FILLED", "CANCELLED", "CANCELLED"]
    with engine.connect() as conn:
        held = {
            (p.con_id, p.quantity)
            for p in conn.execute(sa.select(positions_current)).all()
            if p.quantity != 0
        }
    assert held == {(CALL_NEAR, Decimal(3)), (CALL_FAR, Decimal(-3))}


def test_a_combo_the_venue_refuses_completes_by_legs_riskier_first_then_hedged(
    engine: Engine, r: redis.Redis
) -> None:
    # Option spreads are wide: a band of 100 bps lets the legs take the touch.
    intent_id = roll(engine, r, params={"combo_window_s": 10}, max_slippage_bps="100")
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    option_quote(r, CALL_NEAR, T0, "20.00", "20.20", "0.55")
    option_quote(r, CALL_FAR, T0, "15.00", "15.30", "0.45")
    send_due(engine, venue, T0)
    combo = children(engine, intent_id)[0]
    # The venue refuses the BAG (error 201): the legs wait for their window, then go out.
    assert process_callback(
        "order_error",
        {
            "ib_order_id": combo.ib_order_id,
            "client_id": 1,
            "code": 201,
            "message": "combo refused",
            "received_at": T0.isoformat(),
        },
        engine=engine,
        redis_client=None,
        now=T0,
    )["outcome"] in ("applied", "recorded")
    assert children(engine, intent_id)[0].state == "REJECTED"
    early = send_due(engine, venue, T0 + timedelta(seconds=2))
    assert early.sent == []
    at = T0 + timedelta(seconds=11)
    option_quote(r, CALL_NEAR, at, "20.00", "20.20", "0.55")
    option_quote(r, CALL_FAR, at, "15.00", "15.30", "0.45")
    first = send_due(engine, venue, at)
    # The buy leg first: never short the far call before the near one is bought back.
    assert first.sent == [f"epm-{intent_id}-leg-1"], first
    assert "riskier leg first" in first.held[f"epm-{intent_id}-leg-2"]
    buy_leg = children(engine, intent_id)[1]
    assert (buy_leg.action, buy_leg.quantity, buy_leg.limit_price) == (
        "BUY",
        Decimal(3),
        Decimal("20.20"),
    )
    leg_fill(engine, buy_leg, CALL_NEAR, "3", "20.20", "0200.01.01", "BOT")
    second = send_due(engine, venue, at + timedelta(seconds=1))
    assert second.sent == [f"epm-{intent_id}-leg-2"], second
    sell_leg = children(engine, intent_id)[2]
    assert (sell_leg.action, sell_leg.quantity) == ("SELL", Decimal(3))
    leg_fill(engine, sell_leg, CALL_FAR, "2", "15.00", "0200.02.01", "SLD")
    # A partial second leg: it is cancelled at the venue (its remainder), then the residual
    # delta is hedged in the underlying: +3 x 100 x 0.55 - 2 x 100 x 0.45 = 75 shares long.
    process_callback(
        "order_status",
        {
            "ib_order_id": sell_leg.ib_order_id,
            "client_id": 1,
            "ib_status": "Cancelled",
            "filled": "2",
            "remaining": "1",
            "received_at": at.isoformat(),
        },
        engine=engine,
        redis_client=None,
        now=at,
    )
    quote_spy = at + timedelta(seconds=2)
    r.hset(f"md:{SPY}", mapping={"bid": "600.00", "ask": "600.02", "ts": quote_spy.isoformat()})
    option_quote(r, CALL_NEAR, quote_spy, "20.00", "20.20", "0.55")
    option_quote(r, CALL_FAR, quote_spy, "15.00", "15.30", "0.45")
    hedged = send_due(engine, venue, quote_spy)
    hedge_key = f"epm-{intent_id}-hedge"
    tick_again = send_due(engine, venue, quote_spy + timedelta(seconds=1))
    assert hedge_key in hedged.sent + tick_again.sent, (hedged, tick_again)
    hedge = placements(r)[-1]
    assert (hedge.client_order_id, hedge.order.action, hedge.order.quantity) == (
        hedge_key,
        "SELL",
        Decimal(75),
    )
    assert hedge.contract.con_id == SPY and hedge.contract.sec_type == "STK"
    # Legs made 2 whole combo units of 3: the plan ended short; the hedge keeps working.
    row = status(engine, intent_id)
    assert row.status == "EXPIRED" and "2 of 3" in row.reject_message
    assert children(engine, intent_id)[-1].state == "PLACED"


ODTE = 9100  # a SPY call expiring today (2026-12-03)


def odte_position(engine: Engine, r: redis.Redis, **fields: Any) -> int:
    """A 0DTE_Scalp intent bought 5 calls expiring today; returns the intent id."""
    describe(
        engine,
        ODTE,
        symbol="SPY",
        sec_type="OPT",
        expiry="20261203",
        strike="600",
        right="C",
        multiplier="100",
        local_symbol="SPY   261203C00600000",
    )
    intent_id = admit(
        engine,
        r,
        signal_id="odte-1",
        strategy="0DTE_Scalp",
        instrument="SPY   261203C00600000",
        quantity="5",
        urgency="Immediate",
        **fields,
    )
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    option_quote(r, ODTE, T0, "2.00", "2.05", "0.5")
    send_due(engine, venue, T0)
    leg_fill(engine, children(engine, intent_id)[0], ODTE, "5", "2.05", "0300.01.01", "BOT")
    return intent_id


@pytest.mark.parametrize(
    ("day", "close_et", "flat_et"),
    [(date(2026, 12, 3), (16, 0), (15, 55)), (date(2026, 11, 27), (13, 0), (12, 55))],
)
def test_a_0dte_position_is_flattened_five_minutes_before_the_close(
    engine: Engine, r: redis.Redis, day: date, close_et: tuple[int, int], flat_et: tuple[int, int]
) -> None:
    close = session_close(day)
    assert close is not None and close.astimezone(ET).timetuple()[3:5] == close_et
    intent_id = odte_position(engine, r)
    venue = BridgeVenue(engine, r, client_id=1)
    today = date(2026, 12, 3)
    # The position's own session close, from the calendar (early close on 27 Nov).
    flat_at = datetime.combine(today, time(*flat_et), tzinfo=ET).astimezone(UTC)
    day_close = datetime.combine(today, time(*close_et), tzinfo=ET).astimezone(UTC)
    before = flatten_expiring(
        engine, venue, r, flat_at - timedelta(seconds=1), today=today, close=day_close, client_id=1
    )
    assert before == []
    at = flatten_expiring(engine, venue, r, flat_at, today=today, close=day_close, client_id=1)
    assert at == [f"flat-20261203-{ODTE}-1"]
    flat = intent_life_row(engine, at[0])
    assert (flat.status, flat.side, flat.quantity) == ("WORKING", "SELL", Decimal(5))
    # One attempt at a time: a second tick while it works submits nothing.
    again = flatten_expiring(
        engine, venue, r, flat_at + timedelta(seconds=15), today=today, close=day_close, client_id=1
    )
    assert again == []
    # The closing sweep goes out at the touch even though the option's spread is wider than
    # the entry band (50 bps): a flatten may pay up to 1,000 bps.
    option_quote(r, ODTE, flat_at, "2.00", "2.05", "0.5")
    sent = send_due(engine, venue, flat_at)
    assert sent.sent == [f"epm-{flat.id}-sweep-1"], sent
    closing = placements(r)[-1]
    assert (closing.order.action, closing.order.quantity, closing.order.lmt_price) == (
        "SELL",
        Decimal(5),
        Decimal("2.00"),
    )
    assert intent_id != flat.id


def test_a_0dte_position_held_to_expiry_is_left_alone(engine: Engine, r: redis.Redis) -> None:
    odte_position(engine, r, params={"hold_to_expiry": True})
    venue = BridgeVenue(engine, r, client_id=1)
    today = date(2026, 12, 3)
    late = datetime(2026, 12, 3, 20, 58, tzinfo=UTC)  # 15:58 ET
    close = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)
    assert flatten_expiring(engine, venue, r, late, today=today, close=close, client_id=1) == []


def intent_life_row(engine: Engine, signal_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(intents).where(intents.c.signal_id == signal_id)).one()


def test_a_sweep_that_slips_gives_way_to_a_pegged_mid_for_the_rest(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    intent_id = admit(engine, r, urgency="High", quantity="300", max_slippage_bps="20")
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    first = children(engine, intent_id)[0]
    # 100 of 300 at 200.60: ~29.5 bps worse than the mid it was priced on (limit 20).
    fill(engine, first, "100", "200.60", "0400.01.01")
    process_callback(
        "order_status",
        {
            "ib_order_id": first.ib_order_id,
            "client_id": 1,
            "ib_status": "Cancelled",
            "filled": "100",
            "remaining": "200",
            "received_at": T0.isoformat(),
        },
        engine=engine,
        redis_client=None,
        now=T0,
    )
    later = T0 + timedelta(seconds=1)
    quote(r, later)
    send_due(engine, venue, later)
    assert status(engine, intent_id).status == "WORKING"
    rows = children(engine, intent_id)
    assert [c.state for c in rows[1:4]] == ["CANCELLED"] * 3  # the sweep's later steps
    switch = rows[-1]
    assert switch.client_order_id == f"epm-{intent_id}-after-slippage"
    with engine.connect() as conn:
        event = conn.execute(
            sa.select(risk_events).where(risk_events.c.kind == "SLIPPAGE_SWITCH")
        ).one()
    assert event.details["switched_to"] == "PEGGED_MID"
    # The peg takes what is left at the midpoint, the next tick.
    send_due(engine, venue, later + timedelta(seconds=1))
    peg = placements(r)[-1]
    assert (peg.client_order_id, peg.order.quantity, peg.order.lmt_price) == (
        switch.client_order_id,
        Decimal(200),
        Decimal("200.01"),
    )


def test_ids_stay_above_the_ledger_when_redis_and_the_gateway_both_start_over(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    first_id = admit(engine, r, signal_id="before-reset")
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, first_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    before = children(engine, first_id)[0].ib_order_id
    # Redis lost everything and a reset paper gateway said nextValidId 1: the bridge seeds 0.
    r.flushdb()
    r.set("ib:order:last_id", 0)
    second_id = admit(engine, r, signal_id="after-reset")
    plan_admitted(engine, venue, second_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    after = children(engine, second_id)[0].ib_order_id
    assert after is not None and before is not None and after > before


def test_the_0dte_rule_follows_the_venues_clock_when_told(engine: Engine, r: redis.Redis) -> None:
    from epm.clock import CLOCK_KEY, session_clock, session_now
    from epm.settings import Settings

    odte_position(engine, r)
    venue = BridgeVenue(engine, r, client_id=1)
    today = date(2026, 12, 3)
    close = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)
    wall = T0  # 10:00 ET on the wall
    # The simulator's clock, as the bridge published it two seconds ago: 15:54:58 ET, at 60x.
    sampled = datetime(2026, 12, 3, 20, 54, 58, tzinfo=UTC)
    r.hset(
        CLOCK_KEY,
        mapping={
            "venue": f"{sampled.timestamp():.3f}",
            "wall": f"{(wall - timedelta(seconds=2)).timestamp():.6f}",
            "rate": "60",
        },
    )
    assert session_now(Settings(clock="wall"), r, wall) == wall
    session = session_now(Settings(clock="venue"), r, wall)
    assert session == datetime(2026, 12, 3, 20, 56, 58, tzinfo=UTC)  # +2 s x 60
    on_wall = flatten_expiring(engine, venue, r, wall, today=today, close=close, client_id=1)
    assert on_wall == []
    clock = session_clock(Settings(clock="venue"), r, wall)
    on_venue = flatten_expiring(
        engine, venue, r, wall, today=today, close=close, client_id=1, clock=clock
    )
    assert on_venue == [f"flat-20261203-{ODTE}-1"]
    # A sample the bridge stopped refreshing is not trusted: back to the wall clock.
    assert session_now(
        Settings(clock="venue"), r, wall + timedelta(seconds=30)
    ) == wall + timedelta(seconds=30)


def test_a_twap_and_its_good_till_follow_an_accelerated_venue_clock(
    engine: Engine, r: redis.Redis
) -> None:
    """Under `epm sim --speed 60` a 30 s cadence is half a wall second and a good_till two venue
    minutes away passes two wall seconds later: every time rule of the plan follows the venue."""
    from models.clock import SessionClock

    describe_aapl(engine)
    venue_now = datetime(2026, 12, 3, 20, 50, tzinfo=UTC)  # 15:50 ET at the venue
    clock = SessionClock(T0, venue_now, 60.0)
    until = venue_now + timedelta(minutes=2)
    intent_id = admit(
        engine,
        r,
        urgency="Passive",
        quantity="900",
        time_in_force="GTD",
        good_till=until.isoformat(),
        params={"template": "TWAP", "slices": 3, "cadence_s": 30},
    )
    venue = BridgeVenue(engine, r, client_id=1)
    planned = plan_admitted(engine, venue, intent_id, client_id=1, now=T0, clock=clock)
    assert (planned.template, planned.children) == ("TWAP", 3)
    due = [c.due_at for c in children(engine, intent_id)]
    assert due == [T0, T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=1)]
    # One wall second on: every slice is due and goes out, the intent still lives (a venue
    # minute short of its good_till).
    later = T0 + timedelta(seconds=1, milliseconds=10)
    quote(r, later)
    tick = send_due(engine, venue, later, clock=clock)
    assert len(tick.sent) == 3 and tick.finished_intents == []
    assert len(placements(r)) == 3
    # The same tick on the wall clock would not have expired it either; two wall seconds on, the
    # venue's clock has passed good_till (15:52 ET) and the rest is cancelled.
    expired_at = T0 + timedelta(seconds=2)
    assert send_due(engine, venue, expired_at).finished_intents == []
    assert send_due(engine, venue, expired_at, clock=clock).finished_intents == [intent_id]
    row = status(engine, intent_id)
    assert (row.status, row.reject_reason) == ("EXPIRED", "EXPIRED")
    assert len(cancels(r)) == 3


def test_a_day_intent_expires_at_the_close_on_the_venues_clock(
    engine: Engine, r: redis.Redis
) -> None:
    """A DAY intent still working at 16:00 ET (the venue's, accelerated) expires there and its
    rest is cancelled, as IB cancels a DAY order at the close."""
    from models.clock import SessionClock

    describe_aapl(engine)
    intent_id = admit(engine, r, urgency="Passive", quantity="1000")
    venue = BridgeVenue(engine, r, client_id=1)
    # The venue reads 15:59:50 ET when the wall clock reads T0, at 60 venue seconds per second.
    clock = SessionClock(T0, datetime(2026, 12, 3, 20, 59, 50, tzinfo=UTC), 60.0)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    assert send_due(engine, venue, T0, clock=clock).finished_intents == []
    at_close = T0 + timedelta(seconds=10 / 60)
    quote(r, at_close)
    assert send_due(engine, venue, at_close, clock=clock).finished_intents == [intent_id]
    row = status(engine, intent_id)
    assert row.status == "EXPIRED" and "session closed" in row.reject_message
    # The slice sent is asked to cancel at the venue; the unsent ones are cancelled here.
    states = [c.state for c in children(engine, intent_id)]
    assert states[0] == "CANCEL_REQUESTED" and set(states[1:]) == {"CANCELLED"}
    assert cancels(r) == [101]


def test_a_child_is_gated_again_before_it_goes_out(engine: Engine, r: redis.Redis) -> None:
    """Two exits of one long were each admitted against it; once the first has sold it, the
    second's child would sell stock the strategy no longer holds: refused unsent, with the
    numbers in risk_events (issue 13 item 2, the orders path's gate)."""
    describe_aapl(engine)
    venue = BridgeVenue(engine, r, client_id=1)
    quote(r, T0)
    entry = admit(engine, r, signal_id="long-1")
    plan_admitted(engine, venue, entry, client_id=1, now=T0)
    send_due(engine, venue, T0)
    fill(engine, children(engine, entry)[0], "300", "200.02", "0001.01.01")
    first_exit = admit(engine, r, signal_id="exit-1", side="SELL")
    second_exit = admit(engine, r, signal_id="exit-2", side="SELL")
    plan_admitted(engine, venue, first_exit, client_id=1, now=T0)
    send_due(engine, venue, T0)
    sold = children(engine, first_exit)[0]
    execute(
        engine,
        sold,
        exec_id="0002.01.01",
        perm_id=7000 + sold.ib_order_id,
        con_id=AAPL,
        symbol="AAPL",
        sec_type="STK",
        side="SLD",
        shares="300",
        price="200.00",
    )
    sent_before = len(placements(r))
    plan_admitted(engine, venue, second_exit, client_id=1, now=T0)
    tick = send_due(engine, venue, T0)
    first_child = children(engine, second_exit)[0]
    assert tick.skipped[first_child.client_order_id] == "SIDE_POSITION_MISMATCH"
    assert first_child.state == "CANCELLED" and first_child.ib_order_id is None
    assert len(placements(r)) == sent_before
    with engine.connect() as conn:
        event = conn.execute(
            sa.select(risk_events).where(risk_events.c.kind == "CHILD_REFUSED")
        ).one()
    assert (event.scope_key, event.code) == ("exit-2", "SIDE_POSITION_MISMATCH")
    assert event.details["child"] == first_child.client_order_id
