"""Issue 14 acceptance for metrics and alerts, against the simulator through the real bridge.

1. A session of the production shape (sim, bridge, relay, a worker on every queue, beat and
   `epm metrics`, started with honcho on PostgreSQL and Redis): each §12.1 metric, scraped over
   HTTP, moves with the ledger — intents active and children in flight while they work, the
   first fill's latency and the slippage observed in the worker processes (multi-process mode),
   the open position and its unrealized P&L — and epm's own alert tick raises nothing in it.
2. A squatter holding client id 1 before the bridge connects (error 326): the collision is a
   page on `ops.alerts` and in `epm_bridge_client_id_in_use`; the bridge stopped, both sessions
   page as disconnected once held for 30 s.

Gauge values are compared with the ledger read just before and just after the scrape; a reading
where the two differ (the session moved in between) is skipped, never asserted on.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import sqlalchemy as sa
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from epm.metrics.server import build_registry, serve
from epm.streams import INTENT_STREAM
from ibgateway_bridge.connection import PacedClient, SessionState
from ibgateway_bridge.pacing import SlidingWindowLimiter
from ibgateway_bridge.runtime import BridgeConfig
from ibgateway_bridge.wrapper import BridgeWrapper
from services.alerts.tick import ALERT_STREAM, LAST_TICK_KEY, run_tick
from store.db import make_engine
from store.migrate import upgrade
from tests.bridge.harness import bridge_in_process, poll, sim_thread
from tests.integration.intake_procs import REPO, process_env
from tests.services import postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

T = TypeVar("T")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
STRATEGY = "Momentum_EQ"
PROCFILE = """\
sim: epm sim --port $EPM_IB_PORT
bridge: epm bridge
relay: epm relay
worker: epm worker -Q intake,orders,ledger,pnl,recon -c 2
beat: epm beat
metrics: epm metrics --port $EPM_METRICS_PORT
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def scrape(url: str) -> Samples | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; an absent series reads 0 (as a gauge with nothing to count)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def consistent(
    engine: sa.engine.Engine, url: str, ledger: Callable[[sa.engine.Connection], T]
) -> tuple[T, Samples] | None:
    """(ledger facts, scrape) when the ledger read the same before and after the scrape."""
    with engine.connect() as conn:
        before = ledger(conn)
    samples = scrape(url)
    with engine.connect() as conn:
        after = ledger(conn)
    if samples is None or before != after:
        return None
    return before, samples


def _scalar(conn: sa.engine.Connection, sql: str, **params: Any) -> Any:
    return conn.execute(sa.text(sql), params).scalar()


def working_counts(conn: sa.engine.Connection) -> tuple[int, int]:
    active = _scalar(
        conn,
        "SELECT count(*) FROM intents WHERE strategy = :s AND status IN ('VALIDATED','WORKING')",
        s=STRATEGY,
    )
    in_flight = _scalar(
        conn,
        "SELECT count(*) FROM execution_orders WHERE intent_id IS NOT NULL "
        "AND state IN ('PLACED','PARTIAL_FILLED','CANCEL_REQUESTED')",
    )
    return int(active), int(in_flight)


def intents_with_fills(conn: sa.engine.Connection) -> int:
    return int(
        _scalar(
            conn,
            "SELECT count(DISTINCT o.intent_id) FROM fills f "
            "JOIN execution_orders o ON o.id = f.order_id WHERE o.strategy = :s",
            s=STRATEGY,
        )
    )


def slippage_rows(conn: sa.engine.Connection) -> int:
    return int(
        _scalar(
            conn,
            "SELECT count(*) FROM execution_metrics WHERE order_id IS NULL "
            "AND slippage_bps IS NOT NULL AND strategy = :s",
            s=STRATEGY,
        )
    )


def position_and_pnl(conn: sa.engine.Connection) -> tuple[Decimal, Decimal | None]:
    """(NVDA quantity, the strategy's unrealized P&L once every position of it is marked)."""
    rows = conn.execute(
        sa.text(
            "SELECT symbol, quantity, unrealized_pl FROM positions_current WHERE strategy_id = :s"
        ),
        {"s": STRATEGY},
    ).all()
    qty = sum((Decimal(r.quantity) for r in rows if r.symbol == "NVDA"), Decimal(0))
    marked = bool(rows) and all(r.unrealized_pl is not None for r in rows)
    pnl = sum((Decimal(r.unrealized_pl or 0) for r in rows), Decimal(0)) if marked else None
    return qty, pnl


def intent_status(engine: sa.engine.Engine, signal_id: str) -> str | None:
    with engine.connect() as conn:
        got = _scalar(conn, "SELECT status FROM intents WHERE signal_id = :s", s=signal_id)
    return None if got is None else str(got)


