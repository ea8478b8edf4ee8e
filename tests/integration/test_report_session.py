"""Acceptance (issue 14 item 8): the report of a simulated session matches the ledger and renders
with its charts. A seeded session of market orders in two strategies goes through the simulator
(`--exec-log`), a real bridge, a real `ledger` worker and PostgreSQL; two mark ticks snapshot the
books; `epm report --day` runs as a real process. Its fills, shares, commissions and realized P&L
by strategy must equal what the simulator's execution log alone says, and its P&L curve must
draw one line per strategy in headless Chromium."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from epm.calendar import trading_day
from ibgateway_bridge import client_api
from store.db import dispose_engines, make_engine, write_transaction
from store.migrate import upgrade
from store.orders import create_order
from store.schema import commissions, fills
from tasks.pnl import run_mark
from tests.bridge.harness import REPO, SPY_CON, bridge_in_process, poll, sim_thread, wait_ready
from tests.bridge.test_books_oracle import close, oracle_when_complete
from tests.bridge.test_ledger_e2e import ledger_worker
from tests.integration.conftest import wipe
from tests.integration.test_books import quote, stores
from tests.integration.test_report import _PROBE, _Probe

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

D = Decimal
SPY = {"con_id": SPY_CON, "symbol": "SPY", "sec_type": "STK"}
STRATEGIES = ("Momentum_EQ", "MeanRev_EQ")


@pytest.fixture
def session_db(pg_url: str) -> Iterator[str]:
    upgrade(pg_url)
    wipe(make_engine(pg_url))
    yield pg_url
    wipe(make_engine(pg_url))
    dispose_engines()


def _log_complete(log: Path, qty_of: dict[int, Decimal]) -> bool:
    """Every order's executions (latest versions) add up to its quantity, each with its
    commission."""
    if not log.exists():
        return False
    execs: dict[str, dict[str, Any]] = {}
    fees: set[str] = set()
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "commission":
            fees.add(rec["execId"])
        else:
            execs[rec["execId"].rpartition(".")[0]] = rec  # a correction replaces its base
    filled: dict[int, Decimal] = {}
    for rec in execs.values():
        if rec["execId"] not in fees:
            return False
        filled[int(rec["orderId"])] = filled.get(int(rec["orderId"]), D(0)) + D(rec["shares"])
    return filled == qty_of


def _effective_from_log(log: Path) -> tuple[int, Decimal, Decimal]:
    """Executions in effect (the latest version of each), their shares and commissions."""
    execs: dict[str, dict[str, Any]] = {}
    fees: dict[str, Decimal] = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "commission":
            fees[rec["execId"]] = D(rec["commission"])
        else:
            execs[rec["execId"]] = rec
    latest: dict[str, str] = {}
    for exec_id in sorted(execs):
        base, _, _seq = exec_id.rpartition(".")
        latest[base] = exec_id  # sorted: a higher sequence replaces the one it corrects
    shares = sum((D(str(execs[e]["shares"])) for e in latest.values()), D(0))
    commission = sum((fees.get(e, D(0)) for e in latest.values()), D(0))
    return len(latest), shares, commission


def test_the_report_of_a_simulated_session_matches_the_exec_log_and_draws(
    redis_url: str, session_db: str, tmp_path: Path
) -> None:
    rng = random.Random(20261203)
    log = tmp_path / "exec.jsonl"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.flushdb()
    engine = make_engine(session_db)
    strategy_of: dict[int, str] = {}
    qty_of: dict[int, Decimal] = {}
    held = dict.fromkeys(STRATEGIES, 0)
    now = datetime.now(UTC)
    with (
        sim_thread(exec_log=log) as sim,
        bridge_in_process(redis_url, sim.port),
        ledger_worker(redis_url, session_db, tmp_path / "worker.log"),
    ):
        wait_ready(r)
        for n in range(12):
            strategy = STRATEGIES[n % 2]
            qty = rng.choice([10, 25, 50])
            action = "SELL" if rng.random() < 0.4 else "BUY"
            oid = client_api.allocate_order_id(r)
            ref = f"report-{n}-{oid}"
            with write_transaction(engine) as conn:
                create_order(
                    conn,
                    {
                        "client_order_id": ref,
                        "client_id": 1,
                        "ib_order_id": oid,
                        "strategy": strategy,
                        "con_id": SPY_CON,
                        "symbol": "SPY",
                        "sec_type": "STK",
                        "action": action,
                        "quantity": D(qty),
                        "order_type": "MKT",
                        "state": "PLACED",
                    },
                    now,
                )
            strategy_of[oid] = strategy
            qty_of[oid] = D(qty)
            held[strategy] += qty if action == "BUY" else -qty
            order = {"action": action, "quantity": str(qty), "order_type": "MKT"}
            client_api.enqueue_place(oid, ref, SPY, order, client=r)
        poll(lambda: _log_complete(log, qty_of), 120, what="every order filled in the exec log")
        expected = oracle_when_complete(log, strategy_of, held)
        count, shares, commission = _effective_from_log(log)

        def recorded() -> bool:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(fills)
                    .where(fills.c.superseded_by.is_(None))
                ).scalar_one()
            return int(rows) == count

        # Generous bounds: a worker starting on a loaded machine can take a while.
        poll(recorded, 120, what="every fill in the ledger")
        poll(lambda: _commissions_in(engine) == commission, 120, what="every commission")
    # Two mark ticks a minute apart: the P&L curve has something to draw.
    for minutes, bid in ((1, "500.00"), (2, "501.00")):
        at = datetime.now(UTC) + timedelta(minutes=minutes)
        quote(r, SPY_CON, bid, str(D(bid) + D("0.02")), at)
        run_mark(stores(engine, r, at))
    with engine.connect() as conn:
        executed = [row[0] for row in conn.execute(sa.select(fills.c.executed_at))]
    days = {trading_day(t) for t in executed}
    assert len(days) == 1, days
    day = days.pop()
    out = tmp_path / "reports"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_DATABASE_URL": session_db,
        "EPM_REDIS_URL": redis_url,
        "EPM_DATA_DIR": str(tmp_path / "cli-data"),
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-m", "epm", "report", "--day", day.isoformat(), "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    folder = out / day.isoformat()
    assert done.stdout.splitlines()[0] == str(folder / "report.html")
    summary = json.loads((folder / "manifest.json").read_text())["summary"]
    assert (int(summary["fills"]), D(summary["filled_shares"])) == (count, shares)
    assert D(summary["commissions"]) == commission
    assert int(summary["orders"]) == 12
    with (folder / "pnl_by_strategy.csv").open() as f:
        by_strategy = {row["strategy"]: row for row in csv.DictReader(f)}
    assert set(by_strategy) == set(STRATEGIES)
    for strategy, book in expected.items():
        assert close(D(by_strategy[strategy]["realized"]), book["realized"])
        assert close(D(by_strategy[strategy]["fees"]), book["fees"])

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (scripts/test-tools.sh installs it as root)")
    probed = tmp_path / "probed.html"
    page = (folder / "report.html").read_text()
    probed.write_text(page.replace("</body>", _PROBE + "</body>"))
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    parser = _Probe()
    parser.feed(dom)
    charts = json.loads(parser.text)
    curves = charts["chart-pnl"]["marks"]
    assert sorted(m["strategy"] for m in curves) == sorted(STRATEGIES)
    assert all(m["w"] > 0 for m in curves)
    assert parser.ids["sum-fills"] == str(count)


def _commissions_in(engine: Any) -> Decimal:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(commissions.c.commission)
            .select_from(
                commissions.join(fills, fills.c.execution_id == commissions.c.execution_id)
            )
            .where(fills.c.superseded_by.is_(None))
        ).all()
    return sum((row[0] for row in rows), D(0))
