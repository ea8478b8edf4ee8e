"""The single-bridge lease: only one process may hold IB client ids 1 and 2.

A bridge takes `ib:bridge:lease` with `SET NX PX` and renews it well inside the expiry. Each grant
gets a fencing token from `INCR ib:bridge:fence`; the lease value carries it, and every write the
bridge makes that must come from the current holder (the sent markers, the acknowledgements) is a
Lua script that first checks the lease still holds that value. A bridge that loses its lease (it was
frozen past the expiry, Redis failed over) stops sending at once; a second bridge finds the key
taken and refuses to start, naming the holder.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

LEASE_KEY = "ib:bridge:lease"
FENCE_KEY = "ib:bridge:fence"

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseHeldError(RuntimeError):
    """Another bridge holds the lease; this one must not start."""

    def __init__(self, holder: str, ttl_ms: int) -> None:
        super().__init__(
            f"another bridge holds the IB lease ({LEASE_KEY} = {holder!r}, expires in {ttl_ms} ms);"
            " refusing to start: two bridges would fight over IB client ids 1 and 2"
        )
        self.holder = holder
        self.ttl_ms = ttl_ms


class LeaseLostError(RuntimeError):
    """The lease expired or was taken: this bridge must stop sending."""


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    token: int
    value: str


class BridgeLease:
    """Acquire, renew (on a thread) and release the bridge lease."""

    def __init__(
        self,
        client: redis.Redis,
        ttl_ms: int = 5000,
        key: str = LEASE_KEY,
        on_lost: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_ms < 300:
            raise ValueError("lease ttl must be at least 300 ms")
        self._redis = client
        self._ttl_ms = ttl_ms
        self._key = key
        self._on_lost = on_lost
        self._clock = clock
        self._renew = client.register_script(_RENEW_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._grant: LeaseGrant | None = None
        self._valid_until = 0.0
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        return self._key

    @property
    def grant(self) -> LeaseGrant:
        if self._grant is None:
            raise LeaseLostError("lease not acquired")
        return self._grant

    def acquire(self) -> LeaseGrant:
        """Take the lease or raise `LeaseHeldError` naming the current holder."""
        token = int(self._redis.incr(FENCE_KEY))
        value = f"{token}:{socket.gethostname()}:{os.getpid()}"
        started = self._clock()
        if not self._redis.set(self._key, value, nx=True, px=self._ttl_ms):
            holder = self._redis.get(self._key)
            ttl = int(self._redis.pttl(self._key))
            raise LeaseHeldError(str(holder), ttl)
        self._grant = LeaseGrant(token=token, value=value)
        self._valid_until = started + self._ttl_ms / 1000.0
        self._lost.clear()
        return self._grant

    def renew(self) -> bool:
        """Extend the lease; False (and the lost callback) when it is no longer ours."""
        if self._grant is None or self._lost.is_set():
            return False
        started = self._clock()
        try:
            ok = bool(self._renew(keys=[self._key], args=[self._grant.value, self._ttl_ms]))
        except redis.RedisError:
            # Redis unreachable: keep the lease only while its last known expiry is ahead.
            ok = self._clock() < self._valid_until
            if ok:
                return True
        if ok:
            self._valid_until = started + self._ttl_ms / 1000.0
            return True
        self._mark_lost()
        return False

    def _mark_lost(self) -> None:
        if not self._lost.is_set():
            self._lost.set()
            if self._on_lost is not None:
                self._on_lost()

    def held(self) -> bool:
        """True while the lease is ours by our own clock (checked before every socket write)."""
        if self._grant is None or self._lost.is_set():
            return False
        if self._clock() >= self._valid_until:
            self._mark_lost()
            return False
        return True

    def start_renewing(self) -> None:
        """Renew every ttl/3 on a daemon thread until `release`."""

        def loop() -> None:
            while not self._stop.wait(self._ttl_ms / 3000.0):
                if not self.renew():
                    return

        self._thread = threading.Thread(target=loop, name="bridge-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Give the lease up (clean shutdown), only if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._grant is not None:
            with contextlib.suppress(redis.RedisError):
                self._release(keys=[self._key], args=[self._grant.value])
        self._lost.set()


def lease_holder(client: redis.Redis, key: str = LEASE_KEY) -> tuple[str | None, int]:
    """(holder value, ms to expiry) for `epm status`; (None, -2) when free."""
    value = client.get(key)
    return (str(value) if value is not None else None, int(client.pttl(key)))
