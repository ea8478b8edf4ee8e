"""IB order-id allocation: one Redis counter, raised to the venue's nextValidId at every connect.

`ib:order:last_id` holds the last id handed out. Allocation is an atomic `INCR`, so every worker
and the bridge draw from one sequence and an id is never handed out twice, across restarts and
reconnects. At connect IB says which id it expects next (`nextValidId`); the counter is raised to
`nextValidId - 1` when it is behind, never lowered (a gateway restart may forget ids we used).

Allocation refuses (`OrderIdCounterMissingError`) when the key is missing: Redis lost it (eviction,
a failover without persistence, a flush) and an `INCR` would count again from 1, handing out ids
of orders still working at IB (a placement under such an id modifies that order). The counter is
re-seeded from what outlives Redis' memory: the ledger's highest id and the sent markers
(`client_api.allocate_order_id(floor=...)`, `epm ledger reseed-order-ids`), or the bridge's next
connect (`sync`).
"""

from __future__ import annotations

import redis

LAST_ID_KEY = "ib:order:last_id"

# Raise the counter to ARGV[1] if it is lower or missing (a fresh account's nextValidId 1 creates
# it at 0); return the value after (atomic on the server).
_SYNC_LUA = """
local raw = redis.call('GET', KEYS[1])
local floor = tonumber(ARGV[1])
if (not raw) or floor > tonumber(raw) then
  redis.call('SET', KEYS[1], floor)
  return floor
end
return tonumber(raw)
"""

_MISSING = "EPM_ORDER_ID_COUNTER_MISSING"

# INCRBY only an existing counter: a missing one is an error, never a count from 0.
_ALLOCATE_LUA = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('{_MISSING}')
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""

# Create the counter at ARGV[1] only if it is missing (SET NX: concurrent seeders agree on the
# first one's value); return the value now recorded.
_SEED_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return tonumber(ARGV[1])
end
return tonumber(redis.call('GET', KEYS[1]))
"""


class OrderIdCounterMissingError(RuntimeError):
    """`ib:order:last_id` is gone: no id is handed out until it is re-seeded."""

    code = "ORDER_ID_COUNTER_MISSING"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"{key} is missing (Redis lost it): refusing to allocate an IB order id that may be "
            "in use; re-seed it from the ledger (`epm ledger reseed-order-ids`) or reconnect "
            "the bridge"
        )
        self.key = key


class OrderIdAllocator:
    """Allocate IB order ids from Redis; `sync` at every (re)connect with IB's nextValidId."""

    def __init__(self, client: redis.Redis, key: str = LAST_ID_KEY) -> None:
        self._redis = client
        self._key = key
        self._sync = client.register_script(_SYNC_LUA)
        self._allocate = client.register_script(_ALLOCATE_LUA)
        self._seed = client.register_script(_SEED_LUA)

    def sync(self, next_valid_id: int) -> int:
        """Make the next allocation ≥ `next_valid_id`; return the last id now recorded."""
        return int(self._sync(keys=[self._key], args=[max(next_valid_id - 1, 0)]))

    def seed(self, last_used: int) -> int:
        """Create the counter at `last_used` if it is missing; return the last id recorded."""
        return int(self._seed(keys=[self._key], args=[max(last_used, 0)]))

    def raise_to(self, last_used: int) -> int:
        """Raise the counter to `last_used` if it is lower (never lowered); the value after."""
        return int(self._sync(keys=[self._key], args=[max(last_used, 0)]))

    def allocate(self) -> int:
        """A fresh order id (never returned before).

        Raises
        ------
        OrderIdCounterMissingError
            When the counter key is missing.
        """
        return self._incr(1)

    def allocate_block(self, count: int) -> list[int]:
        """`count` consecutive fresh ids in one round trip (brackets, bulk slices)."""
        if count < 1:
            raise ValueError("count must be >= 1")
        last = self._incr(count)
        return list(range(last - count + 1, last + 1))

    def last(self) -> int:
        """The last id handed out (0 when none)."""
        value = self._redis.get(self._key)
        return int(value) if value is not None else 0

    def _incr(self, count: int) -> int:
        try:
            return int(self._allocate(keys=[self._key], args=[count]))
        except redis.ResponseError as e:
            if _MISSING in str(e):
                raise OrderIdCounterMissingError(self._key) from None
            raise
