"""How long an executions reconciliation of 10,000 orders takes (issue 12 item 8 bench).

The ledger holds N orders with one fill each (bulk-inserted); the venue's answer is the same N
executions as the bridge hands them over. Measured, each the median of `--repeat` runs:

- `reconcile_executions` whole, everything matched (the every-5-minutes case): load the
  ledger's execIds and fills in effect, `models.recon.compare_executions`, write the
  `recon_runs` row; its parts timed alone beside it (load, compare, write);
- the same with `--missing` fills deleted from the ledger first, so the run recovers them
  through the ledger's live write path (ingestion is per fill, reported per fill);
- the snapshot's trip through Redis: the bridge storing N answers (`SnapshotRequests`, held
  until the end, then one pipeline) and the worker reading them
  (`client_api.read_snapshot`).

On PostgreSQL (a database of its own from `tests.services`) and SQLite (a temp file).
Run: `.venv/bin/python bench/recon.py [--orders 10000] [--missing 100] [--repeat 5]`.
Aim (issue 12): 10,000 orders reconciled in under 1 s (comparison + write).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import record
from ibgateway_bridge.client_api import read_snapshot
from ibgateway_bridge.snapshots import SnapshotRequests
from models.recon import ReconStatus, compare_executions
from services.recon.executions import reconcile_executions, save_run
from store import recon_runs
from store.db import dispose_engines, make_engine, write_transaction
from store.migrate import upgrade
from store.schema import execution_orders, fills, metadata
from tests.services import postgres_database, redis_database

T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
DAY = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)
CON = 756733


def exec_id(n: int) -> str:
    return f"0000e0d5.{n:08x}.01.01"


def payload(n: int) -> dict[str, Any]:
    at = (T0 + timedelta(milliseconds=n)).isoformat()
    return {
        "exec_id": exec_id(n),
        "req_id": 1_000_000_001,
        "ib_order_id": n + 1,
        "client_id": 1,
        "perm_id": 900_000 + n,
        "order_ref": f"B-{n}",
        "con_id": CON,
        "symbol": "SPY",
        "sec_type": "STK",
        "side": "BOT" if n % 2 == 0 else "SLD",
        "shares": "100",
        "price": "450.25",
        "cum_qty": "100",
        "avg_price": "450.25",
        "account": "DU1",
        "time": at,
        "received_at": at,
    }


def seed(engine: sa.Engine, n: int) -> None:
    with write_transaction(engine) as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
        conn.execute(
            execution_orders.insert(),
            [
                {
                    "client_order_id": f"B-{i}",
                    "client_id": 1,
                    "ib_order_id": i + 1,
                    "perm_id": 900_000 + i,
                    "strategy": "Momentum_EQ",
                    "con_id": CON,
                    "symbol": "SPY",
                    "sec_type": "STK",
                    "action": "BUY" if i % 2 == 0 else "SELL",
                    "quantity": Decimal(100),
                    "state": "FILLED",
                    "filled_qty": Decimal(100),
                    "created_at": T0,
                    "updated_at": T0,
                    "version": 1,
                }
                for i in range(n)
            ],
        )
        ids = dict(
            conn.execute(sa.select(execution_orders.c.client_order_id, execution_orders.c.id)).all()
        )
        conn.execute(
            fills.insert(),
            [
                {
                    "execution_id": exec_id(i),
                    "exec_base": exec_id(i).rsplit(".", 1)[0],
                    "exec_seq": 1,
                    "order_id": ids[f"B-{i}"],
                    "order_ref": f"B-{i}",
                    "ib_order_id": i + 1,
                    "client_id": 1,
                    "perm_id": 900_000 + i,
                    "con_id": CON,
                    "symbol": "SPY",
                    "sec_type": "STK",
                    "strategy": "Momentum_EQ",
                    "side": "BUY" if i % 2 == 0 else "SELL",
                    "shares": Decimal(100),
                    "price": Decimal("450.25"),
                    "executed_at": T0 + timedelta(milliseconds=i),
                    "received_at": T0 + timedelta(milliseconds=i),
                }
                for i in range(n)
            ],
        )


class Venue:
    def __init__(self, answer: list[dict[str, Any]]) -> None:
        self.answer = answer

    def executions(self, since: datetime) -> list[dict[str, Any]]:
        return self.answer

    def positions(self) -> list[dict[str, Any]]:
        return []


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.0f} ms (min {min(samples) * 1000:.0f})"


def bench_store(name: str, url: str, n: int, missing: int, repeat: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    seed(engine, n)
    answer = [payload(i) for i in range(n)]
    venue = Venue(answer)
    ids = [p["exec_id"] for p in answer]
    asked = T0 + timedelta(hours=1)

    def whole() -> None:
        result = reconcile_executions(engine, venue, None, since=DAY, clock=lambda: asked)
        assert result.status is ReconStatus.OK and result.checked == n, result

    loads, compares, writes = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        with engine.connect() as conn:
            held = recon_runs.held_exec_ids(conn, ids)
            effective = recon_runs.effective_fills(conn, since=DAY, received_before=asked)
        loads.append(time.perf_counter() - start)
        compares.append(timed(lambda h=held, e=effective: compare_executions(ids, h, e)))
        writes.append(
            timed(
                lambda: save_run(
                    engine,
                    kind="executions",
                    status=ReconStatus.OK,
                    started_at=asked,
                    finished_at=asked,
                    checked=n,
                    recovered=0,
                    differences=[],
                    details={"since": DAY.isoformat()},
                    events=[],
                )
            )
        )
    wholes = [timed(whole) for _ in range(repeat)]
    record("recon", f"reconcile_executions, {n:,} orders all matched ({name}), median",
           statistics.median(wholes) * 1000, "ms", n=repeat, aim=1000.0)  # fmt: skip
    print(f"{name}: {n:,} orders, all matched: reconcile_executions {median_ms(wholes)}")
    print(
        f"  parts: load {median_ms(loads)}, compare {median_ms(compares)}, "
        f"write {median_ms(writes)}"
    )
    with write_transaction(engine) as conn:
        conn.execute(fills.delete().where(fills.c.execution_id.in_(ids[:missing])))
    start = time.perf_counter()
    result = reconcile_executions(
        engine, venue, None, since=DAY, clock=lambda: datetime.now(UTC) + timedelta(days=1)
    )
    took = time.perf_counter() - start
    assert result.recovered == missing, result
    print(
        f"  {missing} missing: recovered in {took * 1000:.0f} ms "
        f"({took / missing * 1000:.1f} ms per fill, ledger write path included)"
    )
    dispose_engines()


def bench_snapshot(redis_url: str, n: int, repeat: int) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    stores, reads = [], []
    for k in range(repeat):
        snaps = SnapshotRequests(client)
        request_id = f"bench-{os.getpid()}-{k}"
        snaps.register(7, request_id, "executions")
        items = [payload(i) for i in range(n)]
        start = time.perf_counter()
        for item in items:
            snaps.on_message("snapshot_execution", {**item, "req_id": 7})
        snaps.on_message("exec_details_end", {"req_id": 7})
        stores.append(time.perf_counter() - start)
        start = time.perf_counter()
        got = read_snapshot(request_id, 5, client=client)
        reads.append(time.perf_counter() - start)
        assert got is not None and len(got) == n
    print(
        f"snapshot through Redis, {n:,} executions: bridge stores {median_ms(stores)}, "
        f"worker reads {median_ms(reads)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--missing", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.processor() or '?'}"
        f", {os.cpu_count()} CPUs, Python {platform.python_version()}, load "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with postgres_database() as pg_url, redis_database() as redis_url:
        bench_store("PostgreSQL", pg_url, args.orders, args.missing, args.repeat)
        with tempfile.TemporaryDirectory() as tmp:
            bench_store(
                "SQLite", f"sqlite:///{tmp}/ledger.db", args.orders, args.missing, args.repeat
            )
        bench_snapshot(redis_url, args.orders, args.repeat)


if __name__ == "__main__":
    main()
