"""Fill commit (issue 12 item 2): execDetails → fill committed, and fills/s through the ledger.

Two modes, each beside the references it is judged against, measured in the same run:

- `latency`: the simulator (in-process, own thread), the bridge (in-process: lease, IB sessions,
  pacer, outbox) and a real `celery worker -Q ledger -c 2` (prefork, as in the Procfile) on a
  fresh PostgreSQL database. One MKT order at a time; the figure is the bridge's receive time of
  execDetails (`fills.received_at`, stamped by the wrapper on receipt) until the `fills` row is
  visible to a poller querying every 2 ms (so it is high by up to ~2 ms). Beside it: a bare
  Celery task round trip (a no-op task on a worker of its own, `.apply_async().get()` through the
  same Redis broker) and a Redis PING.
- `throughput`: N executions (the bridge's payloads, several fills per order over many
  positions, ref-less so the ledger opens each order from its first execution) sent as
  `tasks.ledger.record_batch` messages of `--batch` callbacks each to the `ledger` queue, the
  way the outbox sends a burst, with every `--dup-every`-th message sent twice (at-least-once
  delivery). Two ledger worker processes do the writing; the clock runs from the first send
  until N distinct fills are committed. Exactly once is then checked by counting rows (fills,
  distinct execIds, commissions) and comparing each position's quantity with the signed sum of
  its fills. Beside it: a raw `COPY` of the same fill rows into a copy of the `fills` table in
  the same database (the floor PostgreSQL itself sets).

Needs the machine's PostgreSQL and Redis (a fresh database and a leased Redis db number, the
tests' way). Run: `.venv/bin/python bench/fill_commit.py latency [--orders N]` and
`.venv/bin/python bench/fill_commit.py throughput [--fills N] [--batch B]`.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bridge_latency import (  # noqa: E402
    bench_celery,
    bench_redis,
    pct,
    spawn_worker,
    stop,
    summary,
    wait,
)
from bench.results import record  # noqa: E402
from ibgateway_bridge import client_api, payloads  # noqa: E402
from ibgateway_bridge.runtime import BridgeConfig  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from tests.bridge.harness import bridge_in_process, sim_thread, wait_ready  # noqa: E402
from tests.services import postgres_database, redis_database  # noqa: E402

SPY = {"con_id": 756733, "symbol": "SPY", "sec_type": "STK"}


@contextmanager
def stores() -> Iterator[tuple[str, str, dict[str, str], Path]]:
    """A fresh database and Redis db, and the environment workers run with."""
    log_dir = Path(tempfile.mkdtemp(prefix="bench-fill-"))
    with redis_database() as redis_url, postgres_database() as db_url:
        upgrade(db_url)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
            "EPM_REDIS_URL": redis_url,
            "EPM_DATABASE_URL": db_url,
            "EPM_DATA_DIR": str(log_dir / "data"),
            "PYTHONPATH": str(REPO),
        }
        yield redis_url, db_url, env, log_dir


def latency(n: int) -> list[str]:
    """The latency table's rows: PING, bare Celery, execDetails received → fill committed."""
    with stores() as (redis_url, db_url, env, log_dir):
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        rows = [summary("Redis PING round trip", bench_redis(r, 2000))]
        bare = bench_celery(redis_url, n, log_dir, env)
        rows.append(summary("Celery no-op task round trip", bare))
        worker = spawn_worker("tasks.app", "ledger", env, log_dir / "ledger.log")
        engine = sa.create_engine(db_url)
        try:
            with (
                sim_thread() as sim,
                bridge_in_process(redis_url, sim.port, config=BridgeConfig(send_extra_tasks=True)),
            ):
                wait_ready(r)
                to_commit: list[float] = []
                for _ in range(n):
                    oid = client_api.allocate_order_id(r)
                    client_api.enqueue_place(
                        oid, f"bench-{oid}", SPY,
                        {"action": "BUY", "quantity": "1", "order_type": "MKT"}, client=r,
                    )  # fmt: skip

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
                rows.append(summary("execDetails received → fill committed", to_commit))
                bare_p50 = pct([s * 1000 for s in bare], 0.5)
                for q, name in ((0.5, "p50"), (0.99, "p99")):
                    record(
                        "fill_commit",
                        f"execDetails received → fill committed, {name}",
                        pct([s * 1000 for s in to_commit], q),
                        "ms",
                        n=len(to_commit),
                        reference=bare_p50,
                        reference_label="Celery no-op round trip p50",
                        aim=2 * bare_p50 if name == "p50" else None,
                    )
        finally:
            engine.dispose()
            stop(worker)
    return rows


