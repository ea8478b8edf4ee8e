"""The orders path against the simulator: intents planned and sent by the real services, through
the real bridge to the venue, their fills back through a real Celery ledger worker into
PostgreSQL. The scheduler tick is driven here (what beat does every second), so each test says
exactly when it runs.

A roll (Spread_Roll) goes out as one BAG of two calls at the simulator (its own combo matching),
fills there, and the ledger books the legs' positions and the combo's units.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import sqlalchemy as sa
from ibapi.execution import ExecutionFilter
from sqlalchemy.engine import Engine

from ibgateway_bridge import client_api
from ibgateway_bridge.config import BridgeConfig
from services.intake import process_submission
from services.orders.plan_intent import plan_admitted
from services.orders.send_due import send_due
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from tasks.orders import BridgeVenue
from tests.bridge.harness import bridge_in_process, poll, sim_orders, sim_thread, wait_ready
from tests.bridge.test_ledger_e2e import ledger_worker
from tests.integration.conftest import wipe
from tws_sim.server.testing import RecordingClient

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

T = TypeVar("T")


@pytest.fixture(scope="module")
def ledger_db(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


def ticking(engine: Engine, venue: BridgeVenue, until: Callable[[], T], timeout: float) -> T:
    """Run the scheduler tick every 0.2 s (as beat would, faster) until `until()` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        send_due(engine, venue, datetime.now(UTC))
        value = until()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s")
        time.sleep(0.2)


def two_calls(r: redis.Redis) -> tuple[str, str]:
    """Two SPY calls at one strike near the money, the nearer and a farther expiry (OCC)."""
    client_api.enqueue_contract_details({"symbol": "SPY", "sec_type": "OPT"}, client=r)

    def calls_by_strike() -> dict[Decimal, list[str]]:
        """Strikes with at least two call expiries cached so far (the chain arrives in parts)."""
        calls: dict[Decimal, list[str]] = {}
        for key in r.scan_iter("contract:occ:*"):
            occ = key.split(":", 2)[2]
            if occ[12] == "C":
                calls.setdefault(Decimal(occ[13:]) / 1000, []).append(occ)
        return {k: v for k, v in calls.items() if len(v) >= 2}

    seen: list[int] = []

    def chain_complete() -> bool:
        """More than 20 contracts, and no more arrived in the last half second."""
        seen.append(len(list(r.scan_iter("contract:occ:*"))))
        return len(seen) > 1 and seen[-1] > 20 and seen[-1] == seen[-2]

    # A strike picked from a chain still arriving can be far from the money, its calls quoted
    # one-sided, and the roll then waits for a price that never comes.
    poll(chain_complete, 30, interval=0.5, what="the whole SPY option chain")
    calls = poll(calls_by_strike, 20, what="a SPY strike with two call expiries")
    spot = Decimal(600)
    strike = min(calls, key=lambda k: abs(k - spot))
    near, far = sorted(calls[strike], key=lambda occ: occ[6:12])[:2]
    return near, far


def intent_row(engine: Engine, signal_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT id, status, reject_message FROM intents WHERE signal_id = :s"),
            {"s": signal_id},
        ).first()


# The default market, where the venue refuses SPY combos (the legged fallback must run).
UNFILLABLE_COMBOS = """
name: spy-combos-unfillable
extends: default
version: 1
description: SPY BAG orders are refused; the legs trade.
always_open: true
start: "10:00"
seed: 5
faults:
  - {kind: combo_unfillable, symbols: [SPY]}
"""


def run_roll(
    r: redis.Redis,
    redis_url: str,
    ledger_db: str,
    tmp_path: Path,
    urgency: str,
    window_s: int,
    scenario: str | None = None,
) -> tuple[Any, Any, dict[str, Decimal], str, str, dict[int, Any]]:
    """Trade a two-call calendar roll of 2 units to its end; (intent, combo row, positions by
    local symbol, near, far, the venue's orders)."""
    engine = make_engine(ledger_db)
    sim_args: dict[str, Any] = {}
    if scenario is not None:
        path = tmp_path / "scenario.yaml"
        path.write_text(scenario)
        sim_args["scenario"] = path
    # Each test's simulator starts its order ids at 1 again and Redis is flushed between tests:
    # the ledger starts empty too, as with a new paper account.
    wipe(engine)
    try:
        with (
            sim_thread(**sim_args) as sim,
            # As in production, contract details also go to the ledger (the orders path reads
            # conIds from its cache).
            bridge_in_process(redis_url, sim.port, BridgeConfig(send_extra_tasks=True)),
            ledger_worker(redis_url, ledger_db, tmp_path / "ledger.log"),
        ):
            wait_ready(r)
            wait_ready(r, client_id=2)
            near, far = two_calls(r)
            payload = {
                "signal_id": f"roll-{time.time_ns()}",
                "strategy": "Spread_Roll",
                "instrument": far,
                "side": "BUY",
                "quantity": "2",
                "urgency": urgency,
                "params": {"combo_window_s": window_s},
                "time_in_force": "DAY",
                "max_slippage_bps": "500",
                # Sell the near call, buy the far one: a calendar roll out in time.
                "legs": [
                    {"instrument": near, "ratio": 1, "action": "SELL"},
                    {"instrument": far, "ratio": 1, "action": "BUY"},
                ],
            }
            outcome = process_submission(
                payload,
                engine=engine,
                redis_client=r,
                now=datetime.now(UTC),
                max_active=lambda _s: 100,
            )
            assert outcome["status"] == "VALIDATED", outcome
            venue = BridgeVenue(engine, r, client_id=1)
            planned = plan_admitted(
                engine, venue, int(outcome["intent_id"]), client_id=1, now=datetime.now(UTC)
            )
            assert planned.template == "COMBO"

            def ended() -> Any:
                row = intent_row(engine, payload["signal_id"])
                return row if row.status not in ("VALIDATED", "WORKING") else None

            final = ticking(engine, venue, ended, 90)
            log = (tmp_path / "ledger.log").read_text(errors="replace")[-3000:]
            assert final.status == "COMPLETED", (final, log)
            with engine.connect() as conn:
                combo = conn.execute(
                    sa.text(
                        "SELECT ib_order_id, sec_type, state, filled_qty FROM execution_orders"
                        " WHERE client_order_id = :k"
                    ),
                    {"k": f"epm-{final.id}-combo"},
                ).one()
                legs = {
                    row.symbol: row.quantity
                    for row in conn.execute(
                        sa.text(
                            "SELECT p.con_id, p.quantity, c.local_symbol AS symbol"
                            " FROM positions_current p JOIN contracts c ON c.con_id = p.con_id"
                            " WHERE p.strategy_id = 'Spread_Roll'"
                        )
                    )
                }
            return final, combo, legs, near, far, sim_orders(sim)
    finally:
        dispose_engines()


