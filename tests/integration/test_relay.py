"""The relay: `signals.exec.intent` entries reach a real worker; a dead relay's entries are claimed.

Real Redis (leased db), a real prefork Celery worker on the intake queue, PostgreSQL, and `epm
relay` processes that are killed with SIGKILL to leave entries pending.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from kombu import Connection

from epm.relay import Relay, payload_from_fields
from epm.streams import INTENT_STREAM, REJECT_STREAM, RELAY_GROUP
from store.db import make_engine
from store.migrate import upgrade
from store.schema import intents
from tests.integration.intake_procs import (
    process_env,
    relay_argv,
    running,
    wait_for,
    worker_argv,
)
from tests.services import postgres_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_relay_url() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def worker_env(
    pg_relay_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return process_env(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL=pg_relay_url,
        EPM_DATA_DIR=str(tmp_path_factory.mktemp("relay-data")),
    )


@pytest.fixture(scope="module")
def worker(worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    log = tmp_path_factory.mktemp("relay-worker") / "worker.log"
    with running(worker_argv(concurrency=2), worker_env, log):
        yield


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(INTENT_STREAM)
    yield client
    client.delete(INTENT_STREAM)
    client.close()


def intent(**changes: Any) -> dict[str, str]:
    payload = {
        "signal_id": f"r-{uuid.uuid4().hex[:12]}",
        "strategy": "Momentum_EQ",
        "instrument": "NVDA",
        "side": "BUY",
        "quantity": "100",
        "urgency": "High",
        "time_in_force": "DAY",
    }
    payload.update(changes)
    return payload


def stored(url: str, signal_ids: list[str]) -> dict[str, dict[str, Any]]:
    with make_engine(url).connect() as conn:
        query = sa.select(intents).where(intents.c.signal_id.in_(signal_ids))
        return {m["signal_id"]: dict(m) for m in conn.execute(query).mappings()}


def pending_count(client: redis.Redis) -> int:
    try:
        info = client.xpending(INTENT_STREAM, RELAY_GROUP)
    except redis.ResponseError as e:  # the relay under test has not created its group yet
        assert "NOGROUP" in str(e)
        return 0
    return int(info["pending"])


def test_payload_field_and_flat_entries_decode_to_intake_payloads() -> None:
    assert payload_from_fields({"payload": '{"a": 1}'}) == '{"a": 1}'
    flat = payload_from_fields(
        {"signal_id": "s", "quantity": "5", "target_price": "", "risk_tags": "earnings, hedged"}
    )
    assert flat == {"signal_id": "s", "quantity": "5", "risk_tags": ["earnings", "hedged"]}
    assert payload_from_fields({"risk_tags": '["macro_event"]'}) == {"risk_tags": ["macro_event"]}
    assert payload_from_fields({"risk_tags": "[oops"}) == {"risk_tags": "[oops"}
    # "payload" next to other fields is a flat entry with an unknown field (intake refuses it).
    assert payload_from_fields({"payload": "{}", "x": "1"}) == {"payload": "{}", "x": "1"}


def test_relay_forwards_both_entry_shapes_to_the_worker_and_acks_them(
    worker: None, pg_relay_url: str, redis_url: str, rds: redis.Redis
) -> None:
    as_json = intent()
    flat = intent(risk_tags="earnings,hedged", target_price="")
    bad = intent(quantity="0")
    rds.xadd(INTENT_STREAM, {"payload": json.dumps(as_json)})
    rds.xadd(INTENT_STREAM, flat)  # type: ignore[arg-type]
    rds.xadd(INTENT_STREAM, {"payload": json.dumps(bad)})
    rejects_before = rds.xlen(REJECT_STREAM)

    from tasks.intake import submit_intent

    with Connection(redis_url) as conn:
        producer = conn.Producer()

        def submit(payload: object, entry_id: str) -> None:
            submit_intent.apply_async(args=[payload], task_id=f"t-{entry_id}", producer=producer)

        relay = Relay(rds, submit=submit, consumer="relay-a")
        assert relay.run(max_entries=3, block_ms=200) == 3
    assert pending_count(rds) == 0

    ids = [as_json["signal_id"], flat["signal_id"], bad["signal_id"]]
    rows = wait_for(lambda: len(stored(pg_relay_url, ids)) == 3 and stored(pg_relay_url, ids))
    assert rows[as_json["signal_id"]]["status"] == "VALIDATED"
    assert rows[flat["signal_id"]]["risk_tags"] == ["earnings", "hedged"]
    assert rows[bad["signal_id"]]["reject_reason"] == "INVALID_QUANTITY"
    wait_for(lambda: rds.xlen(REJECT_STREAM) - rejects_before == 1, what="one reject entry")


def test_entries_a_dead_consumer_read_but_never_acked_are_claimed(
    worker: None, pg_relay_url: str, redis_url: str, rds: redis.Redis
) -> None:
    payloads = [intent() for _ in range(3)]
    for p in payloads:
        rds.xadd(INTENT_STREAM, {"payload": json.dumps(p)})
    Relay(rds, consumer="unused").ensure_group()
    # A consumer that read the entries and died before enqueueing/acknowledging them.
    rds.xreadgroup(RELAY_GROUP, "dead", {INTENT_STREAM: ">"}, count=10)
    assert pending_count(rds) == 3

    from tasks.intake import submit_intent

    with Connection(redis_url) as conn:
        producer = conn.Producer()

        def submit(payload: object, entry_id: str) -> None:
            submit_intent.apply_async(args=[payload], producer=producer)

        relay = Relay(rds, submit=submit, consumer="heir", claim_idle_ms=200)
        wait_for(
            lambda: all(
                e["time_since_delivered"] >= 200
                for e in rds.xpending_range(INTENT_STREAM, RELAY_GROUP, "-", "+", 10)
            ),
            what="entries idle past the claim threshold",
        )
        assert relay.run(max_entries=3, block_ms=100) == 3
    assert pending_count(rds) == 0
    # The dead consumer, now owning nothing, is dropped from the group.
    names = {c["name"] for c in rds.xinfo_consumers(INTENT_STREAM, RELAY_GROUP)}
    assert "dead" not in names and "heir" in names
    ids = [p["signal_id"] for p in payloads]
    wait_for(lambda: len(stored(pg_relay_url, ids)) == 3, what="claimed intents stored")


def test_killed_relay_process_leaves_pending_entries_that_the_next_relay_claims(
    worker: None,
    worker_env: dict[str, str],
    pg_relay_url: str,
    rds: redis.Redis,
    tmp_path: Path,
) -> None:
    payloads = [intent() for _ in range(4)]
    for p in payloads:
        rds.xadd(INTENT_STREAM, {"payload": json.dumps(p)})
    # First relay: the broker is unreachable, so it reads entries but can never enqueue them.
    doomed_env = {**worker_env, "EPM_BROKER_URL": "redis://127.0.0.1:1/0"}
    doomed = subprocess.Popen(
        relay_argv("--consumer", "doomed", "--block-ms", "200"),
        env=doomed_env,
        stdout=(tmp_path / "doomed.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: pending_count(rds) == 4, what="the doomed relay to read all entries")
    finally:
        doomed.kill()  # SIGKILL by PID: no chance to clean up
        doomed.wait(timeout=10)
    consumers = {c["name"]: c["pending"] for c in rds.xinfo_consumers(INTENT_STREAM, RELAY_GROUP)}
    assert consumers.get("doomed") == 4

    argv = relay_argv(
        "--consumer", "heir", "--claim-idle-ms", "300", "--block-ms", "200", "--max-entries", "4"
    )
    heir = subprocess.run(argv, env=worker_env, capture_output=True, timeout=120)
    assert heir.returncode == 0, heir.stderr.decode()[-3000:]
    assert pending_count(rds) == 0
    ids = [p["signal_id"] for p in payloads]
    rows = wait_for(lambda: len(stored(pg_relay_url, ids)) == 4 and stored(pg_relay_url, ids))
    assert {r["status"] for r in rows.values()} == {"VALIDATED"}


def test_relay_process_stops_on_sigterm(
    worker_env: dict[str, str], rds: redis.Redis, tmp_path: Path
) -> None:
    started = datetime.now(UTC)
    with running(
        relay_argv("--consumer", "stoppable", "--block-ms", "300"), worker_env, tmp_path / "r.log"
    ) as proc:
        wait_for(
            lambda: (
                rds.exists(INTENT_STREAM)
                and any(g["name"] == RELAY_GROUP for g in rds.xinfo_groups(INTENT_STREAM))
            ),
            what="the relay to create its group",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert datetime.now(UTC) - started < timedelta(seconds=60)
    assert "relay.stopped" in (tmp_path / "r.log").read_text()


def _relay_thread(relay: Relay) -> tuple[threading.Thread, list[BaseException]]:
    """`relay.run()` with its defaults on a thread; an exception that ends it is kept."""
    died: list[BaseException] = []

    def run() -> None:
        try:
            relay.run()
        except BaseException as e:  # the test reports it: the relay must never end on its own
            died.append(e)

    thread = threading.Thread(target=run, name="relay-under-test", daemon=True)
    thread.start()
    return thread, died


def test_relay_with_its_defaults_outlives_the_socket_timeout(redis_url: str) -> None:
    """A client as redis-py builds it (5 s socket timeout) and the relay's default block: it must
    still be reading after more idle seconds than the timeout (it once died after five)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    stream = f"relay-idle-{uuid.uuid4().hex[:8]}"
    sent: list[str] = []
    relay = Relay(client, submit=lambda _p, entry_id: sent.append(entry_id), stream=stream)
    thread, died = _relay_thread(relay)
    try:
        # The property under test is an idle stretch longer than the socket timeout.
        thread.join(timeout=7.0)
        assert thread.is_alive() and died == []
        entry = client.xadd(stream, {"payload": "{}"})
        wait_for(lambda: sent == [entry], timeout_s=10, what="the entry after the idle stretch")
    finally:
        relay.stop()
        thread.join(timeout=10)
        client.delete(stream)
    assert died == []


