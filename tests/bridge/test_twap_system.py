"""TWAP acceptance on the production shape: 10,000 shares in 10 slices through the real intake
and orders workers (three of them), two beats (one restarted mid-schedule), the bridge, the
simulator and a ledger worker on PostgreSQL.

Asserted: each slice reaches the venue once (no orderRef twice), never before its due time and
in schedule order (how close to it is measured by `bench/intent_latency.py`, not asserted here),
none above the participation cap of the 5 s bar it was priced on, and the intent filled to
exactly 10,000.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from ibgateway_bridge.config import BridgeConfig
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from tests.bridge.harness import REPO, bridge_in_process, poll, sim_orders, sim_thread, wait_ready
from tests.bridge.test_ledger_e2e import ledger_worker
from tests.integration.conftest import wipe

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TICK_S = "0.5"
# A liquid SPY: about 80,000 shares print every 5 s (the bars vary: a quieter one still caps a
# slice well above 1,000 at 10 %) and 6,000 show at the touch, so each slice fits under the cap
# and an IOC at the touch fills it, the last one too.
LIQUID = """
name: liquid-spy
extends: default
version: 1
description: SPY trading heavily, for the TWAP acceptance test.
always_open: true
start: "10:00"
seed: 7
instruments:
  - {symbol: SPY, price: "600.00", vol: 0.14, iv: 0.15, dividend_yield: 0.012, spread_ticks: 1,
     avg_size_lots: 60, trades_per_s: 4.0, avg_trade_size: 4000, daily_volume: 1600000000}
