"""A `ledger` worker killed with SIGKILL in the middle of its batches, then restarted, leaves the
same ledger as one that was never killed (real prefork worker processes, PostgreSQL, Redis).

Acknowledged late, a message whose batch was cut short by the kill comes back after the
broker's visibility timeout (short here, so the test does not wait 300 s): its committed part
is repeated as duplicates (execIds, event hashes), its uncommitted part was rolled back by
PostgreSQL when the connection died.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
import sqlalchemy as sa
from celery import Celery

from services.ledger.callbacks import process_batch
from store import dead_letters
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from tests.integration.intake_procs import broker_idle, process_env, running, wait_for
from tests.integration.test_ledger_properties import T0, Callback, _reset, snapshot
from tests.services import postgres_database

D = Decimal
ORDERS = 120
FILLS_PER_ORDER = 10
BATCH = 50


def session() -> list[Callback]:
    """A burst: ORDERS ref-less orders (opened by their first execution) of FILLS_PER_ORDER
    fills over ten positions, every seventh fill corrected, a commission for each execution
    (corrections included) and the order's statuses; in the order the bridge would send them."""
    out: list[Callback] = []
    for order in range(ORDERS):
        ids = {"order_id": 5_000 + order, "client_id": 1, "perm_id": 80_000 + order}
        side = "BOT" if order % 3 else "SLD"
        for k in range(FILLS_PER_ORDER):
            n = order * FILLS_PER_ORDER + k
            base = f"0000f{order:05x}.{k:04x}.01"
            fill = {
                **ids,
                "exec_id": f"{base}.01",
                "order_ref": None,
                "con_id": 400_000 + order % 10,
                "symbol": f"S{order % 10}",
                "sec_type": "STK",
                "side": side,
                "shares": "10",
                "price": str(D("50") + D(n % 37) / 100),
                "account": "DU1",
                "time": (T0 + timedelta(seconds=n)).isoformat(),
                "received_at": (T0 + timedelta(seconds=n)).isoformat(),
            }
            out.append(("execution", fill))
            out.append(("commission", _commission(f"{base}.01", "0.35", n)))
            if n % 7 == 0:
                out.append(("execution", {**fill, "exec_id": f"{base}.02", "price": "49.99"}))
                out.append(("commission", _commission(f"{base}.02", "0.36", n)))
            filled = 10 * (k + 1)
            out.append(
                (
                    "order_status",
                    {
                        **ids,
                        "ib_status": "Filled" if k == FILLS_PER_ORDER - 1 else "Submitted",
                        "filled": str(filled),
                        "remaining": str(10 * FILLS_PER_ORDER - filled),
                        "received_at": (T0 + timedelta(seconds=n, milliseconds=1)).isoformat(),
                    },
                )
            )
    return out


def _commission(exec_id: str, amount: str, n: int) -> dict[str, object]:
    at = (T0 + timedelta(seconds=n, milliseconds=2)).isoformat()
    return {"exec_id": exec_id, "commission": amount, "currency": "USD", "received_at": at}


def batches(callbacks: list[Callback]) -> list[list[Callback]]:
    return [callbacks[i : i + BATCH] for i in range(0, len(callbacks), BATCH)]


def worker_argv() -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "ledger",
        "-c", "2", "--pool", "prefork", "-n", f"ledger-kill-{uuid.uuid4().hex[:8]}@%h",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def fill_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM fills")).scalar_one())


@pytest.mark.redis
def test_sigkill_mid_batch_then_restart_gives_the_same_ledger(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    recording = session()
    total_fills = len([c for c in recording if c[0] == "execution"])
    with postgres_database() as reference, postgres_database() as pg:
        upgrade(reference)
        ref_engine = make_engine(reference)
        _reset(ref_engine)
        for chunk in batches(recording):
            process_batch(chunk, engine=ref_engine, redis_client=None, now=T0)
        expected = snapshot(ref_engine)
        assert len(expected["fills"]) == total_fills

        upgrade(pg)
        engine = make_engine(pg)
        _reset(engine)
        data_dir = tmp_path_factory.mktemp("ledger-kill")
        env = process_env(
            EPM_REDIS_URL=redis_url,
            EPM_DATABASE_URL=pg,
            EPM_DATA_DIR=str(data_dir),
            EPM_VISIBILITY_TIMEOUT="3",
        )
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        sender = Celery("ledger-kill-sender", broker=redis_url)
        sender.conf.task_routes = {"tasks.ledger.*": {"queue": "ledger"}}
        log_path = data_dir / "worker.log"
        with running(worker_argv(), env, log_path) as doomed:
            with sender.connection_for_write() as conn:
                for chunk in batches(recording):
                    items = [{"kind": kind, "payload": payload} for kind, payload in chunk]
                    sender.send_task("tasks.ledger.record_batch", args=[items], connection=conn)
            wait_for(
                lambda: fill_count(engine) >= total_fills // 4,
                timeout_s=180,
                what="the worker to be well into its batches",
            )
            os.killpg(doomed.pid, signal.SIGKILL)  # the main process and its pool, no warning
            doomed.wait(timeout=10)
            at_kill = fill_count(engine)
        assert at_kill < total_fills, "the worker finished before it was killed"
        assert client.hlen("unacked") > 0, "no batch was in flight when the worker died"
        time.sleep(3.5)  # past the visibility timeout: the batches in flight are due again
        with running(worker_argv(), env, log_path) as proc:
            wait_for(
                lambda: broker_idle(client, "ledger") and snapshot(engine) == expected,
                timeout_s=300,
                what="the restarted worker to finish the batches",
            )
            assert proc.poll() is None, log_path.read_text()[-3000:]
        with engine.connect() as conn:
            parked = dead_letters.list_letters(conn)
        assert parked == [], [(p.kind, p.error_class, p.message) for p in parked]
        with engine.connect() as conn:
            counts = conn.execute(
                sa.text("SELECT count(*), count(DISTINCT execution_id) FROM fills")
            ).one()
        assert tuple(counts) == (total_fills, total_fills)
        ref_engine.dispose()
        engine.dispose()
        dispose_engines()
