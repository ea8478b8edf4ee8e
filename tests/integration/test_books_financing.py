"""Borrow fees from a statement file (SQLite and PostgreSQL, real Redis): imported once per
line, split over the strategies short on the day to the cent, counted in each position's and
strategy's financing and net (views, mark tick, `epm pnl`); a bad file refused whole."""

from __future__ import annotations

import json
import os
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
from sqlalchemy.engine import Engine

from epm.settings import get_settings
from models.financing import FinancingFileError
from services.books.financing import import_financing
from services.books.views import GroupBy, pnl_view
from services.ledger import process_callback
from store.db import write_transaction
from store.orders import create_order
from store.schema import financing_charges
from tasks.app import Stores
from tasks.pnl import run_mark

D = Decimal
SPY, QQQ = 756733, 320227571
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "financing"
DEC2 = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
DEC3 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


_seq = iter(range(1, 10_000))


def execute(
    engine: Engine, strategy: str, con_id: int, side: str, qty: str, price: str, at: datetime
) -> None:
    n = next(_seq)
    coid = f"{strategy}-{n}"
    with write_transaction(engine) as conn:
        create_order(
            conn,
            {"client_order_id": coid, "client_id": 1, "strategy": strategy, "state": "PLACED"},
            at,
        )
    exec_id = f"0000f1a2.{n:08x}.01.01"
    symbol = "SPY" if con_id == SPY else "QQQ"
    for kind, payload in (
        (
            "execution",
            {
                "exec_id": exec_id,
                "order_id": 300 + n,
                "client_id": 1,
                "perm_id": 7000 + n,
                "order_ref": coid,
                "con_id": con_id,
                "symbol": symbol,
                "sec_type": "STK",
                "side": side,
                "shares": qty,
                "price": price,
                "account": "DU1",
                "time": at.isoformat(),
                "received_at": at.isoformat(),
            },
        ),
        ("commission", {"exec_id": exec_id, "commission": "1.00", "received_at": at.isoformat()}),
    ):
        process_callback(kind, payload, engine=engine, redis_client=None, now=at)


def seed(engine: Engine) -> None:
    process_callback(
        "contract",
        {"con_id": SPY, "symbol": "SPY", "sec_type": "STK", "received_at": DEC2.isoformat()},
        engine=engine,
        redis_client=None,
        now=DEC2,
    )
    execute(engine, "A", SPY, "SELL", "300", "455", DEC2)
    execute(engine, "B", SPY, "SELL", "100", "455", DEC2)
    execute(engine, "C", SPY, "BUY", "200", "455", DEC2)
    execute(engine, "Pairs", QQQ, "SELL", "50", "500", DEC2)
    execute(engine, "B", SPY, "BUY", "100", "450", DEC3)  # B covers on the 3rd


def charges(engine: Engine) -> list[tuple[str, int, str | None, Decimal]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(financing_charges)).all()
    return sorted((r.charge_key, r.con_id, r.strategy_id, r.amount) for r in rows)


