"""Structural replace against the simulator, through the real bridge and a real ledger worker.

An operator takes a resting pegged child off its peg into an IOC (`request_replace`, what
`epm replace-order` runs): the venue sees the old order cancelled and only then a new order under
a fresh id, linked in the ledger by `parent_order_id`, sized to what the old one did not fill.
In the race, the old order fills in part at the venue while the ledger is paused: the replacement
is held until the ledger knows the cancel (with those fills), then asks only for the rest.
"""

from __future__ import annotations

import os
import signal
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

from ibgateway_bridge.config import BridgeConfig
from models.replace import Changes
from services.intake import process_submission
from services.orders.plan_intent import plan_admitted
from services.orders.replace import request_replace
from services.orders.send_due import send_due
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
from tests.bridge.test_orders_sim import ticking
from tests.integration.conftest import wipe

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

QUANTITY = Decimal(600)
# A thin SPY: about a round lot at the touch and rare prints, so a limit lifted to the ask fills
# in part and the rest keeps resting.
THIN = """
name: thin-spy
extends: default
version: 1
description: SPY with a thin touch and few prints.
always_open: true
start: "10:00"
seed: 3
instruments:
  - {symbol: SPY, price: "600.00", vol: 0.05, iv: 0.15, dividend_yield: 0.012, spread_ticks: 1,
     avg_size_lots: 1, trades_per_s: 0.1, avg_trade_size: 100, daily_volume: 60000000}
"""


@pytest.fixture(scope="module")
def ledger_db(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


def child(engine: Engine, key: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT * FROM execution_orders WHERE client_order_id = :k"), {"k": key}
        ).first()


def events(engine: Engine, key: str) -> list[tuple[int, str, str | None]]:
    with engine.connect() as conn:
        return [
            (row.id, row.event_type, row.to_state)
            for row in conn.execute(
                sa.text(
                    "SELECT e.id, e.event_type, e.to_state FROM order_events e"
                    " JOIN execution_orders o ON o.id = e.order_id"
                    " WHERE o.client_order_id = :k ORDER BY e.id"
                ),
                {"k": key},
            )
        ]


def intent_status(engine: Engine, signal_id: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.text("SELECT status FROM intents WHERE signal_id = :s"), {"s": signal_id}
            ).scalar_one()
        )


def ask(r: redis.Redis) -> Decimal:
    fields = r.hgetall(f"md:{SPY_CON}")
    return Decimal(fields["ask"])


