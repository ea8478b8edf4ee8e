"""Audit chain (issue 14 item 5): what chaining costs a writer, and how fast `verify` walks.

Measured on a fresh PostgreSQL database (the tests' way) and on a SQLite file, in the same run:

- `commit`: N transactions, each `write_transaction` + one `store.audit.insert_audit` (advisory
  lock, head read, sha256, insert), alternating with N transactions of a plain
  `INSERT INTO audit_log` (the unchained write before the chain), so both see the same load.
  Per-transaction medians and p95 (ms): the extra is what one audited decision or command pays.
- `contended`: W threads writing N/W rows each at once, plain then chained (PostgreSQL only):
  total rows/s; the chain stays one line (checked by `verify`).
- `verify`: `services.audit.verify_audit` over everything written, rows/s.

Run: `.venv/bin/python bench/audit_chain.py [--rows N] [--writers W]`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.audit import verify_audit
from store.audit import insert_audit
from store.db import make_engine, write_transaction
from store.migrate import upgrade
from store.schema import audit_log
from tests.services import postgres_database

DETAILS = {"reason": "bench", "quantity": "300", "lmt_price": "200.01", "ib_order_id": 101}


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"median {statistics.median(ordered) * 1000:.3f} ms, p95 {p95 * 1000:.3f} ms"


def _one(engine: sa.Engine, i: int, chained: bool) -> float:
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    with write_transaction(engine) as conn:
        if chained:
            insert_audit(
                conn, ts=now, actor="bench", action="order_place", target=f"o{i}", details=DETAILS
            )
        else:
            conn.execute(
                sa.insert(audit_log).values(
                    ts=now, actor="bench", action="order_place", target=f"o{i}", details=DETAILS
                )
            )
    return time.perf_counter() - t0


def _commit(engine: sa.Engine, n: int, chained: bool) -> list[float]:
    return [_one(engine, i, chained) for i in range(n)]


def _interleaved(engine: sa.Engine, n: int) -> tuple[list[float], list[float]]:
    """Plain and chained transactions alternately, so both see the same machine load."""
    plain: list[float] = []
    chained: list[float] = []
    for i in range(n):
        plain.append(_one(engine, i, chained=False))
        chained.append(_one(engine, i, chained=True))
    return plain, chained


def _wipe(engine: sa.Engine) -> None:
    with write_transaction(engine) as conn:
        conn.execute(audit_log.delete())


def _verify(engine: sa.Engine, label: str) -> None:
    t0 = time.perf_counter()
    report = verify_audit(engine)
    took = time.perf_counter() - t0
    assert report.ok, report.broken
    rows = report.chained + report.unchained
    print(f"{label} verify: {rows} rows in {took:.3f} s ({rows / took:,.0f} rows/s)")


def _run(url: str, label: str, rows: int, writers: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    _wipe(engine)
    plain, chained = _interleaved(engine, rows)
    print(f"{label} plain insert:   {_ms(plain)}")
    print(f"{label} chained insert: {_ms(chained)}")
    _wipe(engine)
    _commit(engine, rows, chained=True)
    _verify(engine, label)
    if engine.dialect.name != "postgresql":
        return
    per = rows // writers
    for chained_mode in (False, True):
        _wipe(engine)
        threads = [
            threading.Thread(target=_commit, args=(engine, per, chained_mode))
            for _ in range(writers)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - t0
        kind = "chained" if chained_mode else "plain"
        print(
            f"{label} contended {kind}: {writers} writers, {per * writers} rows in {took:.3f} s "
            f"({per * writers / took:,.0f} rows/s)"
        )
    _verify(engine, label)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    print(
        f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, rows={args.rows}"
    )
    with postgres_database() as url:
        _run(url, "postgresql", args.rows, args.writers)
    with tempfile.TemporaryDirectory() as tmp:
        _run(f"sqlite:///{tmp}/ledger.db", "sqlite", args.rows, args.writers)


if __name__ == "__main__":
    main()