def test_relay_rides_out_redis_going_away_and_losing_its_group(redis_url: str) -> None:
    """Redis restarts (connections cut, then back without the stream: no persistence): the
    relay waits it out with backoff, makes its group again and forwards what comes next."""
    from tests.bridge.harness import TcpProxy

    stream = f"relay-restart-{uuid.uuid4().hex[:8]}"
    sent: list[str] = []
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    with TcpProxy.for_url(redis_url) as proxy:
        client = redis.Redis.from_url(proxy.url_via(redis_url), decode_responses=True)
        relay = Relay(client, submit=lambda _p, entry_id: sent.append(entry_id), stream=stream)
        thread, died = _relay_thread(relay)
        try:
            first = admin.xadd(stream, {"payload": "{}"})
            wait_for(lambda: sent == [first], timeout_s=10, what="an entry before the outage")
            proxy.cut()
            admin.delete(stream)  # the restarted server lost the stream and the group
            thread.join(timeout=1.5)  # the relay meets the outage and backs off
            proxy.restore()
            second = admin.xadd(stream, {"payload": "{}"})
            wait_for(
                lambda: sent == [first, second], timeout_s=20, what="an entry after the restart"
            )
            assert thread.is_alive() and died == []
        finally:
            relay.stop()
            thread.join(timeout=10)
            admin.delete(stream)
