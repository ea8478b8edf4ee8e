"""Trading states against a real ledger and Redis (both dialects): a fill beyond the position
limit puts the strategy in REDUCING (a new entry refused, a reducing intent admitted, an entry's
child cancelled unsent), a global HALT cancels working entry orders and keeps a bracket's exits,
a critical reconciliation halts the desk, and resume is authorised, refused while the cause
persists, and audited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from epm.limits import load_limits
from models.limits import Limits, parse_limits
from models.strategy_state import GLOBAL_SCOPE, TradingState, TransitionRefused
from services.intake import process_submission
from services.orders.plan_intent import plan_admitted
from services.orders.send_due import send_due
from services.risk import breakers, post_trade
from services.risk.states import NotAuthorised, operator_change
from store import recon_runs
from store import strategy_states as states_repo
from store.db import write_transaction
from store.schema import audit_log, risk_events
from tasks.orders import BridgeVenue
from tests.integration.test_orders_path import (
    AAPL,
    T0,
    admit,
    cancels,
    children,
    describe_aapl,
    execute,
    fill,
    placements,
    quote,
)

pytestmark = pytest.mark.postgres

STRATEGY = "Momentum_EQ"


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    client.set("ib:order:last_id", 100)
    yield client
    client.flushdb()


def limits_with(**strategy: str) -> Limits:
    doc = load_limits().model_dump(mode="json", exclude_none=True)
    doc["strategies"] = {STRATEGY: strategy}
    return parse_limits(doc)


def submit(engine: Engine, rds: redis.Redis, signal_id: str, side: str, qty: str) -> Any:
    payload = {
        "signal_id": signal_id,
        "strategy": STRATEGY,
        "instrument": "AAPL",
        "side": side,
        "quantity": qty,
        "urgency": "High",
        "time_in_force": "DAY",
    }
    return process_submission(
        payload, engine=engine, redis_client=rds, now=T0, max_active=lambda _s: 100
    )


def audits(engine: Engine) -> list[Any]:
    """The trading-state changes in the audit log, oldest first."""
    with engine.connect() as conn:
        query = sa.select(audit_log).where(audit_log.c.target.like("risk_state:%"))
        return list(conn.execute(query.order_by(audit_log.c.id)).all())


def state(engine: Engine, scope: str = STRATEGY) -> Any:
    with engine.connect() as conn:
        return states_repo.get(conn, scope)


def test_a_fill_beyond_the_position_limit_reduces_only_and_resume_is_audited(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    venue = BridgeVenue(engine, r, client_id=1)
    first = admit(engine, r, signal_id="sig-buy")
    later = admit(engine, r, signal_id="sig-buy-2", quantity="50")  # admitted while ACTIVE
    plan_admitted(engine, venue, first, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0, intent_id=first)
    fill(engine, children(engine, first)[0], "300", "200.02", "0001.01.01")
    limits = limits_with(max_position_quantity="200")

    (applied,) = post_trade.monitor(engine, venue, limits, T0)
    assert (applied.record.state, applied.record.version) == (TradingState.REDUCING, 1)
    assert post_trade.monitor(engine, venue, limits, T0 + timedelta(seconds=1)) == []
    with engine.connect() as conn:
        (event,) = conn.execute(sa.select(risk_events).where(risk_events.c.kind == "STATE_CHANGED"))
    assert (event.code, event.scope_key) == ("POSITION_LIMIT", STRATEGY)
    assert event.details["position"] == "300" and event.details["max_position_quantity"] == "200"
    (audit,) = audits(engine)
    assert (audit.actor, audit.action, audit.target) == (
        "rule:post_trade",
        "risk_state_reducing",
        f"risk_state:{STRATEGY}",
    )

    # A new entry is refused naming the state; an intent that reduces the position passes.
    grow = submit(engine, r, "sig-more", "BUY", "10")
    assert (grow["status"], grow["reason"]) == ("REJECTED", "STRATEGY_REDUCING")
    shrink = submit(engine, r, "sig-trim", "SELL", "150")
    assert shrink["status"] == "VALIDATED" and shrink["reason"] is None
    # The entry admitted before the state changed: its child is cancelled unsent.
    plan_admitted(engine, venue, later, client_id=1, now=T0)
    sent_before = len(placements(r))
    result = send_due(engine, venue, T0 + timedelta(seconds=1), intent_id=later)
    assert result.skipped and set(result.skipped.values()) == {"STRATEGY_REDUCING"}
    assert len(placements(r)) == sent_before

    # Resume: not while the position is still beyond the limit, never by a non-operator.
    with engine.connect() as conn:
        standing = post_trade.standing_causes(conn, limits)
    with pytest.raises(TransitionRefused, match="POSITION_LIMIT"):
        operator_change(
            engine, venue, STRATEGY, TradingState.ACTIVE, actor="alice", reason="checked",
            operators={"alice"}, causes=standing, now=T0,
        )  # fmt: skip
    # The reducing intent trades; the position is back within its limit.
    trim = int(shrink["intent_id"])
    plan_admitted(engine, venue, trim, client_id=1, now=T0)
    send_due(engine, venue, T0 + timedelta(seconds=2), intent_id=trim)
    sell = children(engine, trim)[0]
    assert sell.ib_order_id is not None and sell.action == "SELL"
    execute(
        engine, sell, exec_id="0002.01.01", perm_id=7000 + sell.ib_order_id, con_id=AAPL,
        symbol="AAPL", sec_type="STK", side="SLD", shares="150", price="200.00",
    )  # fmt: skip
    with engine.connect() as conn:
        standing = post_trade.standing_causes(conn, limits)
    assert standing == []
    with pytest.raises(NotAuthorised, match="EPM_RISK_OPERATORS"):
        operator_change(
            engine, venue, STRATEGY, TradingState.ACTIVE, actor="mallory", reason="let me",
            operators={"alice"}, causes=standing, now=T0,
        )  # fmt: skip
    done = operator_change(
        engine, venue, STRATEGY, TradingState.ACTIVE, actor="alice", reason="back in limits",
        operators={"alice"}, causes=standing, now=T0 + timedelta(seconds=3),
    )  # fmt: skip
    assert done.changed and (done.record.state, done.record.version) == (TradingState.ACTIVE, 2)
    last = audits(engine)[-1]
    assert (last.actor, last.action) == ("alice", "risk_state_active")
    assert last.details["reason"] == "back in limits" and last.details["from"] == "REDUCING"
    assert submit(engine, r, "sig-again", "BUY", "10")["status"] == "VALIDATED"


def test_a_global_halt_cancels_working_entries_keeps_bracket_exits_and_sends_nothing(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    venue = BridgeVenue(engine, r, client_id=1)
    bracket = admit(
        engine, r, signal_id="sig-bracket", quantity="20",
        params={"trail_percent": "2", "profit_target": "400"},
    )  # fmt: skip
    plan_admitted(engine, venue, bracket, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0, intent_id=bracket)
    send_due(engine, venue, T0 + timedelta(milliseconds=10), intent_id=bracket)
    rows = children(engine, bracket)
    entry = next(c for c in rows if c.parent_order_id is None)
    exits = [c for c in rows if c.parent_order_id is not None]
    assert len(exits) == 2 and all(c.ib_order_id is not None for c in exits)
    fill(engine, entry, "20", "200.02", "0003.01.01")
    working = admit(engine, r, signal_id="sig-working", quantity="300")
    plan_admitted(engine, venue, working, client_id=1, now=T0)
    send_due(engine, venue, T0 + timedelta(milliseconds=20), intent_id=working)
    (sent, *unsent) = children(engine, working)
    assert sent.ib_order_id is not None and unsent and all(c.ib_order_id is None for c in unsent)
    placed = len(placements(r))

    # Any named actor may stop the desk (tightening needs no operator list).
    done = operator_change(
        engine, venue, GLOBAL_SCOPE, TradingState.HALTED, actor="bob", reason="fomc",
        operators=set(), causes=[], now=T0 + timedelta(seconds=1),
    )  # fmt: skip
    assert done.changed and done.cancels_sent == [sent.ib_order_id]
    assert cancels(r) == [sent.ib_order_id]  # the bracket's stop and target keep working
    (audit,) = audits(engine)
    assert (audit.actor, audit.action, audit.details["cancels"]) == (
        "bob",
        "risk_state_halted",
        str(sent.ib_order_id),
    )
    states = {c.client_order_id: c.state for c in children(engine, working)}
    assert states[sent.client_order_id] == "CANCEL_REQUESTED"
    assert all(states[c.client_order_id] == "CANCELLED" for c in unsent)
    # Intake refuses every strategy; the orders path sends nothing new.
    refused = submit(engine, r, "sig-during", "SELL", "5")
    assert refused["reason"] == "STRATEGY_HALTED" and "global" in refused["message"]
    for step in range(3):
        send_due(engine, venue, T0 + timedelta(seconds=2 + step))
    assert len(placements(r)) == placed
    # Halting again is a no-op: no second audit row, no second cancel.
    again = operator_change(
        engine, venue, GLOBAL_SCOPE, TradingState.HALTED, actor="bob", reason="fomc",
        operators=set(), causes=[], now=T0 + timedelta(seconds=5),
    )  # fmt: skip
    assert not again.changed and len(audits(engine)) == 1 and len(cancels(r)) == 1


def test_a_critical_reconciliation_halts_the_desk_until_a_clean_run(
    engine: Engine, r: redis.Redis
) -> None:
    venue = BridgeVenue(engine, r, client_id=1)
    limit = timedelta(days=1)  # no bridge in this test: its absence is not what is checked

    def run(status: str, at: Any) -> None:
        with write_transaction(engine) as conn:
            recon_runs.insert(
                conn, kind="executions", started_at=at, finished_at=at, status=status,
                checked=1, recovered=0, flagged=1, differences=[], details={},
            )  # fmt: skip

    run("ok", T0)
    assert (
        breakers.trip(engine, r, venue, orders_client_id=1, disconnect_limit=limit, now=T0) is None
    )
    run("critical", T0 + timedelta(seconds=1))
    tripped = breakers.trip(
        engine, r, venue, orders_client_id=1, disconnect_limit=limit, now=T0 + timedelta(seconds=2)
    )
    assert tripped is not None and tripped.record.state is TradingState.HALTED
    assert tripped.record.scope == GLOBAL_SCOPE and "executions" in str(tripped.record.reason)

    def causes() -> list[Any]:
        with engine.connect() as conn:
            return breakers.standing_causes(
                conn, r, orders_client_id=1, disconnect_limit=limit, now=T0
            )

    with pytest.raises(TransitionRefused, match="CRITICAL_RECON"):
        operator_change(
            engine, venue, GLOBAL_SCOPE, TradingState.ACTIVE, actor="alice", reason="looked",
            operators={"alice"}, causes=causes(), now=T0 + timedelta(seconds=3),
        )  # fmt: skip
    run("ok", T0 + timedelta(seconds=4))
    done = operator_change(
        engine, venue, GLOBAL_SCOPE, TradingState.ACTIVE, actor="alice", reason="recon clean",
        operators={"alice"}, causes=causes(), now=T0 + timedelta(seconds=5),
    )  # fmt: skip
    assert done.changed and state(engine, GLOBAL_SCOPE).version == 2
    assert [a.action for a in audits(engine)] == ["risk_state_halted", "risk_state_active"]
    assert audits(engine)[0].actor == "rule:breaker"


def test_a_halted_instrument_freezes_its_children_until_the_halt_lifts(
    engine: Engine, r: redis.Redis
) -> None:
    describe_aapl(engine)
    venue = BridgeVenue(engine, r, client_id=1)
    intent_id = admit(engine, r, signal_id="sig-frozen")
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    r.hset(f"md:{AAPL}", "halted", "1")  # as the bridge writes tick 49
    result = send_due(engine, venue, T0, intent_id=intent_id)
    assert set(result.held.values()) == {"instrument halted"} and placements(r) == []
    r.hset(f"md:{AAPL}", "halted", "0")
    quote(r, T0 + timedelta(seconds=1))
    assert send_due(engine, venue, T0 + timedelta(seconds=1), intent_id=intent_id).sent
    assert len(placements(r)) == 1


def test_a_halted_strategy_is_mirrored_to_the_bridge_halt_key_and_cleared_on_resume(
    engine: Engine, r: redis.Redis
) -> None:
    from ibgateway_bridge import commands as cmds
    from services.risk.states import BRIDGE_HALT_KEY

    assert BRIDGE_HALT_KEY == cmds.HALT_STRATEGY_KEY
    venue = BridgeVenue(engine, r, client_id=1)

    def change(to: TradingState, actor: str, scope: str = STRATEGY) -> Any:
        return operator_change(
            engine, venue, scope, to, actor=actor, reason="drill", operators={"alice"},
            causes=[], now=T0, halts=r,
        )  # fmt: skip

    change(TradingState.HALTED, "bob")
    # The bridge itself now refuses a placement of this strategy (one queued before the halt).
    assert cmds.halt_reason(r, None, STRATEGY) is cmds.BridgeRejectReason.HALTED_STRATEGY
    assert cmds.halt_reason(r, None, "Gamma_Rebalance") is None
    change(TradingState.ACTIVE, "alice")
    assert cmds.halt_reason(r, None, STRATEGY) is None
    # A halt key an operator set by hand is theirs: a resume here leaves it.
    r.set(cmds.HALT_STRATEGY_KEY.format(strategy="Gamma_Rebalance"), "operator")
    change(TradingState.HALTED, "bob", "Gamma_Rebalance")
    change(TradingState.ACTIVE, "alice", "Gamma_Rebalance")
    assert r.get(cmds.HALT_STRATEGY_KEY.format(strategy="Gamma_Rebalance")) is not None
    # The desk's HALT does not touch the kill switch's key.
    change(TradingState.HALTED, "bob", GLOBAL_SCOPE)
    assert r.get(cmds.HALT_GLOBAL_KEY) is None


def test_the_beat_task_applies_the_limits_in_force_with_overrides(
    engine: Engine, r: redis.Redis, redis_url: str
) -> None:
    from epm.settings import Settings
    from services.risk.current_limits import set_override
    from tasks.app import Stores
    from tasks.risk import run_monitor

    describe_aapl(engine)
    venue = BridgeVenue(engine, r, client_id=1)
    bought = admit(engine, r, signal_id="sig-beat")
    plan_admitted(engine, venue, bought, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0, intent_id=bought)
    fill(engine, children(engine, bought)[0], "300", "200.02", "0004.01.01")
    # No bridge here: its absence starts the disconnect clock, which does not run out at T0.
    stores = Stores(
        settings=Settings(redis_url=redis_url, database_url=engine.url.render_as_string(False)),
        engine=engine,
        redis=r,
        now=T0,
    )
    assert run_monitor(stores) == {"changed": [], "cancels": []}  # 300 is within the default
    set_override(
        engine, path=f"strategies.{STRATEGY}.max_position_quantity", value="250",
        actor="alice", reason="tighter", now=T0,
    )  # fmt: skip
    outcome = run_monitor(stores)
    assert outcome["changed"][0]["scope"] == STRATEGY
    assert outcome["changed"][0]["state"] == "REDUCING"
    assert "max_position_quantity 250" in outcome["changed"][0]["reason"]
    assert run_monitor(stores)["changed"] == []


def test_the_drawdown_counts_from_the_day_start_not_yesterdays_loss(
    engine: Engine, r: redis.Redis
) -> None:
    from models.market import MarketSnapshot
    from services.books.marks import mark_books
    from tasks.risk import day_start

    describe_aapl(engine)
    venue = BridgeVenue(engine, r, client_id=1)

    def reader(con_id: int) -> MarketSnapshot | None:
        return MarketSnapshot.from_fields(con_id, r.hgetall(f"md:{con_id}"))

    yesterday = T0 - timedelta(days=1)
    bought = admit(engine, r, signal_id="sig-yday", quantity="100")
    plan_admitted(engine, venue, bought, client_id=1, now=yesterday)
    quote(r, yesterday)
    send_due(engine, venue, yesterday, intent_id=bought)
    fill(engine, children(engine, bought)[0], "100", "200.02", "0005.01.01")
    # Yesterday's close: marked 20 lower, a 2,000+ loss in the books (and in yesterday's snapshot).
    quote(r, yesterday, bid="180.00", ask="180.02")
    mark_books(engine, reader, {}, None, yesterday)
    limits = limits_with(max_intraday_drawdown="500")
    since = day_start(T0)
    assert since.isoformat() == "2026-12-03T05:00:00+00:00"  # midnight in New York
    # Today, marked where it closed: nothing lost today, so no halt ...
    quote(r, T0, bid="180.00", ask="180.02")
    mark_books(engine, reader, {}, None, T0)
    assert post_trade.monitor(engine, venue, limits, T0, since=since) == []
    # ... (counted from the start of the books it would have been halted) ...
    with engine.connect() as conn:
        assert [c.code for c in post_trade.standing_causes(conn, limits)] == ["DRAWDOWN_LIMIT"]
    # ... and today's own loss beyond the limit halts it, with today's figure.
    quote(r, T0 + timedelta(minutes=1), bid="174.00", ask="174.02")
    mark_books(engine, reader, {}, None, T0 + timedelta(minutes=1))
    (halted,) = post_trade.monitor(engine, venue, limits, T0 + timedelta(minutes=1), since=since)
    assert halted.record.state is TradingState.HALTED
    with engine.connect() as conn:
        event = conn.execute(
            sa.select(risk_events).where(risk_events.c.kind == "STATE_CHANGED")
        ).one()
    assert event.details["loss"] == "600" and "lost 600," in event.message