"""
SLICES = 10
CADENCE_S = 3


@pytest.fixture(scope="module")
def ledger_db(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


def _env(redis_url: str, db_url: str, data: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_REDIS_URL": redis_url,
        "EPM_DATABASE_URL": db_url,
        "EPM_DATA_DIR": str(data),
        "EPM_ORDERS_TICK_S": TICK_S,
        "PYTHONPATH": str(REPO),
    }


@contextmanager
def process(
    argv: list[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own session, stopped (TERM, then KILL) by its PID."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def worker(queues: str, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks.app",
        "worker",
        "-Q",
        queues,
        "-c",
        "1",
        "--pool",
        "prefork",
        "-n",
        f"{name}-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]


def beat(schedule: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks.app",
        "beat",
        "-s",
        str(schedule),
        "--loglevel",
        "INFO",
    ]


def test_twap_of_10000_in_10_slices_sent_once_each_on_cadence_under_the_cap(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    engine = make_engine(ledger_db)
    wipe(engine)
    env = _env(redis_url, ledger_db, tmp_path / "data")
    signal_id = f"twap-{uuid.uuid4().hex[:8]}"
    try:
        with ExitStack() as stack:
            scenario = tmp_path / "liquid.yaml"
            scenario.write_text(LIQUID)
            sim = stack.enter_context(sim_thread(scenario=scenario))
            stack.enter_context(
                bridge_in_process(redis_url, sim.port, BridgeConfig(send_extra_tasks=True))
            )
            stack.enter_context(ledger_worker(redis_url, ledger_db, tmp_path / "ledger.log"))
            for n, queues in enumerate(("intake,orders", "orders", "orders")):
                stack.enter_context(
                    process(worker(queues, f"orders{n}"), env, tmp_path / f"w{n}.log")
                )
            second_beat = stack.enter_context(
                process(beat(tmp_path / "beat2"), env, tmp_path / "beat2.log")
            )
            wait_ready(r)
            wait_ready(r, client_id=2)
            first_beat = subprocess.Popen(
                beat(tmp_path / "beat1"),
                cwd=REPO,
                env=env,
                start_new_session=True,
                stdout=(tmp_path / "beat1.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
            stack.callback(stop, first_beat)
            from tasks.app import celery_app

            celery_app.conf.broker_url = redis_url
            celery_app.send_task(
                "tasks.intake.submit_intent",
                args=[
                    {
                        "signal_id": signal_id,
                        "strategy": "Momentum_EQ",
                        "instrument": "SPY",
                        "side": "BUY",
                        "quantity": "10000",
                        "urgency": "Passive",
                        "time_in_force": "DAY",
                        "max_slippage_bps": "50",
                        "params": {"slices": SLICES, "cadence_s": CADENCE_S},
                    }
                ],
                queue="intake",
            )

            def slices_sent(count: int) -> Any:
                with engine.connect() as conn:
                    n = conn.execute(
                        sa.text(
                            "SELECT count(*) FROM execution_orders o JOIN intents i"
                            " ON i.id = o.intent_id WHERE i.signal_id = :s"
                            " AND o.ib_order_id IS NOT NULL"
                        ),
                        {"s": signal_id},
                    ).scalar_one()
                return n >= count

            # Beat restarted mid-schedule: stopped after the third slice, back two seconds later.
            poll(lambda: slices_sent(3), 60, what="three slices sent")
            stop(first_beat)
            time.sleep(2)
            restarted = subprocess.Popen(
                beat(tmp_path / "beat1"),
                cwd=REPO,
                env=env,
                start_new_session=True,
                stdout=(tmp_path / "beat1.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
            stack.callback(stop, restarted)

            def ended() -> Any:
                with engine.connect() as conn:
                    row = conn.execute(
                        sa.text(
                            "SELECT id, status, reject_message FROM intents WHERE signal_id = :s"
                        ),
                        {"s": signal_id},
                    ).first()
                return (
                    row if row is not None and row.status not in ("VALIDATED", "WORKING") else None
                )

            final = poll(ended, 120, interval=0.5, what="the TWAP intent ended")
            assert second_beat.poll() is None
            venue_refs = [o.request.order_ref for o in sim_orders(sim).values()]
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT client_order_id, quantity, filled_qty, details, ib_order_id"
                    " FROM execution_orders WHERE intent_id = :i ORDER BY id"
                ),
                {"i": final.id},
            ).all()
            placed = {
                e.order_id: e.ts_init
                for e in conn.execute(
                    sa.text(
                        "SELECT order_id, ts_init FROM order_events WHERE event_type = 'PLACED'"
                    )
                )
            }
            ids = {
                row.client_order_id: oid
                for oid, row in [
                    (
                        conn.execute(
                            sa.text("SELECT id FROM execution_orders WHERE client_order_id = :k"),
                            {"k": row.client_order_id},
                        ).scalar_one(),
                        row,
                    )
                    for row in rows
                ]
            }
        assert final.status == "COMPLETED", (
            final,
            [(x.client_order_id, x.filled_qty) for x in rows],
        )
        assert sum(Decimal(x.filled_qty) for x in rows) == Decimal(10000)
        sent = [x for x in rows if x.ib_order_id is not None]
        # Nothing twice at the venue: each slice's orderRef once.
        ours = [ref for ref in venue_refs if ref.startswith(f"epm-{final.id}-")]
        assert sorted(ours) == sorted(x.client_order_id for x in sent)
        assert len(set(ours)) == len(ours)
        sent_at: list[tuple[datetime, datetime]] = []
        for x in sent:
            details = x.details if isinstance(x.details, dict) else {}
            bar = details.get("bar_volume")
            assert bar is not None and Decimal(x.quantity) <= Decimal(bar) * Decimal("0.10"), x
            due = datetime.fromisoformat(details["plan"]["due_at"])
            at = placed[ids[x.client_order_id]]
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            # Never before its time. How late is a latency figure, measured in bench/ (a timed
            # bound here would flake on a shared machine).
            assert at >= due, (x.client_order_id, due, at)
            sent_at.append((due, at))
        # Sent in their schedule's order.
        assert [a for _d, a in sent_at] == sorted(a for _d, a in sent_at)
    finally:
        dispose_engines()
