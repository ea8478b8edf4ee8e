"""`epm sim` / `python -m tws_sim` as a process: port 0 printed, exec log, state kept across a
restart of the simulator process (a gateway restart drill)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from typer.testing import CliRunner

from tws_sim.server.process import SimProcess
from tws_sim.server.testing import RecordingClient

pytestmark = pytest.mark.slow


def spy() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPY", "STK", "SMART", "USD"
    return c


def test_epm_sim_help_lists_the_options() -> None:
    from epm.cli import _load_commands, app

    _load_commands()
    result = CliRunner().invoke(app, ["sim", "--help"])
    assert result.exit_code == 0
    for option in (
        "--port",
        "--scenario",
        "--seed",
        "--start",
        "--speed",
        "--exec-log",
        "--state-dir",
    ):
        assert option in result.output


def test_bad_start_time_is_a_clean_error(tmp_path: Path) -> None:
    proc = SimProcess("--start", "25:99", log_path=tmp_path / "sim.log")
    with pytest.raises(RuntimeError, match="bad ET time"):
        proc.start()
    assert proc.proc is not None and proc.proc.wait(10) == 2


def test_process_exec_log_and_state_survive_a_restart(tmp_path: Path) -> None:
    exec_log = tmp_path / "exec.jsonl"
    state = tmp_path / "state"
    args = ("--exec-log", str(exec_log), "--state-dir", str(state), "--seed", "9")
    with SimProcess(*args, log_path=tmp_path / "sim1.log") as sim:
        assert sim.port > 0 and sim.banner[0].endswith(f":{sim.port}")
        app = RecordingClient()
        try:
            oid = app.start(sim.port, 1)
            app.reqMktData(1, spy(), "", True, False, [])
            app.wait_for(lambda: app.of("tickSnapshotEnd"))
            ask = [a[2] for a in app.of("tickPrice") if a[1] == 2][-1]
            o = Order()
            o.action, o.orderType, o.totalQuantity, o.lmtPrice = "BUY", "LMT", Decimal(300), ask + 1
            app.placeOrder(oid, spy(), o)
            app.wait_for(lambda: [s for s in app.of("orderStatus") if s[1] == "Filled"])
            fills = [a[2] for a in app.of("execDetails")]
            app.wait_for(lambda: len(app.of("commissionReport")) >= len(fills))
        finally:
            app.stop()
    # The exec log holds every execution (flushed per event), with its commission.
    lines = [json.loads(x) for x in exec_log.read_text().splitlines() if x.strip()]
    by_id = {r["execId"]: r for r in lines}
    for f in fills:
        assert Decimal(by_id[f.execId]["shares"]) == Decimal(str(f.shares))
    # Restart: positions and the day's executions come back from --state-dir.
    with SimProcess(*args, log_path=tmp_path / "sim2.log") as sim:
        app = RecordingClient()
        try:
            nid = app.start(sim.port, 1)
            assert nid > oid  # order ids are never reused across the restart
            app.reqPositions()
            app.wait_for(lambda: app.of("positionEnd"))
            pos = [a for a in app.of("position") if a[1].symbol == "SPY"]
            assert pos and Decimal(str(pos[-1][2])) == 300
            app.reqExecutions(5, ExecutionFilter())
            app.wait_for(lambda: app.of("execDetailsEnd"))
            again = {a[2].execId for a in app.of("execDetails") if a[0] == 5}
            assert {f.execId for f in fills} <= again
        finally:
            app.stop()
