"""`epm runbook …` as real processes against the simulator and the real bridge: each prints its
steps, does nothing without --yes, acts with it (the venue's order cancelled, the missed fill
resynced, the depth line re-requested) and leaves one audit row per run."""

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

from ibgateway_bridge import client_api
from ibgateway_bridge import commands as cmds
from store.db import dispose_engines, make_engine, write_transaction
from store.migrate import upgrade
from store.orders import create_order
from store.schema import audit_log
from tests.bridge.harness import (
    REPO,
    TcpProxy,
    bridge_in_process,
    poll,
    sim_orders,
    sim_thread,
    wait_ready,
)
from tws_sim.server import out
from tws_sim.server.subscriptions import MdKind

SPY = {"con_id": 756733, "symbol": "SPY", "sec_type": "STK", "exchange": "SMART", "currency": "USD"}
RESTING = {"action": "BUY", "quantity": "1", "order_type": "LMT", "lmt_price": "1"}


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


def epm(
    redis_url: str, port: int, db_url: str, tmp_path: Path, *args: str, command: str = "runbook"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
    env.update(
        EPM_REDIS_URL=redis_url,
        EPM_IB_PORT=str(port),
        EPM_DATABASE_URL=db_url,
        EPM_DATA_DIR=str(tmp_path / "epm-data"),
        EPM_RUNBOOK_TIMEOUT_S="15",
        PYTHONPATH=str(REPO),
        USER="runbook-tester",
    )
    return subprocess.run(
        [sys.executable, "-m", "epm", command, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def audits(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(audit_log).order_by(audit_log.c.id)))


def ledger_order(engine: Engine, coid: str, ib_order_id: int, state: str = "PLACED") -> None:
    with write_transaction(engine) as conn:
        create_order(
            conn,
            {
                "client_order_id": coid,
                "client_id": 1,
                "ib_order_id": ib_order_id,
                "strategy": "Momentum_EQ",
                "con_id": SPY["con_id"],
                "symbol": "SPY",
                "action": "BUY",
                "quantity": Decimal(1),
                "state": state,
            },
            datetime.now(UTC) - timedelta(minutes=1),
        )


def _status(sim: Any, order_id: int) -> str | None:
    order = sim_orders(sim).get(order_id)
    return None if order is None else str(order.status.value)


def test_order_stuck_dry_run_then_cancel_at_the_venue_and_a_missed_fill_resynced(
    r: redis.Redis, redis_url: str, tmp_path: Path, ledger: tuple[str, Engine]
) -> None:
    db_url, engine = ledger
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "rb-1", SPY, RESTING, client=r)
        poll(lambda: oid in sim_orders(sim), 10, what="working order")
        ledger_order(engine, "rb-1", oid)

        done = epm(redis_url, sim.port, db_url, tmp_path, "order-stuck", str(oid))
        assert done.returncode == 0, done.stderr
        assert "rb-1: PLACED" in done.stdout
        assert "the venue has 0 execution(s)" in done.stdout
        assert f"[would] cancel IB order {oid} (dry run" in done.stdout
        assert str(sim_orders(sim)[oid].status.value) != "Cancelled"

        done = epm(redis_url, sim.port, db_url, tmp_path, "order-stuck", "rb-1", "--yes")
        assert done.returncode == 0, done.stderr
        assert f"[action] cancel IB order {oid}: queued as" in done.stdout
        poll(lambda: _status(sim, oid) == "Cancelled", 10, what="cancelled")

        # A fill the venue made and the ledger never heard of: the safe action is a resync.
        filled = client_api.allocate_order_id(r)
        client_api.enqueue_place(
            filled, "rb-2", SPY, {"action": "BUY", "quantity": "1", "order_type": "MKT"}, client=r
        )
        poll(lambda: _status(sim, filled) == "Filled", 10, what="filled")
        ledger_order(engine, "rb-2", filled)
        before = r.xlen(cmds.COMMAND_STREAM)
        done = epm(redis_url, sim.port, db_url, tmp_path, "order-stuck", "rb-2", "--yes")
        assert done.returncode == 0, done.stderr
        assert "the venue has 1 execution(s) of it, 1 filled" in done.stdout, done.stdout
        assert "resync the venue's executions" in done.stdout and "cancel IB" not in done.stdout
        queued = [f for _i, f in r.xrange(cmds.COMMAND_STREAM)][before:]
        assert any(f["type"] == "req_executions" for f in queued), queued

        done = epm(redis_url, sim.port, db_url, tmp_path, "order-stuck", "no-such-order")
        assert done.returncode == 2 and "no order 'no-such-order'" in done.stderr

    rows = audits(engine)
    assert [(a.action, a.actor, a.details["mode"]) for a in rows] == [
        ("runbook.order_stuck", "runbook-tester", "dry_run"),
        ("runbook.order_stuck", "runbook-tester", "act"),
        ("runbook.order_stuck", "runbook-tester", "act"),
        ("runbook.order_stuck", "runbook-tester", "dry_run"),
    ]
    assert json.loads(rows[0].details["acted"]) == []
    assert json.loads(rows[1].details["acted"]) == [f"cancel IB order {oid}"]
    assert rows[1].target == "order:rb-1"
    assert any("venue has 0" in s["text"] for s in json.loads(rows[1].details["steps"]))


def test_gateway_reconnect_waits_out_a_drop_resyncs_when_up_and_says_when_no_bridge_runs(
    r: redis.Redis, redis_url: str, tmp_path: Path, ledger: tuple[str, Engine]
) -> None:
    db_url, engine = ledger
    with sim_thread() as sim, TcpProxy("127.0.0.1", sim.port) as link:
        with bridge_in_process(redis_url, link.port):
            wait_ready(r)
            # The gateway link drops: the bridge reconnects by itself; nothing to force yet.
            link.cut()
            poll(lambda: r.hget("ib:bridge:state", "client1") != "READY", 15, what="link down")
            done = epm(redis_url, sim.port, db_url, tmp_path, "gateway-reconnect", "--yes")
            assert done.returncode == 0, done.stderr
            assert "client1 is " in done.stdout and "reconnecting by itself" in done.stdout
            assert "[action]" not in done.stdout
            link.restore()
            wait_ready(r)
            done = epm(redis_url, sim.port, db_url, tmp_path, "gateway-reconnect")
            assert done.returncode == 0, done.stderr
            assert "client1 READY" in done.stdout
            assert "the venue answered with 0 execution(s)" in done.stdout
            assert "the gateway path is healthy" in done.stdout
            assert "[would] resync the venue's executions" in done.stdout
            before = r.xlen(cmds.COMMAND_STREAM)
            done = epm(redis_url, sim.port, db_url, tmp_path, "gateway-reconnect", "--yes")
            assert done.returncode == 0, done.stderr
            queued = [f["type"] for _i, f in r.xrange(cmds.COMMAND_STREAM)]
            assert queued[before:][-2:] == ["req_executions", "req_positions"]
        # The bridge stopped: nobody holds the lease, and the runbook says what to start.
        poll(lambda: r.get("ib:bridge:lease") is None, 10, what="lease released")
        done = epm(redis_url, sim.port, db_url, tmp_path, "gateway-reconnect", "--yes")
        assert done.returncode == 0, done.stderr
        assert "nobody holds it" in done.stdout and "start the bridge" in done.stdout
        assert "[action]" not in done.stdout
    rows = audits(engine)
    assert [(a.action, a.details["mode"]) for a in rows] == [
        ("runbook.gateway_reconnect", "act"),
        ("runbook.gateway_reconnect", "dry_run"),
        ("runbook.gateway_reconnect", "act"),
        ("runbook.gateway_reconnect", "act"),
    ]
    assert json.loads(rows[0].details["acted"]) == []
    assert len(json.loads(rows[2].details["acted"])) == 2
    assert json.loads(rows[3].details["acted"]) == []
    assert "no bridge holds the lease" in rows[3].details["note_0"]


def _fail_depth(server: Any, con_id: int) -> int:
    """The venue drops the depth line of `con_id` with an error, as IB does (10092)."""
    for sub in list(server.subs.md_subscribers(con_id)):
        if sub.kind is MdKind.DEPTH:
            server.subs.remove_md(sub.session, sub.req_id, MdKind.DEPTH)
            sub.session.send(
                out.error(
                    sub.req_id,
                    10092,
                    "Deep market data is not supported for this combination of security/exchange",
                    sub.session.version,
                )
            )
            return int(sub.req_id)
    raise AssertionError("no depth subscription at the venue")


def _venue_depth_subs(server: Any, con_id: int) -> int:
    return sum(1 for s in server.subs.md_subscribers(con_id) if s.kind is MdKind.DEPTH)


def test_depth_failure_finds_the_refused_line_and_resubscribes_it(
    r: redis.Redis, redis_url: str, tmp_path: Path, ledger: tuple[str, Engine]
) -> None:
    db_url, engine = ledger
    con_id = int(SPY["con_id"])
    md = f"md:{con_id}"
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        client_api.enqueue_subscribe(con_id, "strat-a", contract=SPY, depth=True, client=r)
        client_api.enqueue_subscribe(con_id, "strat-b", contract=SPY, client=r)
        poll(lambda: r.hget(md, "depth"), 15, what="depth in md:{con_id}")

        done = epm(redis_url, sim.port, db_url, tmp_path, "depth-failure")
        assert done.returncode == 0, done.stderr
        assert "depth present" in done.stdout and "nothing to do" in done.stdout

        sim.call(lambda s: _fail_depth(s, con_id))
        poll(lambda: r.hget(md, "error_code") == "10092", 10, what="the refusal recorded")
        assert sim.call(lambda s: _venue_depth_subs(s, con_id)) == 0

        done = epm(redis_url, sim.port, db_url, tmp_path, "depth-failure")
        assert done.returncode == 0, done.stderr
        assert f"{con_id}: IB error 10092" in done.stdout
        assert f"[would] resubscribe depth on {con_id}" in done.stdout
        assert sim.call(lambda s: _venue_depth_subs(s, con_id)) == 0

        done = epm(redis_url, sim.port, db_url, tmp_path, "depth-failure", "--yes")
        assert done.returncode == 0, done.stderr
        assert f"[action] resubscribe depth on {con_id}: queued as" in done.stdout
        poll(lambda: sim.call(lambda s: _venue_depth_subs(s, con_id)) == 1, 15, what="re-request")
        poll(lambda: r.hget(md, "depth") and not r.hexists(md, "error_code"), 15, what="depth")
        # Both requesters still hold the line.
        assert r.smembers(f"md:subs:{con_id}") == {"strat-a", "strat-b"}

        done = epm(redis_url, sim.port, db_url, tmp_path, "depth-failure", "--con-id", str(con_id))
        assert done.returncode == 0 and "nothing to do" in done.stdout
    rows = audits(engine)
    assert [(a.action, a.details["mode"]) for a in rows] == [
        ("runbook.depth_failure", "dry_run"),
        ("runbook.depth_failure", "dry_run"),
        ("runbook.depth_failure", "act"),
        ("runbook.depth_failure", "dry_run"),
    ]
    assert json.loads(rows[2].details["acted"]) == [f"resubscribe depth on {con_id}"]
    assert rows[3].target == f"con_id:{con_id}"