def test_import_splits_to_the_cent_counts_in_net_and_runs_once(
    engine: Engine, r: redis.Redis
) -> None:
    seed(engine)
    text = (FIXTURES / "borrow_fees.csv").read_text()
    result = import_financing(engine, text, NOW)
    assert (result.lines, result.imported, result.skipped, result.unallocated) == (3, 3, [], [])
    assert charges(engine) == [
        (f"borrow_fee:DU1:{QQQ}:2026-12-02:Pairs", QQQ, "Pairs", D("2.10")),
        (f"borrow_fee:DU1:{SPY}:2026-12-02:A", SPY, "A", D("9.27")),
        (f"borrow_fee:DU1:{SPY}:2026-12-02:B", SPY, "B", D("3.08")),
        (f"borrow_fee:DU1:{SPY}:2026-12-03:A", SPY, "A", D("12.35")),
    ]

    with engine.connect() as conn:
        by_strategy = {row["strategy"]: row for row in pnl_view(conn, GroupBy.STRATEGY)}
    assert by_strategy["A"]["financing"] == "21.62"
    assert by_strategy["B"]["financing"] == "3.08"
    assert by_strategy["C"]["financing"] == "0.00"
    assert by_strategy["Pairs"]["financing"] == "2.10"
    # B: realized (455 - 450) x 100 = 500, fees 2.00, financing 3.08, flat.
    assert (by_strategy["B"]["realized"], by_strategy["B"]["net"]) == ("500.00", "494.92")

    r.hset(f"md:{SPY}", mapping={"bid": "454", "ask": "454", "ts": NOW.isoformat()})
    run_mark(Stores(get_settings(), engine, r, NOW))
    # A short 300 @ 455 marked 454: +300 unrealized, -1.00 fees, -21.62 financing.
    assert r.hget("pl:strategy:A", "financing") == "21.62"
    assert r.hget("pl:strategy:A", "net") == "277.38"

    again = import_financing(engine, text, NOW + timedelta(hours=1))
    assert (again.imported, again.skipped, again.conflicts) == (0, [2, 3, 4], [])
    changed = text.replace("2026-12-02,SPY,,-400,0.0125,12.35", "2026-12-02,SPY,,-400,0.0125,12.40")
    conflict = import_financing(engine, changed, NOW + timedelta(hours=2))
    assert conflict.conflicts == ["line 2: stored 12.35, the file says 12.4 (kept as stored)"]
    assert len(charges(engine)) == 4


def test_a_bad_file_is_refused_whole_naming_every_bad_line(engine: Engine) -> None:
    seed(engine)
    with pytest.raises(FinancingFileError) as bad:
        import_financing(engine, (FIXTURES / "bad_lines.csv").read_text(), NOW)
    assert bad.value.problems == [
        "line 3: date '2026-13-02' is not YYYY-MM-DD",
        "line 4: rate '1.2.5' is not a number",
        "line 5: neither symbol nor conid",
        "line 6: the same charge as line 2",
    ]
    with pytest.raises(FinancingFileError, match="missing column"):
        import_financing(engine, (FIXTURES / "no_fee_column.csv").read_text(), NOW)
    with pytest.raises(FinancingFileError, match="no contract known for symbol 'XYZ'"):
        import_financing(engine, "date,symbol,quantity,rate,fee\n2026-12-02,XYZ,-1,0.1,1\n", NOW)
    assert charges(engine) == []


def test_a_line_nobody_was_short_on_is_stored_unallocated(engine: Engine) -> None:
    seed(engine)
    text = "date,conid,quantity,rate,fee\n2026-12-01,756733,-10,0.02,0.50\n"  # before any trade
    result = import_financing(engine, text, NOW)
    assert result.unallocated == [2]
    assert charges(engine) == [(f"borrow_fee::{SPY}:2026-12-01:", SPY, None, D("0.50"))]


def test_epm_books_import_financing_and_pnl_as_an_operator_runs_them(
    sqlite_url: str, tmp_path: Path
) -> None:
    from store.db import make_engine
    from store.migrate import upgrade

    upgrade(sqlite_url)
    seed(make_engine(sqlite_url))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_DATABASE_URL": sqlite_url,
        "EPM_DATA_DIR": str(tmp_path / "cli-data"),
        "COLUMNS": "200",  # the table's every column, unabridged
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "epm", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad = run("books", "import-financing", str(FIXTURES / "bad_lines.csv"))
    assert bad.returncode == 2
    assert "refused, nothing imported" in bad.stderr and "line 4: rate '1.2.5'" in bad.stderr
    done = run("books", "import-financing", str(FIXTURES / "borrow_fees.csv"), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    outcome: dict[str, Any] = json.loads(done.stdout)
    assert outcome["imported_lines"] == 3 and len(outcome["charges"]) == 4
    pnl = run("pnl", "--by", "strategy", "--json")
    assert pnl.returncode == 0, pnl.stderr[-2000:]
    rows = {row["strategy"]: row for row in json.loads(pnl.stdout)}
    assert (rows["A"]["financing"], rows["B"]["net"]) == ("21.62", "494.92")
    table = run("pnl", "--by", "strategy")
    assert "financing" in table.stdout and "21.62" in table.stdout
