"""Acceptance against the real ledger: bridge → simulator → callbacks → Celery ledger worker →
PostgreSQL `fills`, exactly once, also through a kill -9 and restart of the bridge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from ibgateway_bridge import client_api
from store.migrate import upgrade
from tests.bridge.harness import (
    REPO,
    BridgeProcess,
    bridge_in_process,
    enqueue_ladder,
    gateway_outage_with_fills,
    kill9_mid_burst,
    poll,
    sent_markers,
    sim_exec_ids,
    sim_orders,
    sim_thread,
    wait_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SPY = {"con_id": 756733, "symbol": "SPY", "sec_type": "STK"}


@pytest.fixture(scope="module")
def ledger_db(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


@contextmanager
def ledger_worker(redis_url: str, db_url: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery worker -Q ledger` on the test's broker and database; stopped by PID."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_REDIS_URL": redis_url,
        "EPM_DATABASE_URL": db_url,
        "EPM_DATA_DIR": str(log_path.parent / "worker-data"),
        "PYTHONPATH": str(REPO),
    }
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks.app",
        "worker",
        "-Q",
        "ledger",
        "-c",
        "2",
        "--pool",
        "prefork",
        "-n",
        f"bridge-e2e-{uuid.uuid4().hex[:8]}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def fill_rows(db_url: str, exec_ids: set[str]) -> list[str]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT execution_id FROM fills WHERE execution_id = ANY(:ids)"),
                {"ids": sorted(exec_ids)},
            )
            return [r[0] for r in rows]
    finally:
        engine.dispose()


def order_state(db_url: str, ib_order_id: int) -> str | None:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT state FROM execution_orders WHERE ib_order_id = :oid"),
                {"oid": ib_order_id},
            ).scalar()
    finally:
        engine.dispose()


def rejected_payloads(db_url: str, since: datetime) -> list[tuple[str, str, str]]:
    """(callback kind, reason, message) of bridge payloads the ledger refused since `since`."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT scope_key, code, message FROM risk_events"
                    " WHERE kind = 'LEDGER_PAYLOAD_REJECTED' AND created_at >= :since"
                ),
                {"since": since},
            )
            return [(r[0], r[1], r[2]) for r in rows]
    finally:
        engine.dispose()


def test_intent_free_command_fills_once_order_filled(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    started = datetime.now(UTC)
    with (
        sim_thread() as sim,
        ledger_worker(redis_url, ledger_db, tmp_path / "worker.log"),
    ):
        # Every callback kind the bridge publishes goes out, as in production.
        bridge = BridgeProcess(
            redis_url, sim.port, tmp_path / "bridge.log", EPM_BRIDGE_SEND_EXTRA_TASKS="true"
        ).start()
        try:
            wait_ready(r)
            oid = client_api.allocate_order_id(r)
            order = {"action": "BUY", "quantity": "100", "order_type": "MKT"}
            client_api.enqueue_place(oid, f"e2e-{oid}", SPY, order, client=r)
            # The same command again (a producer retried): the bridge must not send it twice.
            client_api.enqueue_place(oid, f"e2e-{oid}", SPY, order, client=r)
            poll(lambda: oid in sim_orders(sim), 15, what="order at the sim")
            execs = poll(lambda: sim_exec_ids(sim), 15, what="fills at the sim")
            poll(lambda: sorted(fill_rows(ledger_db, execs)) == sorted(execs), 60, what="fills")
            poll(lambda: order_state(ledger_db, oid) == "FILLED", 60, what="order FILLED")
            assert len(sim_orders(sim)) == 1
            assert sorted(fill_rows(ledger_db, execs)) == sorted(execs)
            # A rejected order's error and a contract answer take the ledger's other tasks.
            bad = client_api.allocate_order_id(r)
            client_api.enqueue_place(
                bad, f"e2e-{bad}", {"con_id": 999999999, "symbol": "NOPE"}, order, client=r
            )
            client_api.enqueue_contract_details({"symbol": "SPY", "sec_type": "STK"}, client=r)
            poll(lambda: order_state(ledger_db, bad) == "REJECTED", 60, what="REJECTED order")
            poll(lambda: contract_symbol(ledger_db, 756733) == "SPY", 60, what="contract row")
            # The payload shapes agree with the ledger: nothing the bridge sent was refused.
            assert rejected_payloads(ledger_db, started) == []
        finally:
            bridge.stop()


def contract_symbol(db_url: str, con_id: int) -> str | None:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT symbol FROM contracts WHERE con_id = :c"), {"c": con_id}
            ).scalar()
    finally:
        engine.dispose()


def test_kill9_bridge_during_200_orders_ledger_exactly_once(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    with (
        sim_thread() as sim,
        ledger_worker(redis_url, ledger_db, tmp_path / "worker.log"),
    ):
        ids = kill9_mid_burst(r, redis_url, sim.port, tmp_path / "b1.log", "SELL", kill_after=60)
        second = BridgeProcess(redis_url, sim.port, tmp_path / "b2.log").start()
        try:
            poll(lambda: sent_markers(r) == 200, 60, interval=0.2, what="all 200 sent")
            assert sorted(sim_orders(sim)) == ids
            execs = poll(lambda: (e := sim_exec_ids(sim)) and len(e) >= 200 and e, 30, what="fills")
            # About a thousand ledger transactions (five callbacks per fill): on a loaded machine
            # that takes minutes, and a lost fill still fails, only later.
            poll(
                lambda: len(fill_rows(ledger_db, execs)) == len(execs),
                300,
                interval=0.5,
                what="every venue execution in fills",
            )
            rows = fill_rows(ledger_db, execs)
            assert sorted(rows) == sorted(execs)  # exactly once each
            assert [f for _i, f in r.xrange("epm:bridge:order_errors") if f["code"] == "103"] == []
        finally:
            second.stop()


def test_gateway_outage_fills_recovered_into_ledger_once(
    r: redis.Redis, redis_url: str, ledger_db: str, tmp_path: Path
) -> None:
    with (
        sim_thread(stepped=True) as sim,
        ledger_worker(redis_url, ledger_db, tmp_path / "worker.log"),
        bridge_in_process(redis_url, sim.port),
    ):
        wait_ready(r)
        enqueue_ladder(r, sim)
        gateway_outage_with_fills(r, sim)
        everything = sim_exec_ids(sim)
        poll(
            lambda: sorted(fill_rows(ledger_db, everything)) == sorted(everything),
            60,
            interval=0.3,
            what="every execution (incl. those made while away) in fills once",
        )
