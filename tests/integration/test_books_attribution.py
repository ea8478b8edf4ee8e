"""End-of-day attribution (SQLite and PostgreSQL, real Redis): after each close the book as of
the close is split by signal FIFO within the strategy and written once to
`attribution/{day}.json`, marked at the close's mark, fills after the close left to the next
day; the day's change adds up; `epm pnl --by signal --day D` reads it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.engine import Engine

from epm.settings import get_settings
from services.ledger import process_callback
from tasks.app import Stores
from tasks.pnl import run_attribution, run_mark
from tests.integration.test_books import intent_order

SPY = 756733
CLOSE2 = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)  # Wednesday 16:00 ET
CLOSE3 = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


_seq = iter(range(1, 10_000))


def execute(engine: Engine, coid: str, side: str, qty: str, price: str, at: datetime) -> None:
    n = next(_seq)
    exec_id = f"0000a77b.{n:08x}.01.01"
    process_callback(
        "execution",
        {
            "exec_id": exec_id,
            "order_id": 500 + n,
            "client_id": 1,
            "perm_id": 5000 + n,
            "order_ref": coid,
            "con_id": SPY,
            "symbol": "SPY",
            "sec_type": "STK",
            "side": side,
            "shares": qty,
            "price": price,
            "account": "DU1",
            "time": at.isoformat(),
            "received_at": at.isoformat(),
        },
        engine=engine,
        redis_client=None,
        now=at,
    )
    process_callback(
        "commission",
        {"exec_id": exec_id, "commission": "1.00", "received_at": at.isoformat()},
        engine=engine,
        redis_client=None,
        now=at,
    )


def mark(engine: Engine, r: redis.Redis, price: str, at: datetime) -> None:
    r.hset(f"md:{SPY}", mapping={"bid": price, "ask": price, "ts": at.isoformat()})
    run_mark(Stores(get_settings(), engine, r, at))


def two_days(engine: Engine, r: redis.Redis) -> None:
    for coid, signal, side in (
        ("a", "sig-a", "BUY"),
        ("b", "sig-b", "BUY"),
        ("c", "sig-c", "SELL"),
    ):
        intent_order(engine, coid, "S", signal, SPY, side, "150", state="FILLED")
    execute(engine, "a", "BUY", "100", "10", CLOSE2 - timedelta(hours=5))
    execute(engine, "b", "BUY", "100", "12", CLOSE2 - timedelta(hours=4))  # avg 11
    mark(engine, r, "11.50", CLOSE2 - timedelta(minutes=1))
    execute(engine, "c", "SELL", "50", "13", CLOSE2 + timedelta(hours=1))  # after hours
    execute(engine, "c", "SELL", "100", "12", CLOSE3 - timedelta(hours=3))
    mark(engine, r, "12.50", CLOSE3 - timedelta(minutes=1))
    mark(engine, r, "13.00", CLOSE3 + timedelta(minutes=5))  # after the close: not the close's


def rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["signal_id"]: row for row in doc["rows"]}


def test_each_close_written_once_fifo_at_the_close_mark_and_the_days_add_up(
    engine: Engine, r: redis.Redis, epm_env: pytest.MonkeyPatch
) -> None:
    two_days(engine, r)
    root = get_settings().data_dir / "attribution"

    early = run_attribution(Stores(get_settings(), engine, r, CLOSE2 + timedelta(minutes=10)))
    assert not (root / "2026-12-02.json").exists()
    assert all(w["day"] != "2026-12-02" for w in early["written"])
    run_attribution(Stores(get_settings(), engine, r, CLOSE2 + timedelta(minutes=16)))
    day2 = json.loads((root / "2026-12-02.json").read_text())
    assert day2["cutoff"] == CLOSE2.isoformat() and day2["method"] == "fifo"
    # The after-hours sale is not in the 2nd: both signals still hold 100 at avg 11, mark 11.50.
    assert {
        k: (v["realized"], v["unrealized"], v["fees"], v["net"]) for k, v in rows(day2).items()
    } == {
        "sig-a": ("0", "50", "1", "49"),
        "sig-b": ("0", "50", "1", "49"),
    }

    written = run_attribution(Stores(get_settings(), engine, r, CLOSE3 + timedelta(minutes=20)))
    assert [w["day"] for w in written["written"]] == ["2026-12-03"]
    day3 = json.loads((root / "2026-12-03.json").read_text())
    assert day3["previous_day"] == "2026-12-02"
    got = {
        k: (v["realized"], v["unrealized"], v["fees"], v["net"], v["day_net"])
        for k, v in rows(day3).items()
    }
    # FIFO: the 50 sold after hours and the first 50 of the 100 close sig-a's lot; the other
    # 50 close half of sig-b's; sig-b still holds 50 marked at the close's 12.50.
    assert got == {
        "sig-a": ("150", "0", "1", "149", "100"),
        "sig-b": ("50", "75", "1", "124", "75"),
        "sig-c": ("0", "0", "2", "-2", "-2"),
    }
    # The signals' realized adds up to the position's, as the ledger has it.
    assert sum(int(v[0]) for v in got.values()) == 200

    before = (root / "2026-12-03.json").read_bytes()
    again = run_attribution(Stores(get_settings(), engine, r, CLOSE3 + timedelta(hours=2)))
    assert again["written"] == []
    assert (root / "2026-12-03.json").read_bytes() == before


def test_epm_pnl_by_signal_for_a_past_day(sqlite_url: str, tmp_path: Path, r: redis.Redis) -> None:
    from store.db import make_engine
    from store.migrate import upgrade

    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    two_days(engine, r)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_DATABASE_URL": sqlite_url,
        "EPM_DATA_DIR": str(tmp_path / "cli-data"),
        "COLUMNS": "200",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "epm", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = run("pnl", "--by", "signal", "--day", "2026-12-03", "--json")
    assert missing.returncode == 1 and "no attribution for 2026-12-03" in missing.stderr
    assert run("pnl", "--by", "strategy", "--day", "2026-12-03").returncode == 2
    made = run("books", "attribution", "--day", "2026-12-03")
    assert made.returncode == 0 and "2026-12-03.json" in made.stdout, made.stderr
    shown = run("pnl", "--by", "signal", "--day", "2026-12-03", "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    by_signal = {row["signal_id"]: row for row in json.loads(shown.stdout)}
    assert (by_signal["sig-b"]["net"], by_signal["sig-a"]["realized"]) == ("124", "150")
    kept = run("books", "attribution", "--day", "2026-12-03")
    assert kept.returncode == 0 and "exists" in kept.stdout
