"""The concurrency guard holds across worker processes: a real prefork worker, PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from store.db import make_engine
from store.migrate import upgrade
from store.schema import intents
from tests.integration.intake_procs import process_env, running, send_intents, wait_for, worker_argv
from tests.services import postgres_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_guard_url() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        yield url


def stored(url: str, signal_ids: list[str]) -> list[dict[str, Any]]:
    with make_engine(url).connect() as conn:
        query = sa.select(intents).where(intents.c.signal_id.in_(signal_ids))
        return [dict(m) for m in conn.execute(query).mappings()]


def test_worker_enforces_the_concurrency_guard_across_processes(
    tmp_path: Path,
    pg_guard_url: str,
    redis_url: str,
) -> None:
    """A limit of 2 for Spread_Roll: 8 intents racing through 2 processes, 2 admitted."""
    env = process_env(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL=pg_guard_url,
        EPM_DATA_DIR=str(tmp_path),
        EPM_MAX_ACTIVE_INTENTS='{"Spread_Roll": 2}',
    )
    expiry = datetime.now(UTC).date() + timedelta(days=30)
    payloads = [
        {
            "signal_id": f"guard-{uuid.uuid4().hex[:10]}",
            "strategy": "Spread_Roll",
            "instrument": f"QQQ{expiry:%y%m%d}P00400000",
            "side": "SELL",
            "quantity": "1",
            "urgency": "Normal",
            "time_in_force": "DAY",
        }
        for _ in range(8)
    ]
    with running(worker_argv(concurrency=2), env, tmp_path / "guard-worker.log"):
        send_intents(redis_url, payloads)
        ids = [p["signal_id"] for p in payloads]
        wait_for(lambda: len(stored(pg_guard_url, ids)) == 8, what="8 guard rows")
    rows = stored(pg_guard_url, ids)
    assert sum(r["status"] == "VALIDATED" for r in rows) == 2
    assert sum(r["reject_reason"] == "CONCURRENCY_LIMIT" for r in rows) == 6
