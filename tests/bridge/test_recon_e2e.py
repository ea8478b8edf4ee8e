"""Acceptance (issue 12): fills lost between the bridge and the ledger are found and repaired by a
reconciliation run, against the simulator, a real bridge, a real `ledger` worker and PostgreSQL;
`epm recon` as an operator runs it. The repaired ledger's positions equal the venue's; a ledger
fill the venue does not know is flagged; a positions difference over 5 is critical; a silent
bridge makes a failed run."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from ibgateway_bridge import client_api
from services.ledger import process_callback
from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from store.schema import fills, positions_current, risk_events
from tests.bridge.harness import (
    REPO,
    SPY_CON,
    bridge_in_process,
    ledger_messages,
    poll,
    sim_exec_ids,
    sim_thread,
    wait_ready,
)
from tests.bridge.test_ledger_e2e import ledger_worker
from tests.integration.conftest import wipe

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SPY = {"con_id": SPY_CON, "symbol": "SPY", "sec_type": "STK"}


@pytest.fixture
def recon_db(pg_url: str) -> Iterator[str]:
    """The session's PostgreSQL ledger, emptied: fills of other tests' venues would be unknown
    to this test's simulator."""
    upgrade(pg_url)
    wipe(make_engine(pg_url))
    yield pg_url
    wipe(make_engine(pg_url))
    dispose_engines()


def epm_recon(redis_url: str, db_url: str, tmp: Path, *args: str) -> tuple[int, Any]:
    """`epm recon --json ARGS` as an operator runs it; (exit code, the printed runs)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_REDIS_URL": redis_url,
        "EPM_DATABASE_URL": db_url,
        "EPM_DATA_DIR": str(tmp / "cli-data"),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "epm", "recon", "--json", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def drop_executions(r: redis.Redis, wanted: int) -> set[str]:
    """Take messages carrying executions off the `ledger` queue before any worker saw them (a
    broker that lost them); the execIds they carried."""
    dropped: set[str] = set()
    for raw in r.lrange("ledger", 0, -1):
        if len(dropped) >= wanted:
            break
        msg = json.loads(raw)
        arg = json.loads(base64.b64decode(msg["body"]))[0][0]
        name = msg["headers"]["task"]
        items = arg if name == "tasks.ledger.record_batch" else [{"kind": name, "payload": arg}]
        execs = {
            i["payload"]["exec_id"]
            for i in items
            if i["kind"] in ("execution", "tasks.ledger.record_execution")
        }
        if execs and r.lrem("ledger", 1, raw):
            dropped |= execs
    return dropped


def ledger_exec_ids(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.select(fills.c.execution_id))}


def ledger_positions(engine: sa.Engine) -> dict[int, Decimal]:
    out: dict[int, Decimal] = {}
    with engine.connect() as conn:
        for row in conn.execute(
            sa.select(positions_current.c.con_id, positions_current.c.quantity)
        ):
            out[row.con_id] = out.get(row.con_id, Decimal(0)) + row.quantity
    return {k: v for k, v in out.items() if v != 0}


def venue_positions(sim: Any) -> dict[int, Decimal]:
    return sim.call(
        lambda s: {i.con_id: q for i, q, _c in s.venue.positions() if q != 0}  # type: ignore[no-any-return]
    )


def test_lost_fills_are_recovered_and_unknown_ones_flagged(
    r: redis.Redis, redis_url: str, recon_db: str, tmp_path: Path
) -> None:
    engine = make_engine(recon_db)
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        for action, qty in (("BUY", "100"), ("BUY", "50"), ("BUY", "30"), ("SELL", "20")):
            oid = client_api.allocate_order_id(r)
            order = {"action": action, "quantity": qty, "order_type": "MKT"}
            client_api.enqueue_place(oid, f"recon-{oid}", SPY, order, client=r)
            poll(lambda: len(sim_exec_ids(sim)) >= 1, 15, what="a fill")
        poll(lambda: len(sim_exec_ids(sim)) >= 4, 20, what="four fills at the venue")
        execs = sim_exec_ids(sim)
        poll(
            lambda: len(ledger_messages(r, "tasks.ledger.record_execution")) >= len(execs),
            20,
            what="every fill on the ledger queue",
        )
        dropped = drop_executions(r, wanted=2)
        assert len(dropped) >= 2 and dropped < execs

        with ledger_worker(redis_url, recon_db, tmp_path / "worker.log"):
            poll(lambda: ledger_exec_ids(engine) == execs - dropped, 60, what="surviving fills")
            assert ledger_positions(engine) != venue_positions(sim)

            code, [run] = epm_recon(redis_url, recon_db, tmp_path, "--kind", "executions")
            assert code == 0
            assert (run["status"], run["checked"]) == ("warning", len(execs))
            assert (run["recovered"], run["flagged"]) == (len(dropped), 0)
            assert set(run["details"]["recovered_exec_ids"]) == dropped
            assert ledger_exec_ids(engine) == execs
            assert ledger_positions(engine) == venue_positions(sim) == {SPY_CON: Decimal(160)}

            code, runs = epm_recon(redis_url, recon_db, tmp_path)
            assert code == 0
            assert [(x["kind"], x["status"], x["recovered"]) for x in runs] == [
                ("executions", "ok", 0),
                ("positions", "ok", 0),
            ]

            # A fill the venue never made reaches the ledger (say a replayed test message).
            now = datetime.now(UTC).isoformat()
            phantom = {
                "exec_id": "0000beef.00000001.01.01",
                "req_id": -1,
                "client_id": 1,
                "con_id": SPY_CON,
                "symbol": "SPY",
                "sec_type": "STK",
                "side": "BOT",
                "shares": "10",
                "price": "450",
                "time": now,
                "received_at": now,
            }
            process_callback(
                "execution", phantom, engine=engine, redis_client=r, now=datetime.now(UTC)
            )
            code, [ex_run, pos_run] = epm_recon(redis_url, recon_db, tmp_path)
            assert code == 1
            assert (ex_run["status"], ex_run["flagged"], ex_run["recovered"]) == ("critical", 1, 0)
            assert ex_run["differences"][0]["exec_id"] == phantom["exec_id"]
            assert pos_run["status"] == "critical"
            [diff] = pos_run["differences"]
            assert (diff["con_id"], diff["venue"], diff["ledger"]) == (SPY_CON, "160", "170")
            with engine.connect() as conn:
                kinds = [row.kind for row in conn.execute(sa.select(risk_events.c.kind))]
            assert sorted(kinds) == ["RECON_POSITION_MISMATCH", "RECON_UNKNOWN_FILLS"]

    # The bridge is gone: the venue cannot answer, and the run says so.
    code, [run] = epm_recon(redis_url, recon_db, tmp_path, "--kind", "positions", "--timeout", "1")
    assert code == 2 and run["status"] == "failed"
