"""Bridge test fixtures: a flushed Redis client per test on the session's leased db."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