def execution_payloads(n: int, per_order: int, positions: int) -> list[dict[str, Any]]:
    """N executions as the bridge sends them: `per_order` fills per order, over `positions`
    contracts, buys and sells, ref-less (the ledger opens each order from its first fill)."""
    base = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
    out = []
    for i in range(n):
        order = i // per_order
        con_id = 1_000_000 + order % positions
        side = "BOT" if order % 3 else "SLD"
        when = base + timedelta(microseconds=i)
        out.append(
            {
                "exec_id": f"0000e{order:07x}.{i:08x}.01.01",
                "req_id": -1,
                "ib_order_id": 10_000 + order,
                "client_id": 1,
                "perm_id": 500_000_000 + order,
                "con_id": con_id,
                "symbol": f"S{con_id % 1000:03d}",
                "sec_type": "STK",
                "currency": "USD",
                "exchange": "SMART",
                "side": side,
                "action": "BUY" if side == "BOT" else "SELL",
                "shares": "10",
                "price": str(Decimal("100.00") + Decimal(i % 97) / 100),
                "cum_qty": str(10 * (i % per_order + 1)),
                "avg_price": "100.00",
                "exec_exchange": "ARCA",
                "account": "DU1234567",
                "order_ref": None,
                "time": when.isoformat(),
                "received_at": when.isoformat(),
            }
        )
    return out


def copy_floor(db_url: str, items: list[dict[str, Any]]) -> float:
    """Seconds for a raw COPY of the same fill rows into a copy of `fills` (same database)."""
    import psycopg2

    buf = io.StringIO()
    for i, p in enumerate(items):
        key = p["exec_id"]
        fields = [
            key, key.rsplit(".", 1)[0], "1", str(i + 1), str(p["ib_order_id"]),
            str(p["client_id"]), str(p["perm_id"]), str(p["con_id"]), p["symbol"],
            p["sec_type"], "UNATTRIBUTED", "BUY" if p["side"] == "BOT" else "SELL",
            p["shares"], p["price"], p["cum_qty"], p["avg_price"], p["exec_exchange"],
            p["account"], p["time"], p["received_at"],
        ]  # fmt: skip
        buf.write("\t".join(fields) + "\n")
    columns = (
        "execution_id, exec_base, exec_seq, order_id, ib_order_id, client_id, perm_id, con_id,"
        " symbol, sec_type, strategy, side, shares, price, cum_qty, avg_price, exchange,"
        " account, executed_at, received_at"
    )
    conn = psycopg2.connect(db_url.replace("postgresql+psycopg2://", "postgresql://", 1))
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE fills_copy (LIKE fills INCLUDING DEFAULTS INCLUDING INDEXES)")
            conn.commit()
            buf.seek(0)
            started = time.perf_counter()
            cur.copy_expert(f"COPY fills_copy ({columns}) FROM STDIN", buf)
            conn.commit()
            return time.perf_counter() - started
    finally:
        conn.close()


