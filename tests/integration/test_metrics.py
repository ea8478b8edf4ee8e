"""`epm metrics` (issue 14 item 1) scraped over HTTP, as Prometheus does: the §12.1 gauges and
the bridge/queue gauges equal what the ledger, Redis and the broker hold, every registered
family is served, and a store that cannot be read is reported instead of failing the page."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from epm.metrics.registry import GAUGES
from services.recon.positions import reconcile_positions
from tests.integration.intake_procs import process_env, stop_process, wait_for
from tests.integration.ops_scenarios import AAPL, SPY, T0, Venue, child, fill, intent

pytestmark = pytest.mark.redis

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def metrics_url(engine: Engine, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """`epm metrics --port 0` as a process on this test's stores; its /metrics URL."""
    env = process_env(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL=engine.url.render_as_string(hide_password=False),
        EPM_DATA_DIR=str(tmp_path / "data"),
    )
    log_path = tmp_path / "metrics.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "epm", "metrics", "--port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        found = wait_for(
            lambda: (
                re.search(r"serving (http://\S+/metrics)", log_path.read_text())
                or proc.poll() is not None
            ),
            timeout_s=30,
            what="epm metrics serving",
        )
        assert proc.poll() is None, log_path.read_text()
        assert isinstance(found, re.Match)
        yield found.group(1)
    finally:
        stop_process(proc)


def scrape(url: str) -> tuple[set[str], Samples]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    names: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return names, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_every_gauge_is_served_and_matches_the_ledger_and_redis(
    engine: Engine, r: redis.Redis, redis_url: str, metrics_url: str
) -> None:
    names, samples = scrape(metrics_url)
    assert set(GAUGES) <= names, set(GAUGES) - names
    assert value(samples, "exec_child_orders_in_flight") == 0
    assert value(samples, "exec_orders_active_total", strategy="Momentum_EQ") is None
    assert value(samples, "epm_metrics_scrape_errors", source="ledger") == 0

    # An urgent intent working with one child at the venue and one filled...
    working = intent(engine, "w-1", status="WORKING", urgency="High", received_at=T0)
    child(engine, working, "w-1-c1", 11, state="PLACED")
    child(engine, working, "w-1-c2", 12, state="PLACED")
    fill(engine, 1, "w-1-c2", 12, "100", "100.01")
    # ... an ended one of another strategy that bought 40 AAPL, and one refused at intake.
    done = intent(engine, "d-1", status="COMPLETED", strategy="0DTE_Scalp", con_id=AAPL)
    child(engine, done, "d-1-c1", 13, strategy="0DTE_Scalp", con_id=AAPL)
    fill(engine, 2, "d-1-c1", 13, "40", "200.00", con_id=AAPL)
    intent(engine, "x-1", status="REJECTED", reject_reason="RISK_LIMIT")
    # IB holds 7 SPY more than the ledger.
    reconcile_positions(engine, Venue({SPY: "107", AAPL: "40"}), clock=lambda: T0)
    # The bridge's published state, a halt, and two messages waiting for a ledger worker.
    now = datetime.now(UTC)
    r.hset(
        "ib:bridge:state",
        mapping={
            "started_at": (now - timedelta(minutes=1)).isoformat(),
            "stopped_at": "",
            "heartbeat": now.isoformat(),
            "client1": "READY",
            "client2": "CONNECTING",
            "backlog_orders": "3",
            "ready_count_client1": "3",
        },
    )
    r.set("epm:halt:strategy:0DTE_Scalp", "operator")
    r.xadd("epm:bridge:rejects", {"reason": "HALTED_GLOBAL", "stream_id": "1-0"})
    sender = Celery("metrics-test", broker=redis_url)
    for n in range(2):
        sender.send_task("tasks.ledger.record_execution", args=[{"n": n}], queue="ledger")
    sender.close()

    before = datetime.now(UTC)
    names, samples = scrape(metrics_url)
    after = datetime.now(UTC)
    assert value(samples, "exec_orders_active_total", strategy="Momentum_EQ") == 1
    assert value(samples, "exec_orders_active_total", strategy="0DTE_Scalp") == 0
    # w-1-c1 works untouched, d-1-c1 is partly filled (40 of 100) and still works; w-1-c2
    # filled its 100 and left the venue.
    assert value(samples, "exec_child_orders_in_flight") == 2
    assert value(samples, "exec_positions_open", security="SPY", con_id=str(SPY)) == 100
    assert value(samples, "exec_positions_open", security="AAPL", con_id=str(AAPL)) == 40
    assert value(samples, "exec_pnl_unrealized", strategy="Momentum_EQ") == 0
    oldest = value(samples, "exec_urgent_unfilled_oldest_seconds", strategy="Momentum_EQ")
    assert oldest is not None
    assert (before - T0).total_seconds() - 1 <= oldest <= (after - T0).total_seconds() + 1
    assert value(samples, "epm_recon_position_difference", security="SPY", con_id=str(SPY)) == 7
    assert value(samples, "epm_rejects", source="intake", reason="RISK_LIMIT") == 1
    assert value(samples, "epm_rejects", source="bridge", reason="HALTED_GLOBAL") == 1
    assert value(samples, "epm_halted", scope="strategy", key="0DTE_Scalp") == 1
    assert value(samples, "epm_bridge_pacing_backlog", connection="orders") == 3
    assert value(samples, "epm_bridge_reconnects", client_id="1") == 2
    assert value(samples, "epm_bridge_session_up", client_id="1") == 1
    assert value(samples, "epm_bridge_session_up", client_id="2") == 0
    assert value(samples, "epm_bridge_client_id_in_use", client_id="1") == 0
    age = value(samples, "epm_bridge_heartbeat_age_seconds")
    assert age is not None and 0 <= age <= (after - now).total_seconds() + 1
    assert value(samples, "epm_celery_queue_depth", queue="ledger") == 2
    assert value(samples, "epm_celery_queue_depth", queue="orders") == 0
    assert {v for (n, _l), v in samples.items() if n == "epm_metrics_scrape_errors"} == {0}


def test_an_unreachable_ledger_is_reported_and_redis_gauges_still_served(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    env = process_env(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL="postgresql+psycopg2://postgres@127.0.0.1:1/nowhere",
        EPM_DATA_DIR=str(tmp_path / "data"),
    )
    r.set("epm:halt:global", "1")
    log_path = tmp_path / "metrics.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "epm", "metrics", "--port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        found = wait_for(
            lambda: re.search(r"serving (http://\S+/metrics)", log_path.read_text()),
            timeout_s=30,
            what="epm metrics serving",
        )
        _names, samples = scrape(found.group(1))
        assert value(samples, "epm_metrics_scrape_errors", source="ledger") == 1
        assert value(samples, "epm_metrics_scrape_errors", source="redis") == 0
        assert value(samples, "epm_halted", scope="global", key="") == 1
    finally:
        stop_process(proc)


def test_a_taken_port_is_a_clear_error(tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "epm", "metrics", "--port", str(port)],
            env=process_env(EPM_REDIS_URL=redis_url, EPM_DATA_DIR=str(tmp_path / "d")),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
