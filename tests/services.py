"""Access to the machine's shared PostgreSQL and Redis for tests, each run isolated.

Every test session gets its own PostgreSQL database and its own Redis db number (claimed with a
lease on db 0, so concurrent runs on one machine never share one). When a server is unreachable the
tests that need it skip with the reason, except under EPM_REQUIRE_SERVICES=1 (CI), where that is a
failure.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

PG_ADMIN_URL = os.environ.get("EPM_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_HOST = os.environ.get("EPM_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("EPM_TEST_REDIS_PORT", "6379"))
_LEASE_KEY = "epm-test:db-lease:{n}"
_LEASE_SECONDS = 3 * 3600


def services_required() -> bool:
    return os.environ.get("EPM_REQUIRE_SERVICES") == "1"


def unavailable(what: str, error: BaseException) -> None:
    """Skip (laptop) or fail (CI) because a shared service cannot be reached."""
    message = f"{what} unreachable: {error}"
    if services_required():
        pytest.fail(f"{message} (EPM_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a fresh database on the shared server; drop it afterwards."""
    import psycopg2

    name = f"epm_t_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=3)
    except psycopg2.OperationalError as e:
        unavailable("PostgreSQL at " + PG_ADMIN_URL, e)
        raise  # unreachable: unavailable() raises
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@contextmanager
def redis_database() -> Iterator[str]:
    """Lease a Redis db number (1-15) for this run, flushed before and after use."""
    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0, socket_connect_timeout=3)
    try:
        admin.ping()
    except redis.RedisError as e:
        unavailable(f"Redis at {REDIS_HOST}:{REDIS_PORT}", e)
        raise
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + 600
    number = None
    while number is None:
        for n in range(1, 16):
            if admin.set(_LEASE_KEY.format(n=n), token, nx=True, ex=_LEASE_SECONDS):
                number = n
                break
        else:
            if time.monotonic() > deadline:
                pytest.fail("no free Redis db number for this test run (1-15 all leased)")
            time.sleep(0.5)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number)
    client.flushdb()
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{number}"
    finally:
        client.flushdb()
        if admin.get(_LEASE_KEY.format(n=number)) == token.encode():
            admin.delete(_LEASE_KEY.format(n=number))
