"""The attribution method configured per strategy (EPM_ATTRIBUTION) is the one the end-of-day
file, `epm pnl --by signal` and the extracts use, and each records it (SQLite and PostgreSQL,
real Redis). The session is `test_books_attribution.two_days`: sig-a buys 100 at 10, sig-b 100
at 12 (average 11), sig-c sells 50 at 13 after the 2nd's close and 100 at 12 on the 3rd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Engine

from epm.settings import get_settings, reset_settings_cache
from services.books.views import GroupBy, pnl_view
from services.extracts import write_extracts_from
from tasks.app import Stores
from tasks.pnl import run_attribution
from tests.integration.test_books_attribution import CLOSE3, r, rows, two_days

__all__ = ["r"]  # the Redis fixture, flushed around each test


def configure(env: pytest.MonkeyPatch, per_strategy: str) -> None:
    env.setenv("EPM_ATTRIBUTION", per_strategy)
    reset_settings_cache()


def test_the_end_of_day_file_splits_by_the_configured_method_and_records_it(
    engine: Engine, r: redis.Redis, epm_env: pytest.MonkeyPatch
) -> None:
    two_days(engine, r)
    configure(epm_env, "S=lifo,Other=pro_rata")
    run_attribution(Stores(get_settings(), engine, r, CLOSE3 + timedelta(minutes=20)))
    doc = json.loads((get_settings().data_dir / "attribution" / "2026-12-03.json").read_text())
    assert doc["method"] == "fifo" and doc["methods"] == {"S": "lifo"}
    got = {k: (v["method"], v["realized"], v["unrealized"], v["net"]) for k, v in rows(doc).items()}
    # LIFO: the 50 sold at 13 (2 a share) and 50 of the 100 at 12 (1 a share) close sig-b's
    # lot; the other 50 close half of sig-a's, which still holds 50 marked at 12.50.
    assert got == {
        "sig-a": ("lifo", "50", "75", "124"),
        "sig-b": ("lifo", "150", "0", "149"),
        "sig-c": ("lifo", "0", "0", "-2"),
    }
    assert {p["method"] for p in doc["positions"]} == {"lifo"}


def test_pnl_by_signal_and_the_extracts_follow_the_configured_method(
    engine: Engine, r: redis.Redis, epm_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    two_days(engine, r)
    configure(epm_env, "S=pro_rata")
    with engine.connect() as conn:
        view = {row["signal_id"]: row for row in pnl_view(conn, GroupBy.SIGNAL)}
        written = write_extracts_from(conn, tmp_path / "x", formats=("csv",))
    # Pro-rata: each sale takes half from each signal (25 at 2, then 50 at 1 a share); each
    # still holds 25, marked at the last stored mark, 13.00.
    assert {k: (v["method"], v["realized"], v["unrealized"]) for k, v in view.items()} == {
        "sig-a": ("pro_rata", "100.00", "50.00"),
        "sig-b": ("pro_rata", "100.00", "50.00"),
        "sig-c": ("pro_rata", "0.00", "0.00"),
    }
    [pnl_csv] = [p for p in written if p.name == "pnl.csv"]
    lines = pnl_csv.read_text().splitlines()
    header = lines[0].split(",")
    extract = {c[header.index("signal_id")]: c for c in (line.split(",") for line in lines[1:])}
    assert extract["sig-a"][header.index("realized_pl")] == "100.00"
    # Unconfigured, the same book is FIFO: sig-a's lot goes first.
    configure(epm_env, "")
    with engine.connect() as conn:
        fifo = {row["signal_id"]: row for row in pnl_view(conn, GroupBy.SIGNAL)}
    assert (fifo["sig-a"]["method"], fifo["sig-a"]["realized"]) == ("fifo", "150.00")


def test_epm_pnl_by_signal_takes_the_method_from_the_environment(
    sqlite_url: str, tmp_path: Path, r: redis.Redis
) -> None:
    from store.db import make_engine
    from store.migrate import upgrade

    upgrade(sqlite_url)
    two_days(make_engine(sqlite_url), r)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_DATABASE_URL": sqlite_url,
        "EPM_DATA_DIR": str(tmp_path / "cli-data"),
        "EPM_ATTRIBUTION_DEFAULT": "lifo",
    }

    def pnl(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "epm", "pnl", "--by", "signal", "--json", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    shown = pnl()
    assert shown.returncode == 0, shown.stderr[-2000:]
    by_signal = {row["signal_id"]: row for row in json.loads(shown.stdout)}
    assert {k: (v["method"], v["realized"]) for k, v in by_signal.items()} == {
        "sig-a": ("lifo", "50.00"),
        "sig-b": ("lifo", "150.00"),
        "sig-c": ("lifo", "0.00"),
    }
    env["EPM_ATTRIBUTION"] = "S=average"
    refused = pnl()
    assert refused.returncode != 0 and "not one of fifo, lifo, pro_rata" in refused.stderr
