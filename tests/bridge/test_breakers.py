"""Circuit breakers and trading states against the simulator, the real bridge, Redis and
PostgreSQL: a 326 collision (a second client holding our id) halts the desk, resume is refused
while it lasts and is audited once it cleared; a disconnect longer than the limit halts the desk;
a drawdown beyond the strategy's threshold halts it and its working entry order is cancelled at
the simulator."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from epm.limits import load_limits
from ibgateway_bridge.config import STATE_KEY, BridgeConfig
from ibgateway_bridge.connection import PacedClient
from ibgateway_bridge.pacing import SlidingWindowLimiter
from ibgateway_bridge.wrapper import BridgeWrapper
from models.limits import Limits, parse_limits
from models.market import MarketSnapshot
from models.strategy_state import GLOBAL_SCOPE, TradingState, TransitionRefused
from services.books.marks import mark_books
from services.intake import process_submission
from services.orders.plan_intent import plan_admitted
from services.orders.send_due import send_due
from services.risk import breakers, post_trade
from services.risk.states import operator_change
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from store.schema import audit_log, execution_orders, intents, positions_current, risk_events
from tasks.orders import BridgeVenue
from tests.bridge.harness import bridge_in_process, poll, sim_status, sim_thread, wait_ready
from tests.bridge.test_ledger_e2e import ledger_worker
from tests.integration.conftest import wipe

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

T = TypeVar("T")
LIMIT = timedelta(seconds=30)


@pytest.fixture(scope="module")
def ledger_db(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


@pytest.fixture
def engine(ledger_db: str) -> Any:
    eng = make_engine(ledger_db)
    wipe(eng)
    yield eng
    wipe(eng)
    dispose_engines()


def risk_audits(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        query = sa.select(audit_log).where(audit_log.c.target.like("risk_state:%"))
        return list(conn.execute(query.order_by(audit_log.c.id)).all())


def causes_now(engine: Engine, r: redis.Redis) -> list[Any]:
    with engine.connect() as conn:
        return breakers.standing_causes(
            conn, r, orders_client_id=1, disconnect_limit=LIMIT, now=datetime.now(UTC)
        )


def test_pinned_bridge_state_key() -> None:
    assert breakers.BRIDGE_STATE_KEY == STATE_KEY


def test_a_326_collision_halts_the_desk_and_resume_waits_for_it_to_clear(
    r: redis.Redis, redis_url: str, engine: Engine
) -> None:
    venue = BridgeVenue(engine, r, client_id=1)
    with sim_thread() as sim:
        # Another client takes our client id first (a second epm, a TWS session).
        squatter = PacedClient(
            BridgeWrapper(1, queue.Queue(), queue.Queue()),
            SlidingWindowLimiter(45, connection="squat"),
        )
        squatter.connect("127.0.0.1", sim.port, 1)
        assert squatter.isConnected()
        config = BridgeConfig(
            send_extra_tasks=False,
            id_in_use_retry_s=3.0,
            id_in_use_max_retries=-1,
            reconnect_base_s=0.1,
            reconnect_cap_s=1.0,
        )
        try:
            with bridge_in_process(redis_url, sim.port, config=config):
                poll(lambda: r.hget(STATE_KEY, "client1") == "ID_IN_USE", 15, what="ID_IN_USE")
                tripped = breakers.trip(
                    engine,
                    r,
                    venue,
                    orders_client_id=1,
                    disconnect_limit=LIMIT,
                    now=datetime.now(UTC),
                )
                assert tripped is not None
                assert (tripped.record.scope, tripped.record.state) == (
                    GLOBAL_SCOPE,
                    TradingState.HALTED,
                )
                assert "326" in str(tripped.record.reason)
                with engine.connect() as conn:
                    event = conn.execute(
                        sa.select(risk_events).where(risk_events.c.kind == "STATE_CHANGED")
                    ).one()
                assert (event.code, event.severity) == ("CLIENT_ID_COLLISION", "critical")
                # Nothing new is admitted while the desk is halted.
                refused = process_submission(
                    {
                        "signal_id": "sig-326",
                        "strategy": "Momentum_EQ",
                        "instrument": "AAPL",
                        "side": "BUY",
                        "quantity": "10",
                        "urgency": "High",
                        "time_in_force": "DAY",
                    },
                    engine=engine,
                    redis_client=r,
                    now=datetime.now(UTC),
                    max_active=lambda _s: 10,
                )
                assert refused["reason"] == "STRATEGY_HALTED"
                with pytest.raises(TransitionRefused, match="CLIENT_ID_COLLISION"):
                    operator_change(
                        engine, venue, GLOBAL_SCOPE, TradingState.ACTIVE, actor="alice",
                        reason="try", operators={"alice"}, causes=causes_now(engine, r),
                        now=datetime.now(UTC),
                    )  # fmt: skip
                squatter.disconnect()
                wait_ready(r)
                clear = poll(lambda: causes_now(engine, r) == [], 10, what="causes cleared")
                assert clear
                done = operator_change(
                    engine, venue, GLOBAL_SCOPE, TradingState.ACTIVE, actor="alice",
                    reason="the other session is gone", operators={"alice"},
                    causes=causes_now(engine, r), now=datetime.now(UTC),
                )  # fmt: skip
        finally:
            squatter.disconnect()
    assert done.changed and done.record.version == 2
    trail = risk_audits(engine)
    assert [(a.actor, a.action) for a in trail] == [
        ("rule:breaker", "risk_state_halted"),
        ("alice", "risk_state_active"),
    ]
    assert trail[1].details["reason"] == "the other session is gone"


def test_a_disconnect_beyond_the_limit_halts_the_desk(
    r: redis.Redis, redis_url: str, engine: Engine
) -> None:
    venue = BridgeVenue(engine, r, client_id=1)
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        poll(lambda: r.hget(STATE_KEY, "heartbeat"), 5, what="a heartbeat")
        now = datetime.now(UTC)
        assert breakers.trip(
            engine, r, venue, orders_client_id=1, disconnect_limit=LIMIT, now=now
        ) is None  # fmt: skip
    # The bridge is gone (its last state says stopped): within the limit nothing happens ...
    down = datetime.now(UTC)
    assert breakers.trip(
        engine, r, venue, orders_client_id=1, disconnect_limit=LIMIT, now=down
    ) is None  # fmt: skip
    assert breakers.trip(
        engine, r, venue, orders_client_id=1, disconnect_limit=LIMIT, now=down + LIMIT
    ) is None  # fmt: skip
    # ... beyond it, the desk is halted with how long it has been down.
    tripped = breakers.trip(
        engine, r, venue, orders_client_id=1, disconnect_limit=LIMIT,
        now=down + LIMIT + timedelta(seconds=1),
    )  # fmt: skip
    assert tripped is not None and tripped.record.state is TradingState.HALTED
    assert "31s" in str(tripped.record.reason)


def _limits(**strategy: str) -> Limits:
    doc = load_limits().model_dump(mode="json", exclude_none=True)
    doc["strategies"] = {"Momentum_EQ": strategy}
    return parse_limits(doc)


def _reader(r: redis.Redis) -> Callable[[int], MarketSnapshot | None]:
    def read(con_id: int) -> MarketSnapshot | None:
        fields = r.hgetall(f"md:{con_id}")
        return MarketSnapshot.from_fields(con_id, fields) if fields else None

    return read


def _ticking(engine: Engine, venue: BridgeVenue, until: Callable[[], T], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        send_due(engine, venue, datetime.now(UTC))
        value = until()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s")
        time.sleep(0.2)


def _submit(engine: Engine, r: redis.Redis, venue: BridgeVenue, **fields: str) -> int:
    payload = {
        "strategy": "Momentum_EQ",
        "side": "BUY",
        "time_in_force": "DAY",
        **fields,
    }
    outcome = process_submission(
        payload, engine=engine, redis_client=r, now=datetime.now(UTC), max_active=lambda _s: 9
    )
    assert outcome["status"] == "VALIDATED", outcome
    intent_id = int(outcome["intent_id"])
    plan_admitted(engine, venue, intent_id, client_id=1, now=datetime.now(UTC))
    return intent_id


def _one(engine: Engine, query: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(query).first()


def test_a_drawdown_halts_the_strategy_and_its_working_entry_is_cancelled_at_the_sim(
    r: redis.Redis, redis_url: str, engine: Engine, tmp_path: Path
) -> None:
    venue = BridgeVenue(engine, r, client_id=1)
    # A market that stands still: a resting order is not filled by prints while we look.
    with (
        sim_thread(stepped=True) as sim,
        bridge_in_process(redis_url, sim.port, BridgeConfig(send_extra_tasks=True)),
        ledger_worker(redis_url, engine.url.render_as_string(False), tmp_path / "ledger.log"),
    ):
        wait_ready(r)
        bought = _submit(
            engine, r, venue, signal_id="dd-buy", instrument="AAPL", quantity="20",
            urgency="High",
        )  # fmt: skip

        def completed() -> Any:
            row = _one(engine, sa.select(intents.c.status).where(intents.c.id == bought))
            return row is not None and row.status == "COMPLETED"

        _ticking(engine, venue, completed, 60)
        resting = _submit(
            engine, r, venue, signal_id="dd-rest", instrument="MSFT", quantity="10",
            urgency="Normal",
        )  # fmt: skip

        def placed() -> Any:
            row = _one(
                engine,
                sa.select(execution_orders.c.ib_order_id).where(
                    execution_orders.c.intent_id == resting,
                    execution_orders.c.ib_order_id.is_not(None),
                ),
            )
            return row is not None and sim_status(sim, int(row.ib_order_id)) in (
                "Submitted",
                "PreSubmitted",
            ) and int(row.ib_order_id)  # fmt: skip

        working_id = _ticking(engine, venue, placed, 30)
        # The AAPL fill and its commission are in the books; the mark tick prices it.
        poll(
            lambda: _one(
                engine,
                sa.select(positions_current).where(positions_current.c.commissions > 0),
            ),
            20,
            what="position with its commission",
        )
        marked = mark_books(engine, _reader(r), {}, r, datetime.now(UTC))
        assert marked.as_dict()
        limits = _limits(max_intraday_drawdown="0.01")
        (halted,) = post_trade.monitor(engine, venue, limits, datetime.now(UTC), halts=r)
        assert (halted.record.scope, halted.record.state) == ("Momentum_EQ", TradingState.HALTED)
        assert halted.cancels_sent == [working_id]
        assert str(r.get("epm:halt:strategy:Momentum_EQ")).startswith("risk_state:")
        poll(lambda: sim_status(sim, working_id) == "Cancelled", 15, what="cancelled at the sim")
        event = _one(engine, sa.select(risk_events).where(risk_events.c.kind == "STATE_CHANGED"))
        assert event.code == "DRAWDOWN_LIMIT" and event.severity == "critical"
        assert (risk_audits(engine)[0].actor, risk_audits(engine)[0].action) == (
            "rule:post_trade",
            "risk_state_halted",
        )
        # Halted: a new intent is refused and the orders path sends nothing new.
        refused = process_submission(
            {
                "signal_id": "dd-after",
                "strategy": "Momentum_EQ",
                "instrument": "AAPL",
                "side": "SELL",
                "quantity": "20",
                "urgency": "High",
                "time_in_force": "DAY",
            },
            engine=engine,
            redis_client=r,
            now=datetime.now(UTC),
            max_active=lambda _s: 9,
        )
        assert refused["reason"] == "STRATEGY_HALTED"
        assert post_trade.monitor(engine, venue, limits, datetime.now(UTC)) == []
