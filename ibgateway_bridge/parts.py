"""What the bridge's parts (reader, sender, resync, replacements) need of the bridge they serve.

They hold a reference typed by this Protocol instead of the `Bridge` class itself, so the wiring
(`runtime.Bridge`) imports the parts and never the other way round. The command log is a property
of the bridge (it exists once the lease is taken, and a drill may swap it): the parts ask for it
each time.
"""

from __future__ import annotations

import queue
import threading
from datetime import UTC, datetime
from typing import Protocol

import redis

from epm.backoff import Backoff
from epm.logging import get_logger
from epm.settings import Settings
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.config import BridgeConfig
from ibgateway_bridge.connection import IBSession
from ibgateway_bridge.ids import OrderIdAllocator
from ibgateway_bridge.lease import BridgeLease
from ibgateway_bridge.marketdata import MarketDataLines
from ibgateway_bridge.outbox import Outbox
from ibgateway_bridge.snapshots import SnapshotRequests
from ibgateway_bridge.venue_orders import VenueOrders
from ibgateway_bridge.wrapper import Message

log = get_logger("ibgateway_bridge")


class BridgeParts(Protocol):
    settings: Settings
    config: BridgeConfig
    redis: redis.Redis
    stop_event: threading.Event
    lease: BridgeLease
    allocator: OrderIdAllocator
    venue: VenueOrders
    md: MarketDataLines
    data: queue.Queue[Message]
    outbox: Outbox
    snapshots: SnapshotRequests
    orders: IBSession
    account: IBSession | None

    @property
    def commands(self) -> cmds.CommandLog: ...

    def next_req_id(self) -> int: ...

    def lease_lost(self) -> None: ...


def now() -> datetime:
    return datetime.now(UTC)


def announce_refusal(
    parts: BridgeParts,
    stream_id: str,
    reason: cmds.BridgeRejectReason,
    message: str,
    command: cmds.Command | None,
) -> None:
    """Announce a refusal, then acknowledge the entry; never raise into the calling thread.

    A lost Redis connection is waited out (the owner must hear of the refusal). A write Redis
    refuses outright (say WRONGTYPE on the rejects stream) would fail forever: it is logged and
    the entry left unacknowledged, so the next start refuses it again, while the caller carries
    on with the commands behind it (the reader once died here and the bridge went deaf).
    """
    backoff = Backoff(0.05, 2.0)
    while True:
        try:
            cmds.publish_reject(parts.redis, stream_id, reason, message, command, now())
            parts.commands.ack(stream_id)
            break
        except (redis.ConnectionError, redis.TimeoutError) as e:
            if parts.stop_event.is_set():
                return
            delay = backoff.next_delay()
            log.warning("reject_retry", stream_id=stream_id, error=repr(e), delay_s=delay)
            parts.stop_event.wait(delay)
        except redis.RedisError as e:
            log.error("reject_unrecorded", stream_id=stream_id, reason=str(reason), error=repr(e))
            return
    log.warning("command_refused", stream_id=stream_id, reason=str(reason), detail=message)
