"""`epm kill-switch`, `epm resume`, `epm cancel`, `epm status`, `epm bridge` as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from ibgateway_bridge import client_api
from ibgateway_bridge import commands as cmds
from tests.bridge.harness import (
    REPO,
    TcpProxy,
    bridge_in_process,
    poll,
    sim_orders,
    sim_thread,
    wait_ready,
)

SPY = {"con_id": 756733, "symbol": "SPY", "sec_type": "STK"}


def epm(redis_url: str, port: int, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
    env.update(
        EPM_REDIS_URL=redis_url,
        EPM_IB_PORT=str(port),
        EPM_DATA_DIR=str(tmp_path / "epm-data"),
        PYTHONPATH=str(REPO),
        USER="cli-tester",
    )
    return subprocess.run(
        [sys.executable, "-m", "epm", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_kill_switch_resume_cancel_status(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        resting = {"action": "BUY", "quantity": "1", "order_type": "LMT", "lmt_price": "1"}
        client_api.enqueue_place(oid, "cli-1", SPY, resting, client=r)
        poll(lambda: oid in sim_orders(sim), 10, what="working order")

        done = epm(redis_url, sim.port, tmp_path, "status", "--json")
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert status["bridge"]["client1"] == "READY"
        assert status["bridge_lease"] and status["last_order_id"] == oid

        done = epm(redis_url, sim.port, tmp_path, "cancel", str(oid))
        assert done.returncode == 0 and f"order {oid}" in done.stdout
        poll(lambda: str(sim_orders(sim)[oid].status.value) == "Cancelled", 10, what="cancelled")

        second = client_api.allocate_order_id(r)
        client_api.enqueue_place(second, "cli-2", SPY, resting, client=r)
        poll(lambda: second in sim_orders(sim), 10, what="second working order")
        done = epm(redis_url, sim.port, tmp_path, "kill-switch", "--reason", "cli drill")
        assert done.returncode == 0, done.stderr
        assert "reqGlobalCancel sent=True" in done.stdout
        poll(lambda: sim.call(lambda s: s.venue.open_orders(None)) == [], 5, what="all cancelled")
        assert r.get(cmds.HALT_GLOBAL_KEY) is not None
        audit = [f for _i, f in r.xrange(cmds.AUDIT_STREAM)]
        assert audit[-1]["action"] == "kill_switch" and audit[-1]["actor"] == "cli-tester"

        done = epm(redis_url, sim.port, tmp_path, "resume", "--reason", "drill over")
        assert done.returncode == 0 and "lifted" in done.stdout
        assert r.get(cmds.HALT_GLOBAL_KEY) is None
        assert [f for _i, f in r.xrange(cmds.AUDIT_STREAM)][-1]["action"] == "resume"


def test_cli_kill_switch_without_gateway_fails_loudly_but_halts(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    with sim_thread() as sim:
        port = sim.port
    done = epm(redis_url, port, tmp_path, "kill-switch", "--timeout", "1")
    assert done.returncode == 2
    assert "IB not reached" in done.stderr
    assert r.get(cmds.HALT_GLOBAL_KEY) is not None
    alerts = [f for _i, f in r.xrange(cmds.ALERT_STREAM)]
    assert alerts[-1]["kind"] == "kill_switch_ib_unreachable"


def test_cli_cancel_rejects_bad_order_id(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    done = epm(redis_url, 1, tmp_path, "cancel", "0")
    assert done.returncode == 2 and "invalid order id" in done.stderr
    assert not r.exists(cmds.COMMAND_STREAM)


def test_cli_redis_unreachable_is_a_message_not_a_traceback(redis_url: str, tmp_path: Path) -> None:
    with TcpProxy.for_url(redis_url) as dead:
        dead.cut()
        url = dead.url_via(redis_url)
        for args in (("status", "--json"), ("cancel", "5"), ("resume", "--reason", "x")):
            done = epm(url, 1, tmp_path, *args)
            assert done.returncode == 2, (args, done.stderr)
            assert "Redis not reached" in done.stderr and "Traceback" not in done.stderr


def test_cli_kill_switch_and_resume_are_audited_in_the_ledger(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """The operator actions land in the ledger's `audit_log` too (the embedded ledger here),
    written by the CLI's service: the bridge's kill switch itself never touches the ledger."""
    import sqlalchemy as sa

    from store.migrate import upgrade

    ledger = tmp_path / "epm-data" / "ledger.db"
    ledger.parent.mkdir(parents=True)
    upgrade(f"sqlite:///{ledger}")
    with sim_thread() as sim:
        assert (
            epm(redis_url, sim.port, tmp_path, "kill-switch", "--reason", "drill").returncode == 0
        )
        done = epm(redis_url, sim.port, tmp_path, "resume", "--reason", "drill over")
        assert done.returncode == 0, done.stderr
    engine = sa.create_engine(f"sqlite:///{ledger}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT actor, action, details FROM audit_log ORDER BY id")
        ).all()
    engine.dispose()
    assert [(row.actor, row.action) for row in rows] == [
        ("cli-tester", "kill_switch"),
        ("cli-tester", "resume"),
    ]
    assert json.loads(rows[0].details)["reason"] == "drill"
