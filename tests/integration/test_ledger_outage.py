"""Ledger callbacks survive a database outage of any length; deterministic failures are parked.

- A real Celery worker whose PostgreSQL goes through a TCP proxy the test cuts: an execution sent
  during the outage is retried for longer than the old budget (10 retries), with `ledger_retrying`
  alerts on `epm:alerts`, and lands exactly once after the proxy is restored.
- A deterministic failure (a constraint the ledger cannot satisfy, standing in for a bug) goes to
  `ledger_dead_letters` after a few tries, and `epm ledger replay ID` records it once the cause is
  gone (both dialects in-process through the real task, PostgreSQL through a worker and the CLI).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from celery import Celery
from sqlalchemy.engine import Engine, make_url

from services import ledger
from services.ledger.replay import replay_dead_letter
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from store.schema import contracts, fills, ledger_dead_letters
from tasks import ledger as ledger_tasks
from tests.bridge.harness import TcpProxy
from tests.integration.conftest import wipe
from tests.integration.intake_procs import REPO, broker_idle, process_env, running, wait_for
from tests.services import postgres_database

# Today's task gave up after max_retries=10, i.e. 11 attempts.
OLD_ATTEMPT_BUDGET = 11
RECORD_EXECUTION = "tasks.ledger.record_execution"


def execution(exec_id: str, shares: str = "10", order_id: int = 41) -> dict[str, Any]:
    """A live execDetails payload for an order the ledger does not know yet (a stand-in)."""
    return {
        "exec_id": exec_id,
        "req_id": -1,
        "order_id": order_id,
        "client_id": 1,
        "perm_id": 880000 + order_id,
        "con_id": 265598,
        "symbol": "AAPL",
        "sec_type": "STK",
        "side": "BOT",
        "shares": shares,
        "price": "190.25",
        "account": "DU1",
        "time": "2026-11-26T15:00:00+00:00",
        "received_at": "2026-11-26T15:00:00.100000+00:00",
    }


def fill_count(engine: Engine, exec_id: str) -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(fills.c.execution_id == exec_id)
        return int(conn.execute(query).scalar_one())


def dead_letters(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ledger_dead_letters).order_by(ledger_dead_letters.c.id))
        return [dict(r._mapping) for r in rows]


def alerts(client: redis.Redis, kind: str) -> list[dict[str, str]]:
    return [f for _id, f in client.xrange("epm:alerts") if f.get("kind") == kind]


def max_alerted_attempts(client: redis.Redis) -> int:
    return max((int(a["attempts"]) for a in alerts(client, "ledger_retrying")), default=0)


@contextmanager
def refused_shares(engine: Engine, shares: int) -> Iterator[Callable[[], None]]:
    """While inside, the database refuses every fill of `shares` (an IntegrityError that no retry
    resolves); yields the fix, which is applied at exit at the latest (the PostgreSQL database
    may be shared with other tests)."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        if sqlite:
            conn.exec_driver_sql(
                "CREATE TRIGGER epm_test_refuse BEFORE INSERT ON fills "
                f"WHEN NEW.shares = '{shares}' BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            )
        else:
            conn.exec_driver_sql(
                f"ALTER TABLE fills ADD CONSTRAINT epm_test_refuse CHECK (shares <> {shares})"
            )
    fixed = False

    def fix() -> None:
        nonlocal fixed
        if fixed:
            return
        with engine.begin() as conn:
            if sqlite:
                conn.exec_driver_sql("DROP TRIGGER epm_test_refuse")
            else:
                conn.exec_driver_sql("ALTER TABLE fills DROP CONSTRAINT epm_test_refuse")
        fixed = True

    try:
        yield fix
    finally:
        fix()


def ledger_worker(name: str) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "ledger",
        "--pool", "solo", "-n", f"{name}-{uuid.uuid4().hex[:8]}@%h",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


def send(redis_url: str, payload: dict[str, Any]) -> None:
    sender = Celery("ledger-outage-sender", broker=redis_url)
    sender.conf.task_routes = {"tasks.ledger.*": {"queue": "ledger"}}
    with sender.connection_for_write() as conn:
        sender.send_task(RECORD_EXECUTION, args=[payload], connection=conn)


def epm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "epm", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


FAST_RETRIES = {
    "EPM_LEDGER_RETRY_BASE_S": "0.02",
    "EPM_LEDGER_RETRY_MAX_S": "0.2",
    "EPM_LEDGER_ALERT_AFTER": "3",
    "EPM_LEDGER_ALERT_INTERVAL_S": "0",
    "EPM_LEDGER_BOUNDED_RETRIES": "2",
}


@pytest.fixture
def rc(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete("epm:alerts", *client.keys("epm:alerts:throttle:*"))
    yield client
    client.close()


@pytest.fixture
def ledger_env(
    epm_env: pytest.MonkeyPatch, redis_url: str, rc: redis.Redis
) -> Iterator[pytest.MonkeyPatch]:
    """EPM_* settings of this process: fast retries, the session's Redis."""
    from epm.settings import reset_settings_cache

    epm_env.setenv("EPM_REDIS_URL", redis_url)
    for key, value in FAST_RETRIES.items():
        epm_env.setenv(key, value)
    reset_settings_cache()
    yield epm_env
    reset_settings_cache()


@pytest.mark.slow
def test_execution_sent_during_a_long_outage_lands_exactly_once_after_it(
    redis_url: str, rc: redis.Redis, tmp_path: Path
) -> None:
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
            with running(ledger_worker("ledger-outage"), env, log_path) as proc:
                send(redis_url, execution("out.01.01"))
                # The outage lasts until the worker has tried well past the old budget (or the
                # task gave up, which is what the old code did: nothing left in the broker).
                wait_for(
                    lambda: (
                        max_alerted_attempts(rc) > OLD_ATTEMPT_BUDGET + 4
                        or broker_idle(rc, "ledger")
                    ),
                    timeout_s=400,
                    what="the ledger task to retry through the outage",
                )
                assert fill_count(engine, "out.01.01") == 0
                assert max_alerted_attempts(rc) > OLD_ATTEMPT_BUDGET, "the task gave up"
                proxy.restore()
                wait_for(
                    lambda: fill_count(engine, "out.01.01") == 1 and broker_idle(rc, "ledger"),
                    timeout_s=60,
                    what="the execution sent during the outage to land after it",
                )
                assert proc.poll() is None, log_path.read_text()[-3000:]
            assert fill_count(engine, "out.01.01") == 1
            assert dead_letters(engine) == []
            alert = alerts(rc, "ledger_retrying")[-1]
            assert alert["task"] == RECORD_EXECUTION
            assert alert["callback"] == "execution" and alert["key"] == "out.01.01"
            assert "OperationalError" in alert["error"]
            assert "ledger.retrying_long" in log_path.read_text()
        dispose_engines()


@pytest.mark.slow
def test_worker_dead_letters_a_deterministic_failure_and_the_cli_replays_it(
    redis_url: str, rc: redis.Redis, tmp_path: Path
) -> None:
    with postgres_database() as pg:
        upgrade(pg)
        engine = make_engine(pg)
        with refused_shares(engine, 13) as fix:
            env = process_env(
                EPM_REDIS_URL=redis_url,
                EPM_DATABASE_URL=pg,
                EPM_DATA_DIR=str(tmp_path / "epm-data"),
                **FAST_RETRIES,
            )
            log_path = tmp_path / "worker.log"
            with running(ledger_worker("ledger-dead-letter"), env, log_path) as proc:
                send(redis_url, execution("dl.01.01", shares="13", order_id=51))
                send(redis_url, execution("ok.01.01", shares="10", order_id=52))
                wait_for(
                    lambda: (
                        len(dead_letters(engine)) == 1
                        and fill_count(engine, "ok.01.01") == 1
                        and broker_idle(rc, "ledger")
                    ),
                    timeout_s=120,
                    what="the refused execution in ledger_dead_letters, the other one recorded",
                )
                assert proc.poll() is None, log_path.read_text()[-3000:]
            [letter] = dead_letters(engine)
            assert letter["kind"] == "execution"
            assert letter["error_code"] == "INTEGRITY_ERROR"
            assert letter["error_class"] == "IntegrityError"
            assert letter["attempts"] == 3  # the first try and EPM_LEDGER_BOUNDED_RETRIES=2
            assert letter["payload"] == execution("dl.01.01", shares="13", order_id=51)
            assert letter["resolved_at"] is None
            assert letter["first_failed_at"] <= letter["last_failed_at"]
            assert fill_count(engine, "dl.01.01") == 0
            [alert] = alerts(rc, "ledger_dead_letter")
            assert alert["dead_letter_id"] == str(letter["id"])

            listed = epm(env, "ledger", "dead-letters", "--json")
            assert listed.returncode == 0, listed.stderr
            assert [row["id"] for row in json.loads(listed.stdout)] == [letter["id"]]
            status = epm(env, "status", "--json")
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["ledger_dead_letters"] == 1

            # Still refused: the replay says so and the letter stays open.
            again = epm(env, "ledger", "replay", str(letter["id"]))
            assert again.returncode == 1, again.stdout + again.stderr
            assert dead_letters(engine)[0]["resolved_at"] is None
            assert dead_letters(engine)[0]["attempts"] == 4

            fix()
            replayed = epm(env, "ledger", "replay", str(letter["id"]))
            assert replayed.returncode == 0, replayed.stdout + replayed.stderr
            assert fill_count(engine, "dl.01.01") == 1
            assert dead_letters(engine)[0]["resolved_at"] is not None
            # Idempotent: a second replay (one letter, or all) records nothing twice.
            assert epm(env, "ledger", "replay", str(letter["id"])).returncode == 0
            assert epm(env, "ledger", "replay", "--all").returncode == 0
            assert fill_count(engine, "dl.01.01") == 1
            listed = epm(env, "ledger", "dead-letters", "--json")
            assert json.loads(listed.stdout) == []
            status = epm(env, "status", "--json")
            assert json.loads(status.stdout)["ledger_dead_letters"] == 0
        dispose_engines()


def test_task_dead_letters_a_refused_execution_then_replay_records_it(
    engine: Engine, ledger_env: pytest.MonkeyPatch, rc: redis.Redis
) -> None:
    ledger_env.setenv("EPM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    with refused_shares(engine, 13) as fix:
        task_dead_letters_then_replays(engine, rc, fix)


def task_dead_letters_then_replays(
    engine: Engine, rc: redis.Redis, fix: Callable[[], None]
) -> None:
    payload = execution("tk.01.01", shares="13")
    outcome = ledger_tasks.record_execution.apply(args=[payload]).get()
    assert outcome["outcome"] == "dead_lettered"
    [letter] = dead_letters(engine)
    assert outcome["dead_letter_id"] == letter["id"]
    assert (letter["kind"], letter["error_code"], letter["attempts"]) == (
        "execution",
        "INTEGRITY_ERROR",
        3,
    )
    assert letter["payload"] == payload
    # The same callback failing again (a redelivery, the bridge's resync) keeps one letter.
    ledger_tasks.record_execution.apply(args=[payload]).get()
    [letter] = dead_letters(engine)
    assert letter["attempts"] == 6

    failed = replay_dead_letter(letter["id"], engine=engine, redis_client=rc)
    assert failed.status == "failed" and "IntegrityError" in (failed.error or "")
    fix()
    done = replay_dead_letter(letter["id"], engine=engine, redis_client=rc)
    assert done.status == "recorded" and done.outcome is not None
    assert done.outcome["outcome"] == "recorded"
    assert fill_count(engine, "tk.01.01") == 1
    assert dead_letters(engine)[0]["resolved_at"] is not None
    again = replay_dead_letter(letter["id"], engine=engine, redis_client=rc)
    assert again.status == "already_resolved"
    assert fill_count(engine, "tk.01.01") == 1
    missing = replay_dead_letter(letter["id"] + 1000, engine=engine, redis_client=rc)
    assert missing.status == "not_found"


def test_batch_dead_letters_only_the_refused_item(
    engine: Engine, ledger_env: pytest.MonkeyPatch, rc: redis.Redis
) -> None:
    ledger_env.setenv("EPM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    with refused_shares(engine, 13):
        items = [
            {"kind": "execution", "payload": execution("bt.01.01", shares="10", order_id=61)},
            {"kind": "execution", "payload": execution("bt.02.01", shares="13", order_id=62)},
            {"kind": "execution", "payload": execution("bt.03.01", shares="20", order_id=63)},
        ]
        outcomes = ledger_tasks.record_batch.apply(args=[items]).get()
        assert [o["outcome"] for o in outcomes] == ["duplicate", "dead_lettered", "recorded"]
        [letter] = dead_letters(engine)
        assert letter["kind"] == "execution" and letter["payload"] == items[1]["payload"]
        assert fill_count(engine, "bt.01.01") == fill_count(engine, "bt.03.01") == 1


def test_unexpected_database_error_is_dead_lettered(
    pg_url: str, ledger_env: pytest.MonkeyPatch, rc: redis.Redis
) -> None:
    upgrade(pg_url)
    engine = make_engine(pg_url)
    wipe(engine)
    ledger_env.setenv("EPM_DATABASE_URL", pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION epm_test_bug() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'a bug'; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER epm_test_bug BEFORE INSERT ON fills "
            "FOR EACH ROW EXECUTE FUNCTION epm_test_bug()"
        )
    try:
        outcome = ledger_tasks.record_execution.apply(args=[execution("bug.01.01")]).get()
        assert outcome["outcome"] == "dead_lettered"
        [letter] = dead_letters(engine)
        assert letter["error_code"] == "UNEXPECTED_ERROR"
        assert letter["error_class"] == "InternalError"
        assert "a bug" in letter["message"]
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER epm_test_bug ON fills")
            conn.exec_driver_sql("DROP FUNCTION epm_test_bug()")
        wipe(engine)
        dispose_engines()


def test_failures_are_classified_from_real_driver_errors(engine: Engine) -> None:
    unreachable = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/none")
    with pytest.raises(sa.exc.OperationalError) as down:
        unreachable.connect()
    assert ledger_tasks.is_transient(down.value)
    row = {"con_id": 1, "symbol": "X", "sec_type": "STK", "fetched_at": datetime.now(UTC)}
    with pytest.raises(sa.exc.IntegrityError) as dup, engine.begin() as conn:
        conn.execute(contracts.insert().values(**row))
        conn.execute(contracts.insert().values(**row))
    assert not ledger_tasks.is_transient(dup.value)
    assert ledger_tasks.is_transient(ledger.StaleOrderError("version moved"))
    assert not ledger_tasks.is_transient(KeyError("bug"))


@pytest.mark.parametrize("attempt", [0, 1, 5, 12, 60, 1_100, 10_000_000])
def test_retry_countdown_is_capped_jittered_and_below_the_visibility_timeout(attempt: int) -> None:
    import celeryconfig

    visibility = celeryconfig.broker_transport_options["visibility_timeout"]
    rng = random.Random(attempt)
    delays = [ledger_tasks.retry_countdown(attempt, 1.0, 30.0, rng) for _ in range(50)]
    assert all(0 <= d <= min(30.0, 2.0 ** min(attempt, 64)) for d in delays)
    assert max(delays) < visibility / 2
    assert ledger_tasks.retry_countdown(attempt, 1.0, 10_000.0, rng) <= visibility / 2
    if attempt >= 5:
        assert len(set(delays)) > 1


def test_alert_stream_is_the_bridges() -> None:
    from ibgateway_bridge import commands

    assert ledger_tasks.ALERT_STREAM == commands.ALERT_STREAM
