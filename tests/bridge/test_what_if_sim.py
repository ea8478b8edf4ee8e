"""Combo margin checked with a what-if before the BAG goes out, against the simulator through
the real bridge (orders on client 1, the account summary from client 2) and ledger worker.

A roll that fits is sent after the venue's what-if answered (its numbers kept on the child); a
roll whose initial margin change would break the headroom floor is refused before anything
trades (intent REJECTED, a `risk_events` row with the numbers, no BAG and no legs at the venue).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ibgateway_bridge import client_api
from ibgateway_bridge.config import BridgeConfig
from services.intake import process_submission
from services.orders.plan_intent import plan_admitted
from services.risk.current_limits import set_override
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from tasks.orders import BridgeVenue
from tests.bridge.harness import bridge_in_process, poll, sim_orders, sim_thread, wait_ready
from tests.bridge.test_ledger_e2e import ledger_worker
from tests.bridge.test_orders_sim import intent_row, ticking, two_calls
from tests.integration.conftest import wipe

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def ledger_db(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


@contextmanager
def venue_up(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> Iterator[tuple[Engine, Any]]:
    engine = make_engine(ledger_db)
    wipe(engine)
    with ExitStack() as stack:
        stack.callback(dispose_engines)
        sim = stack.enter_context(sim_thread())
        stack.enter_context(
            bridge_in_process(redis_url, sim.port, BridgeConfig(send_extra_tasks=True))
        )
        stack.enter_context(ledger_worker(redis_url, ledger_db, tmp_path / "ledger.log"))
        wait_ready(r)
        wait_ready(r, client_id=2)
        poll(lambda: list(r.scan_iter("ib:account:*")), 20, what="the account summary")
        yield engine, sim


def roll(engine: Engine, r: redis.Redis, headroom: str | None = None) -> tuple[Any, str, str]:
    """Submit and plan an urgent two-call roll of 2 units; (intent, near, far)."""
    near, far = two_calls(r)
    payload = {
        "signal_id": f"whatif-{time.time_ns()}",
        "strategy": "Spread_Roll",
        "instrument": far,
        "side": "BUY",
        "quantity": "2",
        "urgency": "High",
        "time_in_force": "DAY",
        "max_slippage_bps": "500",
        "legs": [
            {"instrument": near, "ratio": 1, "action": "SELL"},
            {"instrument": far, "ratio": 1, "action": "BUY"},
        ],
    }
    outcome = process_submission(
        payload, engine=engine, redis_client=r, now=datetime.now(UTC), max_active=lambda _s: 100
    )
    assert outcome["status"] == "VALIDATED", outcome
    if headroom is not None:  # after intake: only the combo's own margin is to break it
        set_override(
            engine,
            path="account.min_margin_headroom",
            value=headroom,
            actor="test",
            reason="a tight account",
            now=datetime.now(UTC),
        )
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, int(outcome["intent_id"]), client_id=1, now=datetime.now(UTC))
    return payload["signal_id"], near, far


def combo_row(engine: Engine, signal_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT o.* FROM execution_orders o JOIN intents i ON i.id = o.intent_id"
                " WHERE i.signal_id = :s AND o.client_order_id LIKE '%-combo'"
            ),
            {"s": signal_id},
        ).one()


def ended(engine: Engine, signal_id: str) -> Any:
    row = intent_row(engine, signal_id)
    return row if row.status not in ("VALIDATED", "WORKING") else None


def test_a_roll_that_fits_goes_out_after_the_venues_what_if(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    with venue_up(r, redis_url, ledger_db, tmp_path) as (engine, sim):
        signal_id, _near, _far = roll(engine, r)
        venue = BridgeVenue(engine, r, client_id=1)
        final = ticking(engine, venue, lambda: ended(engine, signal_id), 90)
        assert final.status == "COMPLETED", final
        combo = combo_row(engine, signal_id)
        checked = combo.details["what_if"]
        assert checked["verdict"] == "fits"
        answer = client_api.what_if_answer(checked["order_ref"], client=r)
        assert answer["status"] == "PreSubmitted"
        change = Decimal(checked["init_margin_change"])
        assert change == Decimal(answer["initMarginChange"]) > 0
        assert Decimal(checked["available_after"]) == Decimal(checked["available_funds"]) - change
        # The what-if's id came first and never became an order at the venue.
        assert checked["ib_order_id"] < combo.ib_order_id
        at_venue = sim_orders(sim)
        assert checked["ib_order_id"] not in at_venue
        assert [o for o in at_venue if o >= combo.ib_order_id] == [combo.ib_order_id]


def test_a_roll_that_would_break_the_headroom_floor_is_refused_before_it_trades(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    with venue_up(r, redis_url, ledger_db, tmp_path) as (engine, sim):
        signal_id, _near, _far = roll(engine, r, headroom="0.995")
        venue = BridgeVenue(engine, r, client_id=1)
        final = ticking(engine, venue, lambda: ended(engine, signal_id), 60)
        assert (final.status, final.reject_message is not None) == ("REJECTED", True), final
        combo = combo_row(engine, signal_id)
        assert combo.state == "CANCELLED" and combo.ib_order_id is None
        with engine.connect() as conn:
            event = conn.execute(
                sa.text(
                    "SELECT code, details FROM risk_events WHERE kind = 'COMBO_MARGIN_REFUSED'"
                    " AND scope_key = :s"
                ),
                {"s": signal_id},
            ).one()
            states = conn.execute(
                sa.text(
                    "SELECT o.state, o.ib_order_id FROM execution_orders o JOIN intents i"
                    " ON i.id = o.intent_id WHERE i.signal_id = :s"
                ),
                {"s": signal_id},
            ).all()
            reason = conn.execute(
                sa.text("SELECT reject_reason FROM intents WHERE signal_id = :s"),
                {"s": signal_id},
            ).scalar_one()
        assert event.code == reason == "COMBO_MARGIN"
        numbers = event.details
        assert Decimal(numbers["available_after"]) < Decimal(numbers["floor"])
        assert Decimal(numbers["floor"]) == Decimal("0.995") * Decimal(numbers["net_liquidation"])
        # Nothing traded: the BAG and its legged fallback all ended unsent.
        assert all(state == "CANCELLED" and ib is None for state, ib in states), states
        assert sim_orders(sim) == {}