@contextmanager
def resting_peg(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path, scenario: str | None = None
) -> Iterator[tuple[Engine, BridgeVenue, Any, str, Any, Any]]:
    """A Normal Momentum_EQ intent whose pegged-mid child rests at the simulator;
    (engine, venue, sim, signal_id, the child's row, the ledger worker)."""
    engine = make_engine(ledger_db)
    wipe(engine)
    with ExitStack() as stack:
        stack.callback(dispose_engines)
        sim_args: dict[str, Any] = {}
        if scenario is not None:
            sim_args["scenario"] = tmp_path / "scenario.yaml"
            sim_args["scenario"].write_text(scenario)
        sim = stack.enter_context(sim_thread(**sim_args))
        stack.enter_context(
            bridge_in_process(redis_url, sim.port, BridgeConfig(send_extra_tasks=True))
        )
        worker = stack.enter_context(ledger_worker(redis_url, ledger_db, tmp_path / "ledger.log"))
        wait_ready(r)
        wait_ready(r, client_id=2)
        signal_id = f"replace-{time.time_ns()}"
        outcome = process_submission(
            {
                "signal_id": signal_id,
                "strategy": "Momentum_EQ",
                "instrument": "SPY",
                "side": "BUY",
                "quantity": str(QUANTITY),
                "urgency": "Normal",
                "time_in_force": "DAY",
                "max_slippage_bps": "500",
            },
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
        assert planned.template == "PEGGED_MID"
        with engine.connect() as conn:
            (key,) = conn.execute(
                sa.text("SELECT client_order_id FROM execution_orders WHERE intent_id = :i"),
                {"i": int(outcome["intent_id"])},
            ).scalars()

        def placed() -> Any:
            row = child(engine, key)
            return row if row is not None and row.state == "PLACED" else None

        row = ticking(engine, venue, placed, 60)
        poll(lambda: row.ib_order_id in sim_orders(sim), 20, what="the peg at the venue")
        yield engine, venue, sim, signal_id, row, worker


def test_a_tif_change_cancels_then_places_a_linked_order_under_a_fresh_id(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    with resting_peg(r, redis_url, ledger_db, tmp_path) as (engine, venue, sim, sid, old, _w):
        limit = ask(r) + Decimal("0.50")
        done = request_replace(
            engine,
            venue,
            old.client_order_id,
            Changes(tif="IOC", limit_price=limit),
            actor="test",
            reason="take it now",
            now=datetime.now(UTC),
        )
        assert done.outcome == "replaced", done
        assert done.replacement == f"{old.client_order_id}-r1"
        ticking(engine, venue, lambda: intent_status(engine, sid) == "COMPLETED", 60)
        old_row = child(engine, old.client_order_id)
        new = child(engine, done.replacement)
        assert old_row.state == "CANCELLED"
        assert new.parent_order_id == old.id and new.parent_link == "replaces"
        assert new.ib_order_id > old.ib_order_id
        assert (new.tif, new.order_type, new.state) == ("IOC", "LMT", "FILLED")
        assert old_row.filled_qty + new.filled_qty == QUANTITY
        assert new.quantity == QUANTITY - old_row.filled_qty
        # Never both working: the new order was placed after the ledger had the old one's cancel.
        cancelled_at = next(
            i for i, kind, to in events(engine, old.client_order_id) if to == "CANCELLED"
        )
        placed_at = next(
            i for i, kind, _to in events(engine, new.client_order_id) if kind == "PLACED"
        )
        assert cancelled_at < placed_at
        at_venue = sim_orders(sim)
        assert str(at_venue[old.ib_order_id].status.value) == "Cancelled"
        assert at_venue[new.ib_order_id].request.order_ref == new.client_order_id
        assert at_venue[new.ib_order_id].request.tif == "IOC"
        with engine.connect() as conn:
            audit = conn.execute(
                sa.text("SELECT actor, details FROM audit_log WHERE action = 'order_replace'")
            ).all()
        assert [(a.actor, a.details["replacement"]) for a in audit] == [
            ("test", new.client_order_id)
        ]


def test_a_fill_racing_the_cancel_counts_and_the_replacement_asks_only_for_the_rest(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    with resting_peg(r, redis_url, ledger_db, tmp_path, THIN) as (engine, venue, sim, sid, old, w):
        booked = child(engine, old.client_order_id).filled_qty
        # The ledger stops reading: what the venue does next reaches it only later. Stopped
        # only once idle: a worker frozen inside a transaction would hold the order's row lock,
        # and the replace below would wait on it for ever.
        quiet: list[bool] = []

        def ledger_idle() -> bool:
            quiet.append(r.llen("ledger") == 0 and r.hlen("unacked") == 0)
            return len(quiet) >= 3 and all(quiet[-3:])

        poll(ledger_idle, 30, interval=0.2, what="the ledger worker idle")
        os.killpg(w.pid, signal.SIGSTOP)
        try:
            # Part of the peg trades at the venue: its limit moved to the touch takes the ask's
            # displayed size, the rest keeps resting.
            touch = ask(r)
            moved = request_replace(
                engine,
                venue,
                old.client_order_id,
                Changes(limit_price=touch),
                actor="test",
                reason="lift it",
                now=datetime.now(UTC),
            )
            assert moved.outcome == "modified", moved
            snap = poll(
                lambda: (s := sim_orders(sim)[old.ib_order_id]).filled > 0 and s,
                20,
                what="a partial fill at the venue",
            )
            # The ledger has not seen that fill: the replace is decided on a row showing none.
            assert child(engine, old.client_order_id).filled_qty == booked < snap.filled
            done = request_replace(
                engine,
                venue,
                old.client_order_id,
                Changes(tif="IOC", limit_price=touch + Decimal("0.50")),
                actor="test",
                reason="take the rest",
                now=datetime.now(UTC),
            )
            assert done.outcome == "replaced", done
            poll(
                lambda: (
                    str(sim_orders(sim)[old.ib_order_id].status.value) in ("Cancelled", "Filled")
                ),
                20,
                what="the cancel at the venue",
            )
            # The ledger still thinks the old order works: the replacement is held, not sent.
            held: list[str] = []
            for _ in range(6):
                tick = send_due(engine, venue, datetime.now(UTC))
                assert done.replacement not in tick.sent, tick
                held += [k for k in tick.held if k == done.replacement]
                time.sleep(0.5)
            assert held, "the replacement was never considered"
            assert set(sim_orders(sim)) == {old.ib_order_id}
        finally:
            os.killpg(w.pid, signal.SIGCONT)
        final = sim_orders(sim)[old.ib_order_id]
        assert final.filled >= snap.filled
        ticking(engine, venue, lambda: intent_status(engine, sid) == "COMPLETED", 60)
        old_row = child(engine, old.client_order_id)
        new = child(engine, done.replacement)
        assert old_row.filled_qty == final.filled
        assert new.quantity == QUANTITY - final.filled
        assert new.filled_qty == new.quantity
        assert sum(o.filled for o in sim_orders(sim).values()) == QUANTITY
