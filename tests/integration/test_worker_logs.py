"""A real prefork worker (Redis broker, PostgreSQL ledger) with `EPM_LOG_FILE` and
`EPM_LOG_FORMAT=json` writes every line, its own and Celery's, as one JSON object to the file,
each line of a task carrying that task's id and the ids its payload names; nothing reaches the
worker's terminal but Celery's start banner."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kombu import Connection

from store.db import dispose_engines, make_engine
from store.migrate import upgrade
from store.schema import fills, intents
from tests.integration.intake_procs import process_env, running, wait_for
from tests.integration.test_ledger_properties import T0, A, _reset
from tests.services import postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def ledger_url() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        _reset(make_engine(url))
        yield url
        dispose_engines()


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_task_in_a_real_worker_logs_json_lines_with_its_task_id_and_ids(
    ledger_url: str, redis_url: str, tmp_path: Path
) -> None:
    from tasks.intake import submit_intent
    from tasks.ledger import record_execution

    log_file = tmp_path / "logs" / "worker.jsonl"
    env = process_env(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL=ledger_url,
        EPM_DATA_DIR=str(tmp_path / "data"),
        EPM_LOG_FILE=str(log_file),
        EPM_LOG_FORMAT="json",
    )
    argv = [
        sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "intake,ledger",
        "-c", "2", "--pool", "prefork", "-n", f"logs-{uuid.uuid4().hex[:8]}@%h",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    signal_id = f"log-{uuid.uuid4().hex[:10]}"
    intent = {
        "signal_id": signal_id,
        "strategy": "Momentum_EQ",
        "instrument": "AAPL",
        "side": "BUY",
        "quantity": "10",
        "urgency": "Normal",
        "time_in_force": "DAY",
    }
    execution = {
        "exec_id": f"0000e.{uuid.uuid4().hex[:4]}.01.01",
        "order_id": A["order_id"],
        "client_id": A["client_id"],
        "perm_id": A["perm_id"],
        "order_ref": A["ref"],
        "con_id": 265598,
        "symbol": "AAPL",
        "sec_type": "STK",
        "side": "BOT",
        "shares": "10",
        "price": "190.01",
        "account": "DU1",
        "time": T0.isoformat(),
        "received_at": T0.isoformat(),
    }
    intake_id, ledger_id = str(uuid.uuid4()), str(uuid.uuid4())
    terminal = tmp_path / "terminal.log"
    engine = make_engine(ledger_url)
    with running(argv, env, terminal) as proc:
        with Connection(redis_url) as conn:
            producer = conn.Producer()
            # The intent as JSON text, the way `epm submit` may carry it: its ids are still read.
            submit_intent.apply_async(
                args=[json.dumps(intent)], producer=producer, task_id=intake_id
            )
            record_execution.apply_async(args=[execution], producer=producer, task_id=ledger_id)

        def done() -> bool:
            with engine.connect() as c:
                stored = c.execute(
                    sa.select(sa.func.count()).where(intents.c.signal_id == signal_id)
                ).scalar_one()
                filled = c.execute(
                    sa.select(sa.func.count()).where(fills.c.execution_id == execution["exec_id"])
                ).scalar_one()
            succeeded = [
                line
                for line in _lines(log_file)
                if "succeeded" in str(line["event"])
                and line.get("task_id") in (intake_id, ledger_id)
            ]
            return stored == 1 and filled == 1 and len(succeeded) == 2

        wait_for(done, timeout_s=120, what="both tasks to run and log")
        assert proc.poll() is None, terminal.read_text()[-3000:]

    lines = _lines(log_file)  # every line parses: json.loads raised otherwise
    assert all(isinstance(line, dict) and "event" in line and "level" in line for line in lines)
    assert any(line.get("logger", "").startswith("celery") for line in lines)

    outcome = [line for line in lines if line["event"] == "intake.outcome"]
    assert len(outcome) == 1
    assert outcome[0]["task_id"] == intake_id
    assert outcome[0]["task"] == "tasks.intake.submit_intent"
    assert outcome[0]["signal_id"] == signal_id
    assert outcome[0]["strategy"] == "Momentum_EQ"
    assert outcome[0]["status"] == "VALIDATED"

    recorded = [line for line in lines if line["event"] == "ledger.recorded"]
    assert len(recorded) == 1
    assert recorded[0]["task_id"] == ledger_id
    assert recorded[0]["task"] == "tasks.ledger.record_execution"
    assert recorded[0]["order_id"] == A["order_id"]
    assert recorded[0]["client_id"] == A["client_id"]
    assert recorded[0]["exec_id"] == execution["exec_id"]
    assert recorded[0]["client_order_id"] == A["ref"]

    # Celery's own line for the task is bound too, and nothing of one task leaks into the other.
    for task_id in (intake_id, ledger_id):
        mine = [line for line in lines if line.get("task_id") == task_id]
        assert any("succeeded" in line["event"] for line in mine)
    assert all(line.get("signal_id") in (None, signal_id) for line in lines if line.get("task_id"))
    assert not any(line.get("signal_id") for line in lines if line.get("task_id") == ledger_id)

    # The terminal got no log line: a live view drawn there is not cut through.
    assert '"event"' not in terminal.read_text()
    assert "intake.outcome" not in terminal.read_text()
