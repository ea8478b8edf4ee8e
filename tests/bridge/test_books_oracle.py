"""Acceptance (issue 12): an independent oracle. A seeded random session of buys, sells, shorts,
covers and partial closes in three strategies goes through the simulator (`--exec-log`), a real
bridge, a real `ledger` worker and PostgreSQL; the figures are then computed from the simulator's
execution log ONLY, by the deliberately simple average-cost arithmetic below, and must equal
`epm positions --json` and `epm pnl --by strategy --json` to the cent."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from ibgateway_bridge import client_api
from store.db import dispose_engines, make_engine, write_transaction
from store.migrate import upgrade
from store.orders import create_order
from tests.bridge.harness import REPO, SPY_CON, bridge_in_process, poll, sim_thread, wait_ready
from tests.bridge.test_ledger_e2e import ledger_worker
from tests.integration.conftest import wipe

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

D = Decimal
CENT = D("0.01")
SPY = {"con_id": SPY_CON, "symbol": "SPY", "sec_type": "STK"}
STRATEGIES = ("Momentum_EQ", "MeanRev_EQ", "Pairs_EQ")


@pytest.fixture
def books_db(pg_url: str) -> Iterator[str]:
    upgrade(pg_url)
    wipe(make_engine(pg_url))
    yield pg_url
    wipe(make_engine(pg_url))
    dispose_engines()


def oracle(log: Path, strategy_of: dict[int, str]) -> dict[str, dict[str, Decimal]]:
    """Per strategy from the exec log alone: the latest version of each execution (corrections
    replace), in time order, by average cost; fees from the commission lines."""
    execs: dict[str, dict[str, Any]] = {}
    fees: dict[str, Decimal] = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "commission":
            fees[rec["execId"]] = D(rec["commission"])
        else:
            execs[rec["execId"]] = rec
    latest: dict[str, dict[str, Any]] = {}
    for exec_id, rec in execs.items():
        base, seq = exec_id.rsplit(".", 1)
        if base not in latest or int(latest[base]["execId"].rsplit(".", 1)[1], 16) < int(seq, 16):
            latest[base] = rec
    out: dict[str, dict[str, Decimal]] = {}
    for rec in sorted(latest.values(), key=lambda r: (r["time"], r["execId"])):
        book = out.setdefault(
            strategy_of[rec["orderId"]],
            {"quantity": D(0), "cost": D(0), "realized": D(0), "fees": D(0)},
        )
        qty = D(rec["shares"]) * (1 if rec["side"] in ("BOT", "BUY") else -1)
        price = D(rec["price"])
        book["fees"] += fees.get(rec["execId"], D(0))
        held = book["quantity"]
        if held == 0 or (held > 0) == (qty > 0):
            book["cost"] += qty * price
            book["quantity"] += qty
            continue
        avg = book["cost"] / held
        closed = min(abs(qty), abs(held)) * (1 if qty > 0 else -1)  # signed like qty
        book["realized"] += -closed * (price - avg)
        book["quantity"] += closed
        book["cost"] = book["quantity"] * avg
        rest = qty - closed
        if rest != 0:
            book["quantity"], book["cost"] = rest, rest * price
    return out


def epm(db_url: str, tmp: Path, *args: str) -> Any:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_DATABASE_URL": db_url,
        "EPM_DATA_DIR": str(tmp / "cli-data"),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "epm", *args, "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_epm_books_equal_an_oracle_computed_from_the_exec_log(
    redis_url: str, books_db: str, tmp_path: Path
) -> None:
    rng = random.Random(20261204)
    log = tmp_path / "exec.jsonl"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.flushdb()
    engine = make_engine(books_db)
    strategy_of: dict[int, str] = {}
    held = dict.fromkeys(STRATEGIES, 0)
    now = datetime.now(UTC)
    with (
        sim_thread(exec_log=log) as sim,
        bridge_in_process(redis_url, sim.port),
        ledger_worker(redis_url, books_db, tmp_path / "worker.log"),
    ):
        wait_ready(r)
        for n in range(30):
            strategy = rng.choice(STRATEGIES)
            qty = rng.choice([10, 25, 50, 100, 150])
            # Shorts and covers as well as longs: a sell may take the position through zero.
            # Pairs_EQ leans short, so shorts and covers happen as well as longs.
            sell_odds = 0.7 if strategy == "Pairs_EQ" else 0.45
            action = "SELL" if rng.random() < sell_odds else "BUY"
            oid = client_api.allocate_order_id(r)
            ref = f"books-{n}-{oid}"
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
            held[strategy] += qty if action == "BUY" else -qty
            order = {"action": action, "quantity": str(qty), "order_type": "MKT"}
            client_api.enqueue_place(oid, ref, SPY, order, client=r)
        expected = oracle_when_complete(log, strategy_of, held)
        poll(lambda: _ledger_matches(books_db, tmp_path, expected), 40, what="the ledger")
    positions = {p["strategy"]: p for p in epm(books_db, tmp_path, "positions")}
    strategies = {p["strategy"]: p for p in epm(books_db, tmp_path, "pnl", "--by", "strategy")}
    assert set(positions) == set(expected) == set(STRATEGIES)
    # The seeded session is the one meant: closes realized something, and something is short.
    assert all(book["realized"] != 0 for book in expected.values())
    assert any(book["quantity"] < 0 for book in expected.values())
    for strategy, book in expected.items():
        pos = positions[strategy]
        assert D(pos["quantity"]) == book["quantity"]
        if book["quantity"] != 0:
            assert close(D(pos["avg_cost"]), book["cost"] / book["quantity"])
        assert close(D(pos["realized"]), book["realized"])
        assert close(D(pos["fees"]), book["fees"])
        net = book["realized"] - book["fees"]  # unmarked: no quote was subscribed
        assert close(D(pos["net"]), net)
        assert close(D(strategies[strategy]["net"]), net)


def close(ours: Decimal, oracle_value: Decimal) -> bool:
    """Equal well inside a cent: the ledger keeps averages to 10 places, the oracle exactly, so
    a figure on a half-cent boundary may round either way while being the same money."""
    return abs(ours - oracle_value) < D("0.000001")


def oracle_when_complete(
    log: Path, strategy_of: dict[int, str], held: dict[str, int]
) -> dict[str, dict[str, Decimal]]:
    """The oracle once the log holds every fill and commission the session asked for."""
    found: dict[str, dict[str, Decimal]] = {}

    def complete() -> bool:
        if not log.exists():
            return False
        lines = [json.loads(x) for x in log.read_text().splitlines()]
        execs = {x["execId"] for x in lines if x["type"] != "commission"}
        fees = {x["execId"] for x in lines if x["type"] == "commission"}
        if not execs or execs - fees:
            return False
        found.clear()
        found.update(oracle(log, strategy_of))
        return all(
            found.get(s, {"quantity": D(0)})["quantity"] == q for s, q in held.items() if q != 0
        )

    poll(complete, 40, what="every fill in the exec log")
    return found


def _ledger_matches(db_url: str, tmp: Path, expected: dict[str, dict[str, Decimal]]) -> bool:
    rows = {p["strategy"]: p for p in epm(db_url, tmp, "positions")}
    return all(
        s in rows
        and D(rows[s]["quantity"]) == b["quantity"]
        and close(D(rows[s]["fees"]), b["fees"])
        for s, b in expected.items()
    )
