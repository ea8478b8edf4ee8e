"""epm's queue semantics on both brokers, one test body each, run on Redis and on RabbitMQ
(`EPM_BROKER_URL=amqp://…`, this run's own vhost; Redis stays the store): real prefork workers
take intents once each, record shuffled and repeated ledger callbacks exactly once, give back the
messages of a worker SIGKILLed mid-task (RabbitMQ at once, Redis after its visibility timeout),
and consume only the queues they are given, every task module's tasks reaching its own queue;
and the bridge's callbacks from the simulator reach the ledger through the broker, once each.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from epm.streams import REJECT_STREAM
from services.ledger.callbacks import process_batch
from store import dead_letters
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from store.schema import intents
from tests.integration.brokers import Broker, amqp_url, broker
from tests.integration.intake_procs import process_env, running, wait_for
from tests.integration.test_ledger_properties import T0, _reset, replay, snapshot
from tests.integration.test_ledger_sigkill import batches, fill_count
from tests.integration.test_ledger_sigkill import session as burst_session
from tests.integration.test_ledger_worker import TASK_NAMES, session_recording
from tests.services import postgres_database

__all__ = ["amqp_url", "broker"]  # the fixtures, imported for pytest to find

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def ledger_db() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        yield url
        dispose_engines()


@pytest.fixture(autouse=True)
def _empty_queues(broker: Broker) -> Iterator[None]:
    """Every test starts and ends with epm's queues empty on the broker under test."""
    broker.purge()
    yield
    broker.purge()


@pytest.fixture
def engine(ledger_db: str) -> Iterator[Engine]:
    eng = make_engine(ledger_db)
    _reset(eng)
    yield eng
    _reset(eng)


