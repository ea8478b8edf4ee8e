"""`epm stress` through the real queues: 500 intents in 10 s across strategies (issue 13), every
one accounted for, none sent twice.

The Procfile's trading lines run against this run's PostgreSQL database and Redis db (honcho,
as in test_procfile.py); `epm stress` is a separate process sending where signal producers send.
Beyond its own account, the ledger is read directly: one intent row per accepted signal, and no
intent filled beyond its quantity (an order sent twice would show there).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from store.migrate import upgrade
from tests.integration.procfile_stack import procfile_stack
from tests.services import postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

TRADING_LINES = ("sim", "bridge", "relay", "intake", "orders", "ledger", "beat")


@pytest.fixture
def stress_db() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        yield url


def test_stress_of_500_intents_accounts_for_every_one(
    stress_db: str, redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "stress.json"
    # The concurrency guard raised so the run loads the order path rather than the guard; what
    # it still refuses is counted as CONCURRENCY_LIMIT like any refusal.
    with procfile_stack(
        stress_db, redis_url, tmp_path, lines=TRADING_LINES, EPM_MAX_ACTIVE_INTENTS_DEFAULT="200"
    ) as stack:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "epm",
                "stress",
                "--intents",
                "500",
                "--over",
                "10",
                "--wait",
                "180",
                "--seed",
                "3",
                "--json",
                "--out",
                str(out),
            ],
            env=stack.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=400,
        )
        stack.assert_running()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout)
    saved = json.loads(out.read_text())
    assert summary["sent"] == 500
    assert summary["unaccounted"] == [] and summary["duplicated"] == []
    assert summary["accepted"] + summary["rejected"] == 500
    assert summary["all_accounted"] is True
    # The mix's refusals keep their own reasons under load.
    assert summary["rejected_by_reason"].get("RISK_LIMIT", 0) >= 1
    assert summary["rejected_by_reason"].get("INVALID_QUANTITY", 0) >= 1
    assert summary["accepted"] > 0, summary
    assert summary["still_working"] == 0, summary
    assert summary["latency_first_fill"]["n"] > 0
    outcomes = {o["signal_id"]: o for o in saved["outcomes"]}
    assert len(outcomes) == 500
    # Each kind of the mix is refused for its own reason, or by the guard when it was full.
    allowed = {
        "valid": {None, "CONCURRENCY_LIMIT"},
        "oversize": {"RISK_LIMIT", "CONCURRENCY_LIMIT"},
        "negative": {"INVALID_QUANTITY"},
        "cover": {"SIDE_POSITION_MISMATCH", "CONCURRENCY_LIMIT"},
    }
    for o in outcomes.values():
        assert o["reason"] in allowed[o["kind"]], o
        if o["kind"] == "valid" and o["reason"] is None:
            assert o["status"] == "COMPLETED", o

    engine = sa.create_engine(stress_db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT i.signal_id, i.status, i.quantity, "
                    "COALESCE(SUM(f.shares), 0) AS filled FROM intents i "
                    "LEFT JOIN execution_orders o ON o.intent_id = i.id "
                    "AND o.parent_order_id IS NULL "
                    "LEFT JOIN fills f ON f.order_id = o.id AND f.superseded_by IS NULL "
                    "WHERE i.signal_id LIKE :p GROUP BY i.signal_id, i.status, i.quantity"
                ),
                {"p": f"stress-{saved['run']}-%"},
            ).all()
    finally:
        engine.dispose()
    by_id = {row.signal_id: row for row in rows}
    # Every outcome read from a row is that row; the others were refused before one existed.
    for sid, outcome in outcomes.items():
        if outcome["status"] == "REFUSED":
            assert sid not in by_id
        else:
            assert by_id[sid].status == outcome["status"]
    for row in rows:
        if row.quantity is None:  # refused before its quantity was read
            assert row.status == "REJECTED" and Decimal(row.filled) == 0, row
            continue
        assert Decimal(row.filled) <= Decimal(row.quantity), row
        if row.status == "COMPLETED":
            assert Decimal(row.filled) == Decimal(row.quantity), row
