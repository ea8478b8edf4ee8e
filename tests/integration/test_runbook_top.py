"""`epm top --once` as a real process beside the simulator and the real bridge: one frame with the
bridge's connections, the halt flags, the working orders, the positions and P&L by strategy, with
the books' own figures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Engine

from ibgateway_bridge import commands as cmds
from services.books.views import GroupBy, pnl_view
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from tests.bridge.harness import REPO, bridge_in_process, poll, sim_thread, wait_ready
from tests.integration.test_books import OPT, SPY, execute, intent_order
from tests.integration.test_runbooks import epm


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    yield url, make_engine(url)
    dispose_engines()


def test_top_once_prints_connections_halts_orders_positions_and_pnl(
    r: redis.Redis, redis_url: str, tmp_path: Path, ledger: tuple[str, Engine]
) -> None:
    db_url, engine = ledger
    intent_order(engine, "top-1", "Momentum_EQ", "sig-t1", SPY, "BUY", "100", state="FILLED")
    intent_order(engine, "top-2", "Vol_Short", "sig-t2", OPT, "SELL", "2", state="FILLED")
    intent_order(engine, "top-3", "Momentum_EQ", "sig-t3", SPY, "BUY", "300", state="PLACED")
    execute(engine, "top-1", SPY, "BOT", "100", "10.00", "1.00")
    execute(engine, "top-2", OPT, "SLD", "2", "1.20", "1.30", sec_type="OPT", mult="100")
    execute(engine, "top-3", SPY, "BOT", "50", "10.20", "0.25")
    with engine.connect() as conn:
        nets = {row["strategy"]: row["net"] for row in pnl_view(conn, GroupBy.STRATEGY)}
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        r.set(cmds.HALT_STRATEGY_KEY.format(strategy="Vol_Short"), "drawdown drill")
        done = epm(redis_url, sim.port, db_url, tmp_path, "--once", command="top")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "client1 " in text and "READY" in text and "lease " in text
    assert "strategy:Vol_Short" in text and "drawdown drill" in text
    assert "Working orders (1 of 1)" in text
    working = next(line for line in text.splitlines() if "top-3" in line)
    assert "PARTIAL_FILLED" in working and "│ 300 │ 50 " in working
    assert "top-1" not in text  # filled: not working
    spy = next(line for line in text.splitlines() if " 150 " in line and "Momentum_EQ" in line)
    assert "SPY" in spy
    assert nets["Momentum_EQ"] in text and nets["Vol_Short"] in text


def test_top_refreshes_until_interrupted_and_exits_cleanly(
    r: redis.Redis, redis_url: str, tmp_path: Path, ledger: tuple[str, Engine]
) -> None:
    db_url, _engine = ledger
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
    env.update(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL=db_url,
        EPM_DATA_DIR=str(tmp_path / "epm-data"),
        PYTHONPATH=str(REPO),
    )
    out = tmp_path / "top.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "epm", "top", "--interval", "0.2"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Not on a terminal, frame after frame: wait for the second one.
            poll(lambda: out.read_text().count("P&L by strategy") >= 2, 30, what="two frames")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    text = out.read_text()
    assert "no bridge lease" in text and "Working orders (0 of 0)" in text