def worker_argv(queues: str, concurrency: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", queues,
        "-c", str(concurrency), "--pool", "prefork", "-n", f"brokers-{uuid.uuid4().hex[:8]}@%h",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def worker_env(broker: Broker, ledger_db: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return process_env(
        **broker.env(),
        EPM_DATABASE_URL=ledger_db,
        EPM_DATA_DIR=str(data_dir),
        EPM_MAX_ACTIVE_INTENTS_DEFAULT="1000000",
        **extra,
    )


def send(broker: Broker, calls: list[tuple[str, list[Any]]]) -> None:
    """Publish by task name through epm's own Celery settings (routes), as the bridge and the
    relay do, on the broker under test."""
    from kombu import Connection

    from tasks.app import celery_app

    with Connection(broker.url) as conn:
        producer = conn.Producer()
        for name, args in calls:
            celery_app.send_task(name, args=args, producer=producer)


def _intent(n: int) -> dict[str, Any]:
    return {
        "signal_id": f"b-{uuid.uuid4().hex[:12]}",
        "strategy": ["Momentum_EQ", "Gamma_Rebalance"][n % 2],
        "instrument": ["AAPL", "MSFT", "NVDA"][n % 3],
        # Opening buys: the intake's side-versus-position gate has no position to match.
        "side": "BUY",
        "quantity": str(10 * (n + 1)),
        "urgency": ["Normal", "High", "Passive"][n % 3],
        "time_in_force": "DAY",
    }


def test_intake_worker_admits_each_intent_once_and_rejects_each_bad_one_once(
    broker: Broker, ledger_db: str, engine: Engine, tmp_path: Path
) -> None:
    valid = [_intent(n) for n in range(6)]
    bad: list[object] = [
        "not json",
        [1, 2],
        {**_intent(7), "quantity": "-1"},
        {**_intent(8), "strategy": "Nope"},
    ]
    # Each valid intent three times, once as JSON text: the two worker processes race on it.
    submissions: list[object] = [
        p if i else json.dumps(p) for p in valid for i in range(3)
    ] + bad  # fmt: skip
    random.Random(5).shuffle(submissions)
    rds = redis.Redis.from_url(broker.redis_url, decode_responses=True)
    rejects_before = rds.xlen(REJECT_STREAM)
    wanted = [p["signal_id"] for p in valid]

    def stored() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            query = sa.select(intents).where(intents.c.signal_id.in_(wanted))
            return [dict(m) for m in conn.execute(query).mappings()]

    env = worker_env(broker, ledger_db, tmp_path / "data")
    with running(worker_argv("intake"), env, tmp_path / "worker.log") as proc:
        send(broker, [("tasks.intake.submit_intent", [s]) for s in submissions])
        wait_for(
            lambda: (
                len(stored()) == len(wanted)
                and rds.xlen(REJECT_STREAM) - rejects_before >= len(bad)
                and broker.idle("intake")
            ),
            timeout_s=120,
            what=f"the intake worker to drain its queue on {broker.name}",
        )
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    rows = stored()
    assert sorted(r["signal_id"] for r in rows) == sorted(wanted)
    assert {r["status"] for r in rows} == {"VALIDATED"}
    assert rds.xlen(REJECT_STREAM) - rejects_before == len(bad)
    # Each admitted intent asked the orders queue to plan it through the same broker (a
    # duplicate asks again: planning is idempotent), and nothing consumed that queue.
    assert len(wanted) <= broker.ready("orders") <= len(wanted) * 3


def test_ledger_worker_records_shuffled_repeated_callbacks_exactly_once(
    broker: Broker, ledger_db: str, engine: Engine, tmp_path: Path, sqlite_url: str
) -> None:
    recording = session_recording()
    upgrade(sqlite_url)
    expected = replay(make_engine(sqlite_url), recording)
    _reset(engine)
    delivery = recording * 3
    random.Random(11).shuffle(delivery)
    env = worker_env(broker, ledger_db, tmp_path / "data")
    log_path = tmp_path / "worker.log"
    with running(worker_argv("ledger", concurrency=3), env, log_path) as proc:
        send(broker, [(TASK_NAMES[kind], [payload]) for kind, payload in delivery])
        wait_for(
            lambda: snapshot(engine) == expected and broker.idle("ledger"),
            timeout_s=180,
            what=f"the ledger worker to record every callback on {broker.name}",
        )
        assert proc.poll() is None, log_path.read_text()[-3000:]
    with engine.connect() as conn:
        parked = dead_letters.list_letters(conn)
    assert parked == [], [(p.kind, p.error_class, p.message) for p in parked]
    mirror = redis.Redis.from_url(broker.redis_url, decode_responses=True).hgetall("exec:order:A-1")
    assert mirror["state"] == "FILLED" and mirror["filled_qty"] == "100"


def test_messages_of_a_worker_sigkilled_mid_task_come_back_and_are_recorded_once(
    broker: Broker, ledger_db: str, engine: Engine, tmp_path: Path
) -> None:
    """Acks late: a batch in flight when its worker is SIGKILLed is delivered again. RabbitMQ
    requeues it the moment the worker's connection closes; Redis keeps it in `unacked` until the
    visibility timeout (3 s here) and a live worker restores it."""
    # The first 16 batches of the SIGKILL acceptance burst: enough to kill mid-way, half the time.
    recording = burst_session()[:800]
    total_fills = len([c for c in recording if c[0] == "execution"])
    with postgres_database() as reference:
        upgrade(reference)
        ref_engine = make_engine(reference)
        _reset(ref_engine)
        for chunk in batches(recording):
            process_batch(chunk, engine=ref_engine, redis_client=None, now=T0)
        expected = snapshot(ref_engine)
        ref_engine.dispose()
    env = worker_env(broker, ledger_db, tmp_path / "data", EPM_VISIBILITY_TIMEOUT="3")
    log_path = tmp_path / "worker.log"
    items = [[{"kind": k, "payload": p} for k, p in chunk] for chunk in batches(recording)]
    with running(worker_argv("ledger"), env, log_path) as doomed:
        send(broker, [("tasks.ledger.record_batch", [batch]) for batch in items])
        wait_for(
            lambda: fill_count(engine) >= total_fills // 4,
            timeout_s=180,
            what="the worker to be well into its batches",
        )
        # Frozen first, so what it holds can be counted before it dies holding it.
        os.killpg(doomed.pid, signal.SIGSTOP)
        in_flight = broker.unacked("ledger")
        waiting = broker.ready("ledger")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    at_kill = fill_count(engine)
    assert at_kill < total_fills, "the worker finished before it was killed"
    assert in_flight > 0, "no batch was in flight when the worker died"
    if broker.gives_back_on_disconnect:
        wait_for(
            lambda: broker.unacked("ledger") == 0 and broker.ready("ledger") == waiting + in_flight,
            timeout_s=30,
            what="RabbitMQ to requeue the dead worker's batches",
        )
    else:
        # Nothing comes back by itself: the batches wait in kombu's unacked hash.
        assert broker.unacked("ledger") == in_flight
        assert broker.ready("ledger") == waiting
        time.sleep(3.5)  # past the visibility timeout: the next worker restores them
    with running(worker_argv("ledger"), env, log_path) as proc:
        wait_for(
            lambda: snapshot(engine) == expected and broker.idle("ledger"),
            timeout_s=240,
            what=f"the restarted worker to finish the batches on {broker.name}",
        )
        assert proc.poll() is None, log_path.read_text()[-3000:]
    with engine.connect() as conn:
        parked = dead_letters.list_letters(conn)
        counts = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT execution_id) FROM fills")
        ).one()
    assert parked == [], [(p.kind, p.error_class, p.message) for p in parked]
    assert tuple(counts) == (total_fills, total_fills)


