"""`epm sim` / `python -m tws_sim` as a process: port 0 printed, exec log, state kept across a
restart of the simulator process (a gateway restart drill)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from typer.testing import CliRunner

import tws_sim.server.process as process_mod
from tws_sim import cli
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


def _capture_serve(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace `serve_forever` (what the command calls) with a recorder of its arguments."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(process_mod, "serve_forever", lambda **kw: calls.append(kw))
    return calls


def test_epm_sim_is_the_simulators_own_command() -> None:
    """`epm sim` registers `tws_sim.cli.sim_command` itself, so both entry points stay one."""
    from epm.cli import _load_commands, app

    _load_commands()
    commands = {c.name: c.callback for c in app.registered_commands}
    assert commands["sim"] is cli.sim_command


@pytest.mark.parametrize("entry", ["epm", "python -m tws_sim"])
def test_default_port_is_epm_ib_port(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from epm.cli import _load_commands
    from epm.cli import app as epm_app

    _load_commands()
    app, args = (epm_app, ["sim"]) if entry == "epm" else (cli.make_app(), [])
    calls = _capture_serve(monkeypatch)
    runner = CliRunner()
    monkeypatch.delenv(cli.PORT_ENV, raising=False)
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args, env={cli.PORT_ENV: "4555"}).exit_code == 0
    assert runner.invoke(app, [*args, "--port", "0"], env={cli.PORT_ENV: "4555"}).exit_code == 0
    assert [c["port"] for c in calls] == [4002, 4555, 0]
    assert calls[0]["pacing_limit"] == 50 and calls[0]["host"] == "127.0.0.1"


def test_bad_epm_ib_port_is_a_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _capture_serve(monkeypatch)
    result = CliRunner().invoke(cli.make_app(), [], env={cli.PORT_ENV: "four"})
    assert result.exit_code == 2 and calls == []
    assert "EPM_IB_PORT" in result.output


def test_python_m_tws_sim_loads_no_epm() -> None:
    """The simulator's command line, server and process helper import nothing of epm."""
    code = (
        "import sys, tws_sim.__main__, tws_sim.cli, tws_sim.server.process;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'epm'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


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
