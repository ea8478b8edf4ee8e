"""Venue choice from depth against the simulator, through the real bridge and ledger worker: a
Momentum_EQ intent with `params.route_by_depth` has its child sent straight to the exchange
whose L2 rows (the bridge's `md:{conid}` depth) alone show the whole child at its limit."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from ibgateway_bridge import client_api
from ibgateway_bridge.config import BridgeConfig
from models.venue_choice import ROUTES
from services.intake import process_submission
from services.orders.plan_intent import plan_admitted
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from tasks.orders import BridgeVenue
from tests.bridge.harness import (
    SPY_CON,
    bridge_in_process,
    poll,
    sim_orders,
    sim_thread,
    wait_ready,
)
from tests.bridge.test_ledger_e2e import ledger_worker
from tests.bridge.test_orders_sim import intent_row, ticking
from tests.integration.conftest import wipe

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def ledger_db(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


def test_a_child_goes_to_the_exchange_whose_book_alone_covers_it(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    engine = make_engine(ledger_db)
    wipe(engine)
    try:
        with (
            sim_thread() as sim,
            bridge_in_process(redis_url, sim.port, BridgeConfig(send_extra_tasks=True)),
            ledger_worker(redis_url, ledger_db, tmp_path / "ledger.log"),
        ):
            wait_ready(r)
            wait_ready(r, client_id=2)
            spy = {"con_id": SPY_CON, "symbol": "SPY", "sec_type": "STK"}
            # The book is there before the child is priced (the plan asks for it too).
            client_api.enqueue_subscribe(SPY_CON, "test", spy, depth=True, client=r)
            poll(lambda: r.hget(f"md:{SPY_CON}", "depth"), 20, what="SPY's depth")
            signal_id = f"depth-{time.time_ns()}"
            outcome = process_submission(
                {
                    "signal_id": signal_id,
                    "strategy": "Momentum_EQ",
                    "instrument": "SPY",
                    "side": "BUY",
                    "quantity": "100",
                    "urgency": "High",
                    "time_in_force": "DAY",
                    "max_slippage_bps": "500",
                    "params": {"route_by_depth": True},
                },
                engine=engine,
                redis_client=r,
                now=datetime.now(UTC),
                max_active=lambda _s: 100,
            )
            assert outcome["status"] == "VALIDATED", outcome
            venue = BridgeVenue(engine, r, client_id=1)
            plan_admitted(
                engine, venue, int(outcome["intent_id"]), client_id=1, now=datetime.now(UTC)
            )

            def ended() -> object:
                row = intent_row(engine, signal_id)
                return row if row.status not in ("VALIDATED", "WORKING") else None

            final = ticking(engine, venue, ended, 60)
            assert final.status == "COMPLETED", final
            with engine.connect() as conn:
                first = conn.execute(
                    sa.text(
                        "SELECT ib_order_id, exchange, limit_price, details FROM execution_orders"
                        " WHERE intent_id = :i AND ib_order_id IS NOT NULL ORDER BY id LIMIT 1"
                    ),
                    {"i": final.id},
                ).one()
            why = first.details["route_why"]
            assert first.exchange in ROUTES.values() and first.exchange != "SMART", why
            assert "alone shows" in why
            at_venue = sim_orders(sim)[first.ib_order_id]
            assert at_venue.request.route == first.exchange
            assert at_venue.filled == Decimal(100)
    finally:
        dispose_engines()
