"""IB order-id allocation: one Redis counter, raised to the venue's nextValidId at every connect.

`ib:order:last_id` holds the last id handed out. Allocation is an atomic `INCR`, so every worker
and the bridge draw from one sequence and an id is never handed out twice, across restarts and
reconnects. At connect IB says which id it expects next (`nextValidId`); the counter is raised to
`nextValidId - 1` when it is behind, never lowered (a gateway restart may forget ids we used).
"""

from __future__ import annotations

import redis

LAST_ID_KEY = "ib:order:last_id"

# Raise the counter to ARGV[1] if it is lower; return the value after (atomic on the server).
_SYNC_LUA = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > cur then
  redis.call('SET', KEYS[1], floor)
  return floor
end
return cur
"""


class OrderIdAllocator:
    """Allocate IB order ids from Redis; `sync` at every (re)connect with IB's nextValidId."""

    def __init__(self, client: redis.Redis, key: str = LAST_ID_KEY) -> None:
        self._redis = client
        self._key = key
        self._sync = client.register_script(_SYNC_LUA)

    def sync(self, next_valid_id: int) -> int:
        """Make the next allocation ≥ `next_valid_id`; return the last id now recorded."""
        return int(self._sync(keys=[self._key], args=[max(next_valid_id - 1, 0)]))

    def allocate(self) -> int:
        """A fresh order id (never returned before)."""
        return int(self._redis.incr(self._key))

    def allocate_block(self, count: int) -> list[int]:
        """`count` consecutive fresh ids in one round trip (brackets, bulk slices)."""
        if count < 1:
            raise ValueError("count must be >= 1")
        last = int(self._redis.incrby(self._key, count))
        return list(range(last - count + 1, last + 1))

    def last(self) -> int:
        """The last id handed out (0 when none)."""
        value = self._redis.get(self._key)
        return int(value) if value is not None else 0
