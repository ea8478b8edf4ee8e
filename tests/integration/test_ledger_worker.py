"""Ledger tasks under concurrency: racing threads on both dialects, and a real prefork Celery
worker on Redis + PostgreSQL consuming shuffled, triplicated callbacks sent the way the bridge
sends them (by task name)."""

from __future__ import annotations

import random
import sys
import threading
import uuid
from decimal import Decimal

import pytest
import redis
from celery import Celery
from sqlalchemy.engine import Engine

from services.ledger import process_callback
from store import dead_letters
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from tests.integration.intake_procs import broker_idle, process_env, running, wait_for
from tests.integration.test_ledger_properties import (
    T0,
    A,
    B,
    C,
    Callback,
    _Clock,
    _commission,
    _exec,
    _open,
    _reset,
    _status,
    replay,
    snapshot,
)
from tests.services import postgres_database

D = Decimal
TASK_NAMES = {
    "execution": "tasks.ledger.record_execution",
    "commission": "tasks.ledger.record_commission",
    "order_status": "tasks.ledger.record_order_status",
    "open_order": "tasks.ledger.record_open_order",
    "order_error": "tasks.ledger.record_order_error",
}


def session_recording() -> list[Callback]:
    """A fixed session: A filled in four parts with a correction, B cancelled after a partial,
    C (placed in TWS) filled."""
    clock = _Clock()
    seq: list[Callback] = [
        _open(clock, A, D(100), "PreSubmitted"),
        _status(clock, A, "PreSubmitted", D(0), D(100)),
        _status(clock, A, "Submitted", D(0), D(100)),
    ]
    cum = D(0)
    for i, (size, price) in enumerate([(20, "190.01"), (35, "190.05"), (5, "190.10"), (40, "190")]):
        exec_id = f"0000a.{i:04x}.01.01"
        seq.append(_exec(clock, exec_id, A, D(size), D(price), at=i))
        seq.append(_commission(clock, exec_id, "0.35"))
        cum += size
        seq.append(_status(clock, A, "Submitted" if cum < 100 else "Filled", cum, D(100)))
    seq.append(_exec(clock, "0000a.0000.01.02", A, D(20), D("189.99"), at=0))
    seq.append(_commission(clock, "0000a.0000.01.02", "0.36"))
    seq.append(_status(clock, B, "Submitted", D(0), D(30)))
    seq.append(_exec(clock, "0000b.0000.01.01", B, D(10), D("191"), at=60))
    seq.append(_status(clock, B, "PendingCancel", D(10), D(30)))
    seq.append(_status(clock, B, "Cancelled", D(10), D(30)))
    seq.append(_exec(clock, "0000c.0000.01.01", C, D(20), D("190.5"), at=30))
    seq.append(_commission(clock, "0000c.0000.01.01", "1.00"))
    seq.append(_status(clock, C, "Filled", D(20), D(20)))
    return seq


def test_racing_threads_record_each_callback_once(engine: Engine) -> None:
    recording = session_recording()
    expected = replay(engine, recording)
    _reset(engine)
    errors: list[BaseException] = []

    def deliver(seed: int) -> None:
        delivery = list(recording)
        random.Random(seed).shuffle(delivery)
        try:
            for kind, payload in delivery:
                for attempt in range(20):
                    try:
                        process_callback(kind, payload, engine=engine, redis_client=None, now=T0)
                        break
                    except Exception:  # the Celery task retries these the same way
                        if attempt == 19:
                            raise
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=deliver, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert snapshot(engine) == expected
    state = {o[0]: o[1] for o in expected["orders"]}
    assert state == {"A-1": "FILLED", "A-2": "CANCELLED", "ib:perm:777": "FILLED"}


@pytest.mark.slow
def test_prefork_worker_consumes_shuffled_duplicated_callbacks(
    redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    recording = session_recording()
    upgrade(sqlite_url)
    expected = replay(make_engine(sqlite_url), recording)
    with postgres_database() as pg:
        upgrade(pg)
        engine = make_engine(pg)
        _reset(engine)
        data_dir = tmp_path_factory.mktemp("ledger-worker")
        env = process_env(EPM_REDIS_URL=redis_url, EPM_DATABASE_URL=pg, EPM_DATA_DIR=str(data_dir))
        argv = [
            sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "ledger",
            "-c", "3", "--pool", "prefork", "-n", f"ledger-test-{uuid.uuid4().hex[:8]}@%h",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        log_path = data_dir / "worker.log"
        with running(argv, env, log_path) as proc:
            delivery = recording * 3
            random.Random(11).shuffle(delivery)
            sender = Celery("ledger-test-sender", broker=redis_url)
            sender.conf.task_routes = {"tasks.ledger.*": {"queue": "ledger"}}
            with sender.connection_for_write() as conn:
                for kind, payload in delivery:
                    sender.send_task(TASK_NAMES[kind], args=[payload], connection=conn)
            client = redis.Redis.from_url(redis_url, decode_responses=True)
            wait_for(
                lambda: snapshot(engine) == expected and broker_idle(client, "ledger"),
                timeout_s=180,
                what="the ledger worker to record every callback",
            )
            assert proc.poll() is None, log_path.read_text()[-3000:]
            # Racing creators (IntegrityError on a unique key) resolved by their retry: nothing
            # was parked as a deterministic failure.
            with engine.connect() as conn:
                parked = dead_letters.list_letters(conn)
            assert parked == [], [(p.kind, p.error_class, p.message, p.payload) for p in parked]
            mirror = client.hgetall("exec:order:A-1")
            assert mirror["state"] == "FILLED"
            assert mirror["filled_qty"] == "100"
        dispose_engines()
