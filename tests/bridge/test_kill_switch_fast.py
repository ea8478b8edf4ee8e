"""`epm kill-switch` on its lean path (epm/killswitch_fast.py) as a real process: the bridge
frozen or dead, the working orders cancelled at the venue, the queue purged, and the audit entry
(written after the cancels) present in Redis and in the ledger."""

from __future__ import annotations

import json
import signal
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from epm import killswitch_fast
from ibgateway_bridge import commands as cmds
from tests.bridge.harness import (
    BridgeProcess,
    enqueue_new,
    poll,
    sim_orders,
    sim_thread,
    wait_ready,
)
from tests.bridge.test_cli_ops import epm

pytestmark = pytest.mark.slow


def resting_buy() -> cmds.OrderSpec:
    return cmds.OrderSpec(action="BUY", quantity=Decimal(1), lmt_price=Decimal("1.00"))


def test_lean_path_uses_the_bridge_halt_key() -> None:
    assert killswitch_fast.HALT_GLOBAL_KEY == cmds.HALT_GLOBAL_KEY


def _ledger_audit_rows(ledger: Path) -> list[sa.Row[tuple[str, str, str]]]:
    engine = sa.create_engine(f"sqlite:///{ledger}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT actor, action, details FROM audit_log ORDER BY id"))
        out = list(rows.all())
    engine.dispose()
    return out


@pytest.mark.parametrize("bridge_state", ["frozen", "dead"])
def test_cli_kill_switch_cancels_everything_and_audits_after(
    r: redis.Redis, redis_url: str, tmp_path: Path, bridge_state: str
) -> None:
    from store.migrate import upgrade

    ledger = tmp_path / "epm-data" / "ledger.db"
    ledger.parent.mkdir(parents=True)
    upgrade(f"sqlite:///{ledger}")
    with sim_thread() as sim:
        bridge = BridgeProcess(redis_url, sim.port, tmp_path / "bridge.log").start()
        try:
            wait_ready(r)
            working = enqueue_new(r, 20, resting_buy())
            poll(
                lambda: all(sim_orders(sim).get(o) is not None for o in working),
                20,
                what="20 working orders",
            )
            if bridge_state == "frozen":
                bridge.signal(signal.SIGSTOP)
            else:
                bridge.signal(signal.SIGKILL)
                bridge.wait(10)
            queued = enqueue_new(r, 3, resting_buy())

            done = epm(redis_url, sim.port, tmp_path, "kill-switch", "--reason", "lean drill")

            assert done.returncode == 0, done.stderr
            assert "reqGlobalCancel sent=True" in done.stdout
            assert "purged 3 queued order command(s)" in done.stdout
            assert sim.call(lambda s: s.venue.open_orders(None)) == []
            assert all(str(sim_orders(sim)[o].status.value) == "Cancelled" for o in working)
            halt = json.loads(r.get(cmds.HALT_GLOBAL_KEY) or "{}")
            assert halt["reason"] == "lean drill" and halt["actor"] == "cli-tester"
            purged = {int(f["ib_order_id"]) for _i, f in r.xrange(cmds.REJECT_STREAM)}
            assert purged == set(queued)
            audit = [f for _i, f in r.xrange(cmds.AUDIT_STREAM) if f["action"] == "kill_switch"]
            assert len(audit) == 1 and audit[0]["purged"] == "3"
            assert audit[0]["global_cancel_sent"] == "True"
        finally:
            bridge.stop()
    rows = _ledger_audit_rows(ledger)
    assert [(row.actor, row.action) for row in rows] == [("cli-tester", "kill_switch")]
    details = json.loads(rows[0].details)
    assert details["reason"] == "lean drill" and details["purged"] == "3"


def test_cli_kill_switch_help_is_typers(redis_url: str, tmp_path: Path) -> None:
    done = epm(redis_url, 1, tmp_path, "kill-switch", "--help")
    assert done.returncode == 0
    assert "--reason" in done.stdout and "--timeout" in done.stdout


def test_cli_kill_switch_bad_option_is_a_message(redis_url: str, tmp_path: Path) -> None:
    for args in (("--timeout", "soon"), ("--frobnicate",)):
        done = epm(redis_url, 1, tmp_path, "kill-switch", *args)
        assert done.returncode == 2, (args, done.stdout)
        assert "epm kill-switch:" in done.stderr and "Traceback" not in done.stderr
