"""Bridge latency (issue 4 bench): command enqueue → bytes at the venue, callback → ledger commit.

Compared in the same run, on the same Redis and machine, with the two floors the bridge path is
built on: a bare Redis round trip (`PING`) and a bare Celery task round trip (a no-op task on a
worker of its own, `.delay().get()` through the same broker).

- enqueue → socket: `client_api.enqueue_place` (XADD) until the simulator's dispatcher sees the
  placeOrder message (the simulator runs in this process, on its own thread; a hook on its
  dispatch records the arrival time). One order at a time, spaced so pacing never queues them
  (a paced burst is measured separately: there the number is the pacing, by design).
- callback → ledger commit: the bridge's receive time of execDetails (`fills.received_at`, set by
  the wrapper) until the row is visible in PostgreSQL, seen by a poller querying every 2 ms (so
  the figure is high by up to ~2 ms). A real `celery worker -Q ledger` (prefork, 2 processes)
  does the writing.

Needs the machine's PostgreSQL and Redis (it takes a fresh database and a leased Redis db number
the way the tests do). Run: `.venv/bin/python bench/bridge_latency.py [--orders N]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ibgateway_bridge import client_api  # noqa: E402
from ibgateway_bridge.runtime import BridgeConfig  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from tests.bridge.harness import bridge_in_process, poll, sim_thread, wait_ready  # noqa: E402
from tests.services import postgres_database, redis_database  # noqa: E402

SPY = {"con_id": 756733, "symbol": "SPY", "sec_type": "STK"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"| {name} | {len(ms)} | {pct(ms, 0.5):.2f} | {pct(ms, 0.99):.2f} | "
        f"{statistics.mean(ms):.2f} |"
    )


def spawn_worker(app: str, queue: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queue, "-c", "2",
        "--pool", "prefork", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """The tests' `poll` at a 2 ms interval (latency is measured); a timeout ends the run."""
    try:
        return poll(condition, timeout, interval=0.002, what=what)
    except AssertionError as e:
        raise SystemExit(str(e)) from None


def bench_redis(r: redis.Redis, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r.ping()
        out.append(time.perf_counter() - t)
    return out


def bench_celery(redis_url: str, n: int, log_dir: Path, env: dict[str, str]) -> list[float]:
    worker = spawn_worker("bench.bridge_noop_app", "bench_noop", env, log_dir / "noop.log")
    try:
        from bench.bridge_noop_app import app, noop

        app.conf.broker_url = redis_url
        app.conf.result_backend = redis_url
        noop.apply_async(queue="bench_noop").get(timeout=60)  # worker up
        out = []
        for _ in range(n):
            t = time.perf_counter()
            noop.apply_async(queue="bench_noop").get(timeout=30)
            out.append(time.perf_counter() - t)
        return out
    finally:
        stop(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument(
        "--batch-items", type=int, default=50, help="bridge record_batch size (1 = no batching)"
    )
    args = parser.parse_args()
    n = args.orders
    log_dir = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    with redis_database() as redis_url, postgres_database() as db_url:
        upgrade(db_url)
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
            "EPM_REDIS_URL": redis_url,
            "EPM_DATABASE_URL": db_url,
            "EPM_DATA_DIR": str(log_dir / "data"),
            "PYTHONPATH": str(REPO),
        }
        rows = [summary("Redis PING round trip", bench_redis(r, 2000))]
        rows.append(
            summary("Celery no-op task round trip", bench_celery(redis_url, n, log_dir, env))
        )

        worker = spawn_worker("tasks.app", "ledger", env, log_dir / "ledger.log")
        engine = sa.create_engine(db_url)
        try:
            with (
                sim_thread() as sim,
                bridge_in_process(
                    redis_url,
                    sim.port,
                    config=BridgeConfig(send_extra_tasks=True, batch_items=args.batch_items),
                ),
            ):
                arrivals: dict[int, float] = {}

                def hook(server: Any) -> None:
                    original = server.dispatch

                    def timed(session: Any, fields: list[str]) -> None:
                        if fields and fields[0] == "3":  # placeOrder; v157 has no version field
                            arrivals.setdefault(int(fields[1]), time.time())
                        original(session, fields)

                    server.dispatch = timed

                sim.call(hook)
                wait_ready(r)
                to_socket: list[float] = []
                to_commit: list[float] = []
                for _ in range(n):
                    oid = client_api.allocate_order_id(r)
                    sent = time.time()
                    client_api.enqueue_place(
                        oid, f"bench-{oid}", SPY,
                        {"action": "BUY", "quantity": "1", "order_type": "MKT"}, client=r,
                    )  # fmt: skip
                    wait(lambda o=oid: o in arrivals, 10, "order at the venue")
                    to_socket.append(arrivals[oid] - sent)

                    def committed(o: int = oid) -> Any:
                        with engine.connect() as conn:
                            return conn.execute(
                                sa.text("SELECT received_at FROM fills WHERE ib_order_id = :o"),
                                {"o": o},
                            ).first()

                    row = wait(committed, 30, "fill committed")
                    seen = datetime.now(UTC)
                    to_commit.append((seen - row[0]).total_seconds())
                    time.sleep(0.03)  # stay under pacing: measure the path, not the queue
                rows.append(summary("bridge: enqueue → placeOrder at venue", to_socket))
                rows.append(summary("bridge: execDetails received → fill committed", to_commit))

                burst_ids = [client_api.allocate_order_id(r) for _ in range(n)]
                burst_start = time.time()
                for oid in burst_ids:
                    client_api.enqueue_place(
                        oid, f"burst-{oid}", SPY,
                        {"action": "BUY", "quantity": "1", "order_type": "LMT", "lmt_price": "1"},
                        client=r,
                    )  # fmt: skip
                wait(lambda: all(o in arrivals for o in burst_ids), 120, "burst at the venue")
                burst = [arrivals[o] - burst_start for o in burst_ids]
                rows.append(summary(f"bridge: {n}-order burst, enqueue → venue (paced)", burst))
        finally:
            engine.dispose()
            stop(worker)
    cpu = platform.processor() or platform.machine()
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {cpu}")
    print(f"load avg: {os.getloadavg()}; python {platform.python_version()}")
    print("| measurement | n | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