def throughput(n: int, batch: int, per_order: int, positions: int, dup_every: int) -> list[str]:
    """The throughput table's rows: ledger fills/s (exactly once checked) and the COPY floor."""
    items = execution_payloads(n, per_order, positions)
    with stores() as (redis_url, db_url, env, log_dir):
        from tasks.app import celery_app

        celery_app.conf.broker_url = redis_url
        worker = spawn_worker("tasks.app", "ledger", env, log_dir / "ledger.log")
        engine = sa.create_engine(db_url)

        def count() -> int:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM fills")).scalar_one())

        try:
            # Worker up and warm: one batch of its own, waited for, then the database emptied.
            warm = execution_payloads(1, 1, 1)[0] | {"exec_id": "warm.01.01", "con_id": 9}
            celery_app.send_task(
                payloads.TASK_RECORD_BATCH, args=[[{"kind": "execution", "payload": warm}]]
            )
            wait(lambda: count() == 1, 120, "worker up")
            with engine.begin() as conn:
                for table in ("positions_history", "positions_current", "commissions"):
                    conn.execute(sa.text(f"DELETE FROM {table}"))
                conn.execute(sa.text("DELETE FROM fills"))
                conn.execute(sa.text("DELETE FROM order_events"))
                conn.execute(sa.text("DELETE FROM execution_orders"))
            messages = [
                [{"kind": "execution", "payload": p} for p in items[i : i + batch]]
                for i in range(0, n, batch)
            ]
            started = time.perf_counter()
            with celery_app.producer_or_acquire() as producer:
                for k, msg in enumerate(messages):
                    celery_app.send_task(payloads.TASK_RECORD_BATCH, args=[msg], producer=producer)
                    if dup_every and k % dup_every == 0:
                        celery_app.send_task(
                            payloads.TASK_RECORD_BATCH, args=[msg], producer=producer
                        )
            sent = time.perf_counter() - started
            done = n
            deadline = time.monotonic() + 3600
            while count() < done and time.monotonic() < deadline:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            got = count()
            # Let the duplicates finish, then count what exactly-once means.
            r = redis.Redis.from_url(redis_url)
            wait(lambda: r.llen("ledger") == 0, 600, "queue drained")
            time.sleep(2)
            with engine.connect() as conn:
                fills_n, distinct_n = conn.execute(
                    sa.text("SELECT count(*), count(DISTINCT execution_id) FROM fills")
                ).one()
                commissions_n = conn.execute(sa.text("SELECT count(*) FROM commissions")).scalar()
                bad_positions = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM positions_current p WHERE p.quantity <> ("
                        " SELECT coalesce(sum(CASE WHEN f.side = 'BUY' THEN f.shares"
                        " ELSE -f.shares END), 0) FROM fills f"
                        " WHERE f.con_id = p.con_id AND f.strategy = p.strategy_id)"
                    )
                ).scalar()
                positions_n = conn.execute(
                    sa.text("SELECT count(*) FROM positions_current")
                ).scalar()
        finally:
            engine.dispose()
            stop(worker)
        copy_s = copy_floor(db_url, items)
    dups = len(range(0, len(messages), dup_every)) if dup_every else 0
    record(
        "fill_commit",
        "fills committed per second, 2 ledger workers",
        got / elapsed,
        "fills/s",
        n=got,
        reference=n / copy_s,
        reference_label="raw COPY of the same rows, rows/s",
        aim=20_000.0,
        better="higher",
    )
    return [
        f"fills: {n} in {len(messages)} record_batch messages of {batch} (+{dups} sent twice), "
        f"{per_order} per order, {positions} positions; sent in {sent:.2f} s",
        f"| ledger, 2 worker processes | {got} | {elapsed:.2f} | {got / elapsed:,.0f} |",
        f"| raw COPY of the same rows | {n} | {copy_s:.3f} | {n / copy_s:,.0f} |",
        f"exactly once: fills {fills_n}, distinct execIds {distinct_n}, commissions "
        f"{commissions_n}, positions {positions_n} "
        f"(quantity ≠ signed sum of fills: {bad_positions})",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--orders", type=int, default=200)
    thr = sub.add_parser("throughput")
    thr.add_argument("--fills", type=int, default=20_000)
    thr.add_argument("--batch", type=int, default=50, help="callbacks per record_batch message")
    thr.add_argument("--per-order", type=int, default=10)
    thr.add_argument("--positions", type=int, default=50)
    thr.add_argument("--dup-every", type=int, default=10, help="send every k-th message twice")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {cpu}; {os.cpu_count()} CPUs")
    print(f"load avg: {os.getloadavg()}; python {platform.python_version()}")
    if args.mode == "latency":
        print("| measurement | n | p50 ms | p99 ms | mean ms |")
        print("|---|---|---|---|---|")
        for row in latency(args.orders):
            print(row)
    else:
        rows = throughput(args.fills, args.batch, args.per_order, args.positions, args.dup_every)
        print(rows[0])
        print("| path | rows | seconds | rows/s |")
        print("|---|---|---|---|")
        for row in rows[1:]:
            print(row)
    print(f"load avg after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
