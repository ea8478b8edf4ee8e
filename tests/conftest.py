"""Shared fixtures: isolated PostgreSQL database and Redis db per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import postgres_database, redis_database


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database for this session."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis db number leased to this session (flushed before and after)."""
    with redis_database() as url:
        yield url


@pytest.fixture(autouse=True)
def _no_bridge_left_behind(request: pytest.FixtureRequest) -> None:
    """A test on the session's Redis db starts without an earlier test's bridge state.

    Tests share one db number; a bridge a previous test ran leaves `ib:bridge:state` naming its
    risk connection, which switches intake's headroom gate on (services/risk/account.py, mode
    auto) and, its heartbeat stale, refuses every opening intent of a test with no bridge.
    """
    if "redis_url" not in request.fixturenames:
        return
    import redis

    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        client.delete("ib:bridge:state")
    finally:
        client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def epm_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """Point EPM_* settings at a private data dir; tests add the store URLs they need."""
    from epm.redis_conn import reset_redis_cache
    from epm.settings import reset_settings_cache

    for var in ("EPM_REDIS_URL", "EPM_DATABASE_URL", "EPM_BROKER_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EPM_DATA_DIR", str(tmp_path / "epm-data"))
    reset_settings_cache()
    reset_redis_cache()
    yield monkeypatch
    reset_settings_cache()
    reset_redis_cache()