def test_each_task_module_reaches_its_own_queue_and_a_worker_takes_only_its_queues(
    broker: Broker, ledger_db: str, engine: Engine, tmp_path: Path
) -> None:
    calls: list[tuple[str, list[Any]]] = [
        ("tasks.intake.submit_intent", [_intent(1)]),
        ("tasks.orders.plan_intent", [123_456]),
        ("tasks.pnl.mark_tick", []),
        ("tasks.recon.shortfall_tick", []),
        ("tasks.ledger.record_contract", [{"con_id": 265598, "symbol": "AAPL"}]),
    ]
    env = worker_env(broker, ledger_db, tmp_path / "data")
    with running(worker_argv("ledger", concurrency=1), env, tmp_path / "worker.log") as proc:
        send(broker, calls)
        wait_for(
            lambda: broker.idle("ledger"),
            timeout_s=90,
            what=f"the ledger worker to take its task on {broker.name}",
        )
        # The others stay where they were routed, untouched by a worker not given their queue.
        assert {q: broker.ready(q) for q in ("intake", "orders", "pnl", "recon")} == {
            "intake": 1,
            "orders": 1,
            "pnl": 1,
            "recon": 1,
        }
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    log = (tmp_path / "worker.log").read_text()
    assert "tasks.ledger.record_contract" in log and "succeeded" in log


def test_bridge_publishes_the_venue_fills_through_the_broker_to_the_ledger_once(
    broker: Broker, ledger_db: str, engine: Engine, tmp_path: Path
) -> None:
    """The production path on each broker: the bridge (against the simulator) publishes its
    callbacks with epm's Celery settings, a ledger worker records every execution exactly once,
    an order placed twice by a retrying producer reaching the venue once."""
    from ibgateway_bridge import client_api
    from tests.bridge.harness import BridgeProcess, poll, sim_exec_ids, sim_orders, sim_thread
    from tests.bridge.harness import wait_ready as bridge_ready

    rds = redis.Redis.from_url(broker.redis_url, decode_responses=True)

    def forget_bridge() -> None:
        # A bridge's ids, lease, markers and state: the next test must not see a bridge that
        # is gone (intake's headroom gate reads `ib:bridge:state`).
        for key in rds.scan_iter("ib:*", count=1000):
            rds.delete(key)

    forget_bridge()
    spy = {"con_id": 756733, "symbol": "SPY", "sec_type": "STK"}
    env = worker_env(broker, ledger_db, tmp_path / "data")
    with (
        sim_thread() as sim,
        running(worker_argv("ledger"), env, tmp_path / "worker.log") as worker,
    ):
        bridge = BridgeProcess(
            broker.redis_url,
            sim.port,
            tmp_path / "bridge.log",
            **{k: v for k, v in broker.env().items() if k == "EPM_BROKER_URL"},
        ).start()
        try:
            bridge_ready(rds)
            oid = client_api.allocate_order_id(rds)
            order = {"action": "BUY", "quantity": "100", "order_type": "MKT"}
            client_api.enqueue_place(oid, f"brk-{oid}", spy, order, client=rds)
            client_api.enqueue_place(oid, f"brk-{oid}", spy, order, client=rds)
            execs = poll(lambda: sim_exec_ids(sim), 30, what="fills at the simulator")

            def recorded() -> list[str]:
                with engine.connect() as conn:
                    rows = conn.execute(
                        sa.text("SELECT execution_id FROM fills WHERE execution_id = ANY(:ids)"),
                        {"ids": sorted(execs)},
                    )
                    return sorted(r[0] for r in rows)

            wait_for(
                lambda: recorded() == sorted(execs) and broker.idle("ledger"),
                timeout_s=90,
                what=f"the venue's executions in the ledger through {broker.name}",
            )
            assert list(sim_orders(sim)) == [oid]
            assert recorded() == sorted(execs)  # once each
            assert bridge.proc is not None and bridge.proc.poll() is None, bridge.log_text()[-3000:]
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        finally:
            bridge.stop()
            forget_bridge()
