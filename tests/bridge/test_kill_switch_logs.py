"""A bad EPM_LOG_* setting never stops the kill switch: the venue is told to cancel first, and
the purge, the halt and the audit entry that follow still happen, with the logs on stderr and
the bad setting named there."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from ibgateway_bridge import commands as cmds
from store.migrate import upgrade
from tests.bridge.harness import REPO, BridgeProcess, enqueue_new, poll, sim_orders, sim_thread
from tests.bridge.harness import wait_ready as bridge_ready

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("setting", "value"), [("EPM_LOG_FORMAT", "xml"), ("EPM_LOG_FILE", "/proc/nope/k.log")]
)
def test_kill_switch_completes_under_a_bad_log_setting(
    r: redis.Redis, redis_url: str, tmp_path: Path, setting: str, value: str
) -> None:
    ledger = tmp_path / "epm-data" / "ledger.db"
    ledger.parent.mkdir(parents=True)
    upgrade(f"sqlite:///{ledger}")
    with sim_thread() as sim:
        bridge = BridgeProcess(redis_url, sim.port, tmp_path / "bridge.log").start()
        try:
            bridge_ready(r)
            spec = cmds.OrderSpec(action="BUY", quantity=Decimal(1), lmt_price=Decimal("1.00"))
            working = enqueue_new(r, 2, spec)
            poll(
                lambda: all(sim_orders(sim).get(o) is not None for o in working),
                20,
                what="2 working orders",
            )
        finally:
            bridge.stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
        env.update(
            EPM_REDIS_URL=redis_url,
            EPM_IB_PORT=str(sim.port),
            EPM_DATA_DIR=str(tmp_path / "epm-data"),
            PYTHONPATH=str(REPO),
            USER="log-tester",
            **{setting: value},
        )
        done = subprocess.run(
            [sys.executable, "-m", "epm", "kill-switch", "--reason", "bad log setting"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "reqGlobalCancel sent=True" in done.stdout
        assert f"epm kill-switch: {setting}" in done.stderr
        assert "logging to stderr instead" in done.stderr
        assert "Traceback" not in done.stderr
        assert sim.call(lambda s: s.venue.open_orders(None)) == []
    assert r.get(cmds.HALT_GLOBAL_KEY) is not None
    audit = [f for _i, f in r.xrange(cmds.AUDIT_STREAM) if f["action"] == "kill_switch"]
    assert len(audit) == 1 and audit[0]["reason"] == "bad log setting"