@contextlib.contextmanager
def session_stack(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The processes of a session under honcho; (metrics URL, log path). Stopped by PID."""
    venv_bin = Path(sys.executable).parent
    metrics_port = _free_port()
    env = process_env(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL=db_url,
        EPM_DATA_DIR=str(tmp_path / "epm-data"),
        EPM_IB_PORT=str(_free_port()),
        EPM_METRICS_PORT=str(metrics_port),
        EPM_BRIDGE_LEASE_TTL_MS="2000",
        EPM_ALERT_TICK_S="2",
    )
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    procfile = tmp_path / "Procfile"
    procfile.write_text(PROCFILE)
    log_path = tmp_path / "honcho.log"
    with log_path.open("ab") as log:
        honcho = subprocess.Popen(
            [str(venv_bin / "honcho"), "-f", str(procfile), "-d", str(REPO), "start"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{metrics_port}/metrics", log_path
    finally:
        if honcho.poll() is None:
            honcho.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                honcho.wait(timeout=30)
        if _alive(honcho.pid):
            os.killpg(honcho.pid, signal.SIGKILL)
        poll(lambda: not _alive(honcho.pid), 30, 0.2, "no session process left")


@pytest.fixture
def session_db() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        yield url


def test_blueprint_metrics_move_with_a_session_and_no_alert_fires(
    session_db: str, redis_url: str, tmp_path: Path
) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.flushdb()
    engine = sa.create_engine(session_db)
    try:
        with session_stack(session_db, redis_url, tmp_path) as (url, log_path):

            def log_tail() -> str:
                return log_path.read_text(errors="replace")[-4000:]

            try:
                poll(
                    lambda: (
                        r.hmget("ib:bridge:state", ["client1", "client2"]) == ["READY", "READY"]
                        and scrape(url)
                    ),
                    90,
                    0.2,
                    "the bridge READY and epm metrics serving",
                )
            except AssertionError:
                raise AssertionError(log_tail()) from None
            start = scrape(url)
            assert start is not None
            assert value(start, "exec_orders_active_total", strategy=STRATEGY) == 0
            assert value(start, "exec_child_orders_in_flight") == 0
            assert value(start, "exec_fill_latency_ms_count", strategy=STRATEGY) == 0
            assert value(start, "epm_bridge_session_up", client_id="1") == 1

            sweep_id, pegged_id = (f"m-{uuid.uuid4().hex[:10]}" for _ in range(2))
            base = {"strategy": STRATEGY, "side": "BUY", "time_in_force": "DAY"}
            common = {**base, "max_slippage_bps": "25"}
            r.xadd(
                INTENT_STREAM,
                {**common, "signal_id": sweep_id, "instrument": "NVDA", "quantity": "10"}
                | {"urgency": "High"},
            )
            # Normal urgency: a DAY limit at the midpoint, which rests at the venue a while.
            r.xadd(
                INTENT_STREAM,
                {**common, "signal_id": pegged_id, "instrument": "AAPL", "quantity": "5"}
                | {"urgency": "Normal"},
            )

            seen_working = [False]

            def working_seen() -> bool:
                got = consistent(engine, url, working_counts)
                if got is not None:
                    (active, in_flight), samples = got
                    assert value(samples, "exec_orders_active_total", strategy=STRATEGY) == active
                    assert value(samples, "exec_child_orders_in_flight") == in_flight
                    if active >= 1 and in_flight >= 1:
                        seen_working[0] = True
                done = intent_status(engine, sweep_id) == "COMPLETED"
                return seen_working[0] and done

            try:
                poll(working_seen, 90, 0.1, "intents seen working, the sweep COMPLETED")
            except AssertionError:
                raise AssertionError(
                    f"{intent_status(engine, sweep_id)=} {seen_working=}\n{log_tail()}"
                ) from None

            # The first fill of each intent, observed once in the ledger worker.
            def latency_counted() -> bool:
                got = consistent(engine, url, intents_with_fills)
                if got is None:
                    return False
                filled, samples = got
                return filled >= 1 and (
                    value(samples, "exec_fill_latency_ms_count", strategy=STRATEGY) == filled
                )

            multiproc = tmp_path / "epm-data" / "prometheus"
            try:
                poll(latency_counted, 30, 0.2, "exec_fill_latency_ms counting first fills")
            except AssertionError:
                now_samples = scrape(url) or {}
                latency = {k: v for k, v in now_samples.items() if "latency" in k[0]}
                files = sorted(p.name for p in multiproc.glob("*"))
                raise AssertionError(f"{latency=} {files=}\n{log_tail()}") from None

            if intent_status(engine, pegged_id) in ("VALIDATED", "WORKING"):
                env = process_env(EPM_REDIS_URL=redis_url, EPM_DATABASE_URL=session_db)
                done = subprocess.run(
                    [sys.executable, "-m", "epm", "cancel-intent", pegged_id, "--reason", "test"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                assert done.returncode == 0, done.stdout + done.stderr

            def nothing_working() -> bool:
                got = consistent(engine, url, working_counts)
                return (
                    got is not None
                    and got[0] == (0, 0)
                    and (
                        value(got[1], "exec_orders_active_total", strategy=STRATEGY) == 0
                        and value(got[1], "exec_child_orders_in_flight") == 0
                    )
                )

            poll(nothing_working, 60, 0.2, "no intent active and no child in flight")

            # The books' mark tick (every 5 s) marks the position: the gauge is its P&L.
            def marked() -> bool:
                got = consistent(engine, url, position_and_pnl)
                if got is None:
                    return False
                (qty, pnl), samples = got
                assert qty == Decimal(10)
                assert (
                    value(samples, "exec_positions_open", security="NVDA", con_id=_nvda(engine))
                    == 10
                )
                if pnl is None:
                    return False
                # Prometheus carries floats: equal to the cent's fraction, not to the last digit.
                exported = Decimal(str(value(samples, "exec_pnl_unrealized", strategy=STRATEGY)))
                assert abs(exported - pnl) < Decimal("0.000001"), (exported, pnl)
                return True

            poll(marked, 60, 0.5, "the NVDA position marked and its unrealized P&L exported")

            # Shortfall is beat's minute tick; ask the recon worker for it now.
            sender = Celery("metrics-e2e", broker=redis_url)
            sender.send_task("tasks.recon.shortfall_tick", queue="recon")
            sender.close()

            def slippage_counted() -> bool:
                got = consistent(engine, url, slippage_rows)
                return (
                    got is not None
                    and got[0] >= 1
                    and value(got[1], "exec_slippage_bps_count", strategy=STRATEGY) == got[0]
                )

            poll(slippage_counted, 60, 0.5, "exec_slippage_bps counting the ended intents")

            final = scrape(url)
            assert final is not None
            assert value(final, "epm_ledger_callback_lag_seconds_count") >= 1
            for q in ("intake", "orders", "ledger", "pnl", "recon"):
                assert ("epm_celery_queue_depth", frozenset({("queue", q)})) in final
            assert value(final, "epm_bridge_session_up", client_id="2") == 1
            assert value(final, "epm_bridge_heartbeat_age_seconds") < 15
            assert {v for (n, _l), v in final.items() if n == "epm_metrics_scrape_errors"} == {0}
            assert any(multiproc.glob("histogram_*.db")), "workers kept no samples"

            # A clean session: beat's alert tick ran after all of it and fired nothing.
            checked_at = datetime.now(UTC)
            poll(
                lambda: (r.get(LAST_TICK_KEY) or "") > checked_at.isoformat(),
                30,
                0.5,
                "an alert tick after the session",
            )
            firing = [f for _i, f in r.xrange(ALERT_STREAM) if f["status"] == "firing"]
            assert firing == [], firing
    finally:
        engine.dispose()
        r.flushdb()
        r.close()


def _nvda(engine: sa.engine.Engine) -> str:
    """NVDA's conId as the ledger holds it (the simulator's catalog decides it)."""
    with engine.connect() as conn:
        got = _scalar(conn, "SELECT con_id FROM positions_current WHERE symbol = 'NVDA'")
    assert got is not None, "no NVDA position"
    return str(got)


def test_a_client_id_collision_pages_and_a_stopped_bridge_pages_as_disconnected(
    r: redis.Redis, redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    registry = build_registry(engine, r, redis_url, ["ledger"], tmp_path / "prom")
    server, _thread = serve(registry, 0, "127.0.0.1")
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        with sim_thread() as sim:
            squatter = PacedClient(
                BridgeWrapper(1, queue.Queue(), queue.Queue()),
                SlidingWindowLimiter(45, connection="squat"),
            )
            squatter.connect("127.0.0.1", sim.port, 1)
            config = BridgeConfig(
                send_extra_tasks=False, id_in_use_retry_s=0.2, id_in_use_max_retries=0
            )
            try:
                with bridge_in_process(redis_url, sim.port, config=config) as bridge:
                    poll(lambda: bridge.orders.state == SessionState.ID_IN_USE, 15, what="326")
                    poll(
                        lambda: r.hget("ib:bridge:state", "client2") == "READY",
                        15,
                        what="client 2 ready",
                    )
                    poll(lambda: r.hget("ib:bridge:state", "heartbeat"), 5, what="heartbeat")
                    samples = scrape(url)
                    assert samples is not None
                    assert value(samples, "epm_bridge_client_id_in_use", client_id="1") == 1
                    assert value(samples, "epm_bridge_session_up", client_id="1") == 0
                    assert value(samples, "epm_bridge_session_up", client_id="2") == 1
                    now = datetime.now(UTC)
                    assert run_tick(engine, r, now).fired == ("client_id_collision:1",)
                    assert run_tick(engine, r, now + timedelta(seconds=1)).fired == ()
                    (entry,) = [f for _i, f in r.xrange(ALERT_STREAM)]
                    assert (entry["severity"], entry["runbook"]) == ("page", "gateway-reconnect")
            finally:
                squatter.disconnect()
        # The bridge stopped: nothing holds the gateway any more.
        stopped_at = datetime.now(UTC)
        first = run_tick(engine, r, stopped_at)
        assert first.fired == () and first.resolved == ("client_id_collision:1",)
        held = run_tick(engine, r, stopped_at + timedelta(seconds=31))
        assert held.fired == ("gateway_disconnected:1", "gateway_disconnected:2")
        samples = scrape(url)
        assert samples is not None
        assert value(samples, "epm_bridge_session_up", client_id="2") == 0
    finally:
        server.shutdown()
        server.server_close()
