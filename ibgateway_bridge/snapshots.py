"""Snapshots the workers ask for (reconciliation): the venue's executions and positions, answered
on Redis under the caller's request id instead of flowing into the ledger.

A `req_executions` or `req_positions` command that names a `request_id` is a snapshot request:
the sender registers the IB request id it writes under (`register`), the wrapper hands every
execDetails / positionMulti of a registered id to the control queue only (a reconciliation
reply must not reach the ledger behind the reconciliation's back: the run ingests what is
missing itself and counts it), and the control loop appends each answer, as the bridge's usual
payload, to `ib:snapshot:{request_id}:items` (a Redis list, in arrival order). The end of the
answer (execDetailsEnd / positionMultiEnd) pushes the item count to `ib:snapshot:{request_id}:end`,
which the worker waits on (`client_api.read_snapshot`); -1 there means an answer could not be
stored and the snapshot is incomplete. Both keys expire after `SNAPSHOT_TTL_S`.

A bridge that dies or reconnects mid-answer never writes the end: the worker's wait times out
and its run is `failed`, never a comparison against half a list.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
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


@dataclass(slots=True)
class _Pending:
    request_id: str
    kind: str  # "executions" or "positions"
    count: int = 0
    # An answer Redis would not take: the snapshot is incomplete and its end says so (-1).
    broken: bool = False


class SnapshotRequests:
    """IB request id → the worker's request id, for requests whose answers go to Redis only.

    `ids` is read by the decoder threads (membership only) while the sender adds to it; the
    registration always happens before the request's bytes are written, so no answer precedes it.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self.ids: set[int] = set()

    def register(self, req_id: int, request_id: str, kind: str) -> None:
        with self._lock:
            self._pending[req_id] = _Pending(request_id, kind)
            self.ids.add(req_id)

    def on_message(self, kind: str, data: dict[str, Any]) -> _Pending | None:
        """Store one answer of a registered request; returns the request when it just ended."""
        if kind not in (SNAPSHOT_EXECUTION, SNAPSHOT_POSITION) and kind not in _ENDS:
            return None
        req_id = int(data.get("req_id", -1))
        with self._lock:
            pending = self._pending.get(req_id)
            if pending is None:
                return None
            if kind in _ENDS:
                del self._pending[req_id]
                self.ids.discard(req_id)
            else:
                pending.count += 1
        items = SNAPSHOT_ITEMS_KEY.format(request_id=pending.request_id)
        if kind in _ENDS:
            end = SNAPSHOT_END_KEY.format(request_id=pending.request_id)
            pipe = self._redis.pipeline(transaction=True)
            pipe.rpush(end, "-1" if pending.broken else str(pending.count))
            pipe.expire(end, SNAPSHOT_TTL_S)
            pipe.expire(items, SNAPSHOT_TTL_S)
            pipe.execute()
            log.info(
                "snapshot_answered",
                request_id=pending.request_id,
                kind=pending.kind,
                items=pending.count,
            )
            return pending
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.rpush(items, json.dumps(data, separators=(",", ":")))
            pipe.expire(items, SNAPSHOT_TTL_S)
            pipe.execute()
        except redis.RedisError as e:
            pending.broken = True
            log.warning("snapshot_item_lost", request_id=pending.request_id, error=repr(e))
        return None
