"""Intents survive a database outage of any length and are admitted exactly once after it.

- A real prefork Celery worker on the intake queue whose PostgreSQL goes through a TCP proxy the
  test cuts: intents sent during the outage are retried for longer than the old budget
  (max_retries=10, i.e. 11 attempts), with `intake_retrying` alerts on `epm:alerts`; once the
  proxy is restored each lands exactly once (a copy sent twice is one row, a refused one is one
  row and one reject entry), and a refusal that needs no database is answered during the outage.
- In-process through the real task (`apply`): the database does not exist until the third
  attempt, which creates it; the intent is admitted once, and a redelivery is a duplicate.
- A failure that is not an outage (a bug) is not retried: it is alerted (`intake_failed`) and the
  task fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from epm.settings import reset_settings_cache
from epm.streams import REJECT_STREAM
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from store.schema import intents
from tasks import intake as intake_tasks
from tasks.app import ALERT_STREAM, Stores
from tests.bridge.harness import TcpProxy
from tests.integration.intake_procs import (
    broker_idle,
    process_env,
    running,
    send_intents,
    wait_for,
    worker_argv,
)
from tests.services import PG_ADMIN_URL, postgres_database

# Today's task gave up after max_retries=10, i.e. 11 attempts.
OLD_ATTEMPT_BUDGET = 11
FAST_RETRIES = {
    "EPM_LEDGER_RETRY_BASE_S": "0.02",
    "EPM_LEDGER_RETRY_MAX_S": "0.2",
    "EPM_LEDGER_ALERT_AFTER": "3",
    "EPM_LEDGER_ALERT_INTERVAL_S": "0",
}


def intent(signal_id: str, **changes: Any) -> dict[str, Any]:
    """A stock intent (no expiry to go stale while the test waits out the outage)."""
    payload: dict[str, Any] = {
        "signal_id": signal_id,
        "strategy": "Momentum_EQ",
        "instrument": "AAPL",
        "side": "BUY",
        "quantity": "100",
        "urgency": "Normal",
        "time_in_force": "DAY",
    }
    payload.update(changes)
    return payload


def rows(engine: sa.Engine, signal_ids: list[str]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = sa.select(intents).where(intents.c.signal_id.in_(signal_ids))
        return [dict(m) for m in conn.execute(query.order_by(intents.c.id)).mappings()]


def alerts(client: redis.Redis, kind: str, signal_id: str) -> list[dict[str, str]]:
    return [
        f
        for _id, f in client.xrange(ALERT_STREAM)
        if f.get("kind") == kind and f.get("signal_id") == signal_id
    ]


def max_alerted_attempts(client: redis.Redis, signal_id: str) -> int:
    found = alerts(client, "intake_retrying", signal_id)
    return max((int(a["attempts"]) for a in found), default=0)


def rejects_for(client: redis.Redis, signal_id: str) -> list[dict[str, str]]:
    return [f for _id, f in client.xrange(REJECT_STREAM) if f.get("signal_id") == signal_id]


@pytest.fixture
def rc(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.mark.slow
def test_intents_sent_during_a_long_outage_are_admitted_exactly_once_after_it(
    redis_url: str, rc: redis.Redis, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    valid, refused, garbage = f"out-ok-{run}", f"out-bad-{run}", f"out-junk-{run}"
    with postgres_database() as pg:
        upgrade(pg)
        engine = make_engine(pg)
        target = make_url(pg)
        with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
            via = target.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
            env = process_env(
                EPM_REDIS_URL=redis_url,
                EPM_DATABASE_URL=via,
                EPM_DATA_DIR=str(tmp_path / "epm-data"),
                **FAST_RETRIES,
            )
            log_path = tmp_path / "worker.log"
            proxy.cut()
            with running(worker_argv(concurrency=2), env, log_path) as proc:
                send_intents(
                    redis_url,
                    [
                        intent(valid),
                        intent(refused, quantity="-3"),
                        # A JSON object naming no usable signal_id has nothing to look up: it is
                        # refused without the database, during the outage.
                        {"signal_id": f"{garbage} has spaces"},
                        intent(valid),  # the producer's own retry: the same intent again
                    ],
                )
                wait_for(
                    lambda: (
                        min(max_alerted_attempts(rc, valid), max_alerted_attempts(rc, refused))
                        > OLD_ATTEMPT_BUDGET + 4
                        or broker_idle(rc)
                    ),
                    timeout_s=400,
                    what="the intake tasks to retry through the outage",
                )
                assert max_alerted_attempts(rc, valid) > OLD_ATTEMPT_BUDGET, "the task gave up"
                assert max_alerted_attempts(rc, refused) > OLD_ATTEMPT_BUDGET, "the task gave up"
                assert rows(engine, [valid, refused]) == []
                assert rejects_for(rc, refused) == []
                junk = [
                    f
                    for _id, f in rc.xrange(REJECT_STREAM)
                    if f.get("signal_id") == "" and f.get("reason") == "INVALID_SIGNAL_ID"
                ]
                assert junk, "the refusal that needs no database waited for it"
                proxy.restore()
                wait_for(
                    lambda: len(rows(engine, [valid, refused])) == 2 and broker_idle(rc),
                    timeout_s=90,
                    what="the intents sent during the outage to be admitted after it",
                )
                assert proc.poll() is None, log_path.read_text()[-3000:]
            stored = {r["signal_id"]: r for r in rows(engine, [valid, refused])}
            assert stored[valid]["status"] == "VALIDATED"
            assert (stored[refused]["status"], stored[refused]["reject_reason"]) == (
                "REJECTED",
                "INVALID_QUANTITY",
            )
            assert [e["reason"] for e in rejects_for(rc, refused)] == ["INVALID_QUANTITY"]
            assert rejects_for(rc, valid) == []
            alert = alerts(rc, "intake_retrying", valid)[-1]
            assert alert["task"] == "tasks.intake.submit_intent"
            assert "OperationalError" in alert["error"]
            assert alert["first_failed_at"]
            assert "intake.retrying_long" in log_path.read_text()
        dispose_engines()


@pytest.fixture
def outage_env(
    epm_env: pytest.MonkeyPatch, redis_url: str, rc: redis.Redis
) -> Iterator[pytest.MonkeyPatch]:
    """This process's EPM_* settings: fast retries, the session's Redis."""
    epm_env.setenv("EPM_REDIS_URL", redis_url)
    for key, value in FAST_RETRIES.items():
        epm_env.setenv(key, value)
    reset_settings_cache()
    yield epm_env
    reset_settings_cache()
    dispose_engines()


def _admin() -> Any:
    conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=3)
    conn.autocommit = True
    return conn


def test_database_created_after_the_first_attempts_admits_the_intent_once(
    pg_url: str, outage_env: pytest.MonkeyPatch, rc: redis.Redis
) -> None:
    name = f"epm_t_late_{uuid.uuid4().hex[:10]}"
    url = make_url(pg_url).set(database=name).render_as_string(False)
    outage_env.setenv("EPM_DATABASE_URL", url)
    outage_env.setenv("EPM_LEDGER_ALERT_AFTER", "2")
    reset_settings_cache()
    signal_id = f"late-{uuid.uuid4().hex[:8]}"
    attempts: list[int] = []
    real_run = intake_tasks._run

    def run(stores: Stores, payload: object) -> Any:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 3:  # the database comes up between the second and third try
            admin = _admin()
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
            admin.close()
            upgrade(url)
        return real_run(stores, payload)

    outage_env.setattr(intake_tasks, "_run", run)
    try:
        outcome = intake_tasks.submit_intent.apply(args=[intent(signal_id)]).get()
        assert attempts == [1, 2, 3]
        assert outcome["status"] == "VALIDATED" and outcome["duplicate"] is False
        # Both failures were the missing database; the second one alerted, knowing (from the
        # retry's own keyword) when the failures began.
        [alert] = alerts(rc, "intake_retrying", signal_id)
        assert alert["attempts"] == "2" and "OperationalError" in alert["error"]
        first_failed = datetime.fromisoformat(alert["first_failed_at"])
        assert first_failed <= datetime.fromisoformat(alert["at"])
        redelivered = intake_tasks.submit_intent.apply(args=[intent(signal_id)]).get()
        assert redelivered["duplicate"] is True
        assert redelivered["intent_id"] == outcome["intent_id"]
        engine = make_engine(url)
        assert [r["status"] for r in rows(engine, [signal_id])] == ["VALIDATED"]
    finally:
        dispose_engines()
        admin = _admin()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_a_failure_that_is_not_an_outage_is_alerted_and_not_retried(
    sqlite_url: str, outage_env: pytest.MonkeyPatch, rc: redis.Redis
) -> None:
    upgrade(sqlite_url)
    outage_env.setenv("EPM_DATABASE_URL", sqlite_url)
    signal_id = f"bug-{uuid.uuid4().hex[:8]}"
    calls: list[object] = []

    def run(stores: Stores, payload: object) -> Any:
        calls.append(payload)
        raise KeyError("a bug")

    outage_env.setattr(intake_tasks, "_run", run)
    result = intake_tasks.submit_intent.apply(args=[intent(signal_id)])
    with pytest.raises(KeyError):
        result.get()
    assert len(calls) == 1
    [alert] = alerts(rc, "intake_failed", signal_id)
    assert alert["task"] == "tasks.intake.submit_intent" and "KeyError" in alert["error"]
