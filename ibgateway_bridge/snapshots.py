"""Snapshots the workers ask for (reconciliation): the venue's executions and positions, answered
on Redis under the caller's request id instead of flowing into the ledger.

A `req_executions` or `req_positions` command that names a `request_id` is a snapshot request:
the sender registers the IB request id it writes under (`register`), the wrapper hands every
execDetails / positionMulti of a registered id to the control queue only (a reconciliation
reply must not reach the ledger behind the reconciliation's back: the run ingests what is
missing itself and counts it), and the control loop keeps each answer (the bridge's usual
payload). At the answer's end (execDetailsEnd / positionMultiEnd) they are written, in arrival
order, to the Redis list `ib:snapshot:{request_id}:items`, then the count to
`ib:snapshot:{request_id}:end`, which the worker waits on (`client_api.read_snapshot`); -1 there
means the answers could not be stored. Both keys expire after `SNAPSHOT_TTL_S`.

A connection lost mid-answer ends its snapshots as incomplete (`abandon`, -1); a bridge that
dies never writes the end and the worker's wait times out. Either way the run is `failed`,
never a comparison against half a list.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import redis

from epm.logging import get_logger

log = get_logger("ibgateway_bridge.snapshots")

SNAPSHOT_ITEMS_KEY = "ib:snapshot:{request_id}:items"
SNAPSHOT_END_KEY = "ib:snapshot:{request_id}:end"
SNAPSHOT_TTL_S = 600

# Control-message kinds the wrapper emits for a registered snapshot request.
SNAPSHOT_EXECUTION = "snapshot_execution"
SNAPSHOT_POSITION = "snapshot_position"
_ENDS = {"exec_details_end": "executions", "position_multi_end": "positions"}


# Answers per RPUSH when a snapshot is written out at its end.
_PUSH_CHUNK = 1000


@dataclass(slots=True)
class _Pending:
    request_id: str
    kind: str  # "executions" or "positions"
    session: str = ""  # the connection it was asked on
    items: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.items)


class SnapshotRequests:
    """IB request id → the worker's request id, for requests whose answers go to Redis only.

    `ids` is read by the decoder threads (membership only) while the sender adds to it; the
    registration always happens before the request's bytes are written, so no answer precedes it.
    Answers are held in memory until the end and written in one pipeline (a day's executions one
    round trip per answer would hold the control loop for a second per 10,000).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self.ids: set[int] = set()

    def register(self, req_id: int, request_id: str, kind: str, session: str = "") -> None:
        with self._lock:
            self._pending[req_id] = _Pending(request_id, kind, session)
            self.ids.add(req_id)

    def abandon(self, session: str) -> int:
        """The connection `session` went down: its unanswered snapshots end as incomplete (-1),
        so the worker fails at once instead of waiting out its timeout; how many."""
        with self._lock:
            dead = [k for k, p in self._pending.items() if p.session == session]
            gone = [self._pending.pop(k) for k in dead]
            self.ids.difference_update(dead)
        for pending in gone:
            self._end(pending, "-1")
        return len(gone)

    def on_message(self, kind: str, data: dict[str, Any]) -> _Pending | None:
        """Keep one answer of a registered request; at its end store them all and return it."""
        if kind not in (SNAPSHOT_EXECUTION, SNAPSHOT_POSITION) and kind not in _ENDS:
            return None
        req_id = int(data.get("req_id", -1))
        with self._lock:
            pending = self._pending.get(req_id)
            if pending is None:
                return None
            if kind not in _ENDS:
                pending.items.append(json.dumps(data, separators=(",", ":")))
                return None
            del self._pending[req_id]
            self.ids.discard(req_id)
        self._store(pending)
        return pending

    def _store(self, pending: _Pending) -> None:
        """The answers, then the end (the count, or -1 when the answers could not be stored)."""
        items = SNAPSHOT_ITEMS_KEY.format(request_id=pending.request_id)
        count = str(pending.count)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.delete(items)
            for start in range(0, pending.count, _PUSH_CHUNK):
                pipe.rpush(items, *pending.items[start : start + _PUSH_CHUNK])
            pipe.expire(items, SNAPSHOT_TTL_S)
            pipe.execute()
        except redis.RedisError as e:
            log.warning("snapshot_items_lost", request_id=pending.request_id, error=repr(e))
            count = "-1"
        self._end(pending, count)

    def _end(self, pending: _Pending, count: str) -> None:
        end = SNAPSHOT_END_KEY.format(request_id=pending.request_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(end, count)
        pipe.expire(end, SNAPSHOT_TTL_S)
        pipe.execute()
        log.info("snapshot_answered", request_id=pending.request_id, kind=pending.kind, items=count)