def test_an_urgent_roll_trades_as_one_bag_at_the_simulator_and_books_its_legs(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    _final, combo, legs, near, far, at_venue = run_roll(
        r, redis_url, ledger_db, tmp_path, "High", 30
    )
    assert (combo.sec_type, combo.state, combo.filled_qty) == ("BAG", "FILLED", Decimal(2))
    # At the venue: one BAG order, nothing sent leg by leg.
    assert [o for o in at_venue if o >= combo.ib_order_id] == [combo.ib_order_id]
    # The ledger books the legs, not the BAG: -2 of the near call, +2 of the far.
    assert legs == {near: Decimal(-2), far: Decimal(2)}, legs


def test_a_refused_roll_is_legged_after_its_window_buy_leg_first(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    _final, combo, legs, near, far, at_venue = run_roll(
        r, redis_url, ledger_db, tmp_path, "Passive", 3, scenario=UNFILLABLE_COMBOS
    )
    # The venue refuses SPY combos here: the BAG ended unfilled, and after its window the legs
    # completed the roll (the far call bought first, then the near one sold).
    assert combo.state == "REJECTED" and combo.filled_qty == Decimal(0)
    later = sorted(o for o in at_venue if o > combo.ib_order_id)
    assert len(later) >= 2
    first, second = (at_venue[o].request for o in later[:2])
    assert (first.action, second.action) == ("BUY", "SELL")
    assert legs[near] == Decimal(-2) and legs[far] == Decimal(2)


def test_a_bracket_is_what_an_outside_ib_client_sees_at_the_venue(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    engine = make_engine(ledger_db)
    wipe(engine)
    outside = RecordingClient()
    try:
        with (
            sim_thread() as sim,
            bridge_in_process(redis_url, sim.port, BridgeConfig(send_extra_tasks=True)),
            ledger_worker(redis_url, ledger_db, tmp_path / "ledger.log"),
        ):
            wait_ready(r)
            wait_ready(r, client_id=2)
            payload = {
                "signal_id": f"bracket-{time.time_ns()}",
                "strategy": "Momentum_EQ",
                "instrument": "AAPL",
                "side": "BUY",
                "quantity": "20",
                "urgency": "High",
                "time_in_force": "DAY",
                "params": {"trail_percent": "2", "profit_target": "400"},
            }
            outcome = process_submission(
                payload,
                engine=engine,
                redis_client=r,
                now=datetime.now(UTC),
                max_active=lambda _s: 9,
            )
            venue = BridgeVenue(engine, r, client_id=1)
            intent_id = int(outcome["intent_id"])
            plan_admitted(engine, venue, intent_id, client_id=1, now=datetime.now(UTC))

            def completed() -> Any:
                row = intent_row(engine, payload["signal_id"])
                return row if row.status == "COMPLETED" else None

            ticking(engine, venue, completed, 60)
            # An outside client (another client id, as a desk's TWS would be) asks the venue.
            outside.start(sim.port, 7)
            outside.reqAllOpenOrders()
            outside.wait_for(lambda: outside.of("openOrderEnd"))
            seen = {
                args[2].orderRef: (args[1], args[2])
                for args in outside.of("openOrder")
                if str(args[2].orderRef).startswith(f"epm-{intent_id}-")
            }
            outside.reqExecutions(1, ExecutionFilter())
            outside.wait_for(lambda: outside.of("execDetailsEnd"))
            executions = [
                a[2]
                for a in outside.of("execDetails")
                if a[2].orderRef == f"epm-{intent_id}-bracket-entry"
            ]
        target_contract, target = seen[f"epm-{intent_id}-bracket-target"]
        stop_contract, stop = seen[f"epm-{intent_id}-bracket-stop"]
        entry_id = executions[0].orderId
        assert target_contract.symbol == stop_contract.symbol == "AAPL"
        assert (target.action, target.orderType, float(target.lmtPrice), target.tif) == (
            "SELL",
            "LMT",
            400.0,
            "GTC",
        )
        assert (stop.action, stop.orderType, float(stop.trailingPercent), stop.tif) == (
            "SELL",
            "TRAIL",
            2.0,
            "GTC",
        )
        assert target.parentId == stop.parentId == entry_id
        assert target.ocaGroup == stop.ocaGroup != ""
        assert sum(Decimal(str(e.shares)) for e in executions) == Decimal(20)
    finally:
        outside.stop()
        dispose_engines()
