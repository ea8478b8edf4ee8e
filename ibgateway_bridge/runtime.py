"""The bridge process, wired: lease, two IB sessions, the command reader, the senders, the outbox.

Threads: one lease renewer; per session a connect/control loop, a decoder (EClient.run) and a
sender that takes commands from that session's priority backlog through its pacer (`sending`);
one command reader (Redis stream → backlogs, `reader`); one outbox (callbacks → tasks/Redis).
Order commands go to client 1 (orders), data commands to client 2 (account), so order pacing is
never spent on market data. What a session does at every (re)connect is `resync`; re-placed orders
and asked cancels are `replacements`. This module only builds them and routes the session hooks.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from datetime import datetime
from typing import Any

import redis

from epm.settings import Settings
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.config import FARMS_KEY, STATE_KEY, BridgeConfig
from ibgateway_bridge.connection import IB_LOST_SERVERS, IBSession, SessionState
from ibgateway_bridge.ids import OrderIdAllocator
from ibgateway_bridge.lease import BridgeLease, LeaseGrant, LeaseHeldError
from ibgateway_bridge.marketdata import MarketDataLines
from ibgateway_bridge.outbox import Outbox
from ibgateway_bridge.parts import log, now
from ibgateway_bridge.reader import CommandReader
from ibgateway_bridge.replacements import Replacements
from ibgateway_bridge.resync import Resync
from ibgateway_bridge.sending import Sender
from ibgateway_bridge.snapshots import SnapshotRequests
from ibgateway_bridge.venue_clock import CLOCK_KEY, VenueClockSampler
from ibgateway_bridge.venue_orders import VenueOrders
from ibgateway_bridge.wrapper import Message
from models.ib_codes import IbCodeClass, classify

__all__ = ["FARMS_KEY", "STATE_KEY", "Bridge", "BridgeConfig"]

# Request ids of our own (executions, account streams), far above any order id.
REQ_ID_BASE = 1_000_000_000


class Bridge:
    """Wire everything together; `start()` returns once the threads run, `stop()` joins them."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        celery_app: Any,
        config: BridgeConfig | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or BridgeConfig()
        self.redis = client
        self.celery_app = celery_app
        self.stop_event = threading.Event()
        self.lease = BridgeLease(client, ttl_ms=self.config.lease_ttl_ms, on_lost=self.lease_lost)
        self.allocator = OrderIdAllocator(client)
        self.data: queue.Queue[Message] = queue.Queue()
        self.md = MarketDataLines(client, self.config.md_line_limit)
        self.outbox = Outbox(
            self.data,
            client,
            celery_app,
            self.md,
            settings.ib_client_id_orders,
            batch_max=self.config.batch_max,
            send_extra_tasks=self.config.send_extra_tasks,
            batch_items=self.config.batch_items,
        )
        self._command_log: cmds.CommandLog | None = None
        # What the venue said of client 1's orders, and what the bridge still waits to hear.
        self.venue = VenueOrders()
        self.venue_clock = VenueClockSampler()
        self._req_ids = itertools.count(REQ_ID_BASE)
        self._req_lock = threading.Lock()
        # Executions / positions snapshots workers asked for (reconciliation), by IB request id.
        self.snapshots = SnapshotRequests(client)
        # The parts reach the sessions through this object when they run, not at construction.
        self.replacements = Replacements(self)
        self.resync = Resync(self)
        self.sender = Sender(self, self.replacements)
        self.reader = CommandReader(self)
        self.orders = self._session("orders", settings.ib_client_id_orders)
        self.account = (
            self._session("account", settings.ib_client_id_account)
            if self.config.account_session
            else None
        )
        self._threads: list[threading.Thread] = []
        self._metrics_server: Any = None
        self.metrics_port: int | None = None
        self.outbox.on_position = self.resync.ensure_pnl_single

    def _session(self, name: str, client_id: int) -> IBSession:
        return IBSession(
            name=name,
            host=self.settings.ib_host,
            port=self.settings.ib_port,
            client_id=client_id,
            data_queue=self.data,
            rate=self.settings.pacing_msgs_per_sec,
            on_control=self._on_control,
            on_connected=self.resync.on_connected,
            on_state=self._on_state,
            reconnect_base_s=self.config.reconnect_base_s,
            reconnect_cap_s=self.config.reconnect_cap_s,
            connect_timeout_s=self.config.connect_timeout_s,
            id_in_use_retry_s=self.config.id_in_use_retry_s,
            id_in_use_max_retries=self.config.id_in_use_max_retries,
            snapshot_ids=self.snapshots.ids,
        )

    @property
    def commands(self) -> cmds.CommandLog:
        """The fenced stream reader/marker writer; exists once `start` took the lease."""
        if self._command_log is None:
            raise RuntimeError("bridge not started: no lease, no command log")
        return self._command_log

    def sessions(self) -> list[IBSession]:
        return [s for s in (self.orders, self.account) if s is not None]

    def next_req_id(self) -> int:
        """A request id of our own (thread-safe: the control and sender threads both ask)."""
        with self._req_lock:
            return next(self._req_ids)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Take the lease (raises `LeaseHeldError`), then start every thread."""
        grant = self._acquire_lease()
        self.lease.start_renewing()
        self._command_log = cmds.CommandLog(self.redis, self.lease.key, grant.value)
        cmds.ensure_group(self.redis)
        self.commands.claim_orphans()
        self.redis.hset(
            STATE_KEY,
            # The heartbeat from the first moment: intake's headroom gate reads it as the
            # bridge being alive (services/risk/account.py), before the loop's first beat.
            mapping={
                "lease": grant.value,
                "started_at": now().isoformat(),
                "stopped_at": "",
                "heartbeat": now().isoformat(),
            },
        )
        log.info("bridge_starting", lease=grant.value, port=self.settings.ib_port)
        self._spawn("outbox", self.outbox.run)
        for session in self.sessions():
            session.start()
            self._spawn(f"sender-{session.name}", self.sender.run, session)
        self._spawn("commands", self.reader.run)
        self._spawn("heartbeat", self._heartbeat_loop)
        if self.config.metrics_port is not None:
            self.metrics_port = self._serve_metrics(self.config.metrics_port)

    def _serve_metrics(self, port: int) -> int:
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr="127.0.0.1")
        self._metrics_server = server
        bound = int(server.server_port)
        self.redis.hset(STATE_KEY, "metrics_port", bound)
        log.info("metrics_serving", port=bound)
        return bound

    def _acquire_lease(self) -> LeaseGrant:
        deadline = time.monotonic() + self.config.lease_wait_s
        while True:
            try:
                return self.lease.acquire()
            except LeaseHeldError as e:
                if time.monotonic() + 0.1 > deadline:
                    raise
                log.info("lease_waiting", holder=e.holder, expires_in_ms=e.ttl_ms)
                time.sleep(min(max(e.ttl_ms, 50) / 1000.0, 0.5))

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self.stop_event.set()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        for session in self.sessions():
            session.stop()
        self.outbox.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self.lease.release()
        with contextlib.suppress(redis.RedisError):
            self.redis.hset(STATE_KEY, mapping={"stopped_at": now().isoformat()})

    def wait(self) -> None:
        while not self.stop_event.wait(0.5):
            pass

    def lease_lost(self) -> None:
        log.error("lease_lost_stopping")
        with contextlib.suppress(redis.RedisError):
            cmds.raise_alert(self.redis, "lease_lost", "bridge lease lost; stopping", now())
        for session in self.sessions():
            session.ready.clear()
        self.stop_event.set()

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.wait(1.0):
            self._ask_venue_time()
            try:
                mapping: dict[Any, Any] = {
                    "heartbeat": now().isoformat(),
                    "last_order_id": self.allocator.last(),
                }
                for s in self.sessions():
                    mapping[f"client{s.client_id}"] = str(s.state)
                    mapping[f"backlog_{s.name}"] = len(s.backlog)
                self.redis.hset(STATE_KEY, mapping=mapping)
            except redis.RedisError as e:
                log.warning("heartbeat_failed", error=repr(e))

    def _ask_venue_time(self) -> None:
        """reqCurrentTime on the account connection; the answer feeds `ib:clock`."""
        account = self.account
        client = account.client if account is not None else None
        if account is None or client is None or not account.ready.is_set():
            return
        try:
            client.sends(client.reqCurrentTime)
        except Exception as e:  # a request that cannot go out now is asked again in a second
            log.debug("venue_time_not_asked", error=repr(e))

    # --- session hooks ----------------------------------------------------------------------
    def _on_state(self, session: IBSession, state: SessionState) -> None:
        with contextlib.suppress(redis.RedisError):
            self.redis.hset(STATE_KEY, f"client{session.client_id}", str(state))
            if state is SessionState.READY:  # `epm metrics` counts the reconnects from it
                self.redis.hincrby(STATE_KEY, f"ready_count_client{session.client_id}", 1)
        if state in (SessionState.DISCONNECTED, SessionState.CONNECTING, SessionState.STOPPED):
            # Answers of snapshots asked on the lost socket will never end: say so now.
            with contextlib.suppress(redis.RedisError):
                self.snapshots.abandon(session.name)
        if (
            state in (SessionState.DISCONNECTED, SessionState.CONNECTING)
            and session is self.account
        ):
            self.md.reset()

    def _on_control(self, session: IBSession, msg: Message) -> None:
        kind = msg.kind
        ended = self.snapshots.on_message(kind, msg.data)
        if ended is not None and ended.kind == "positions" and session.client is not None:
            # reqPositionsMulti keeps streaming after its end: one answer is all a snapshot wants.
            session.client.cancelPositionsMulti(int(msg.data["req_id"]))
        if kind in ("order_seen", "completed_order") and session is self.orders:
            order_id = msg.data.get("ib_order_id")
            self.venue.seen(
                int(order_id) if order_id else None,
                msg.data.get("order_ref") or None,
                msg.data.get("ib_status") or None,
            )
        elif kind == "what_if" and session is self.orders:
            self._on_what_if(msg)
        elif kind == "current_time" and session is self.account:
            venue = datetime.fromisoformat(str(msg.data["time"]))
            fields: dict[Any, Any] = dict(self.venue_clock.sample(venue, msg.received_at))
            with contextlib.suppress(redis.RedisError):
                self.redis.hset(CLOCK_KEY, mapping=fields)
        elif kind == "next_valid_id" and session is self.orders:
            self.allocator.sync(int(msg.data["ib_order_id"]))
            self.replacements.replace_pending()
        elif kind == "error":
            self._on_error(session, msg)

    def _on_what_if(self, msg: Message) -> None:
        """Store a what-if's margins for the worker that asked (`client_api.what_if_answer`)."""
        data = dict(msg.data)
        ref = str(data.get("order_ref") or "")
        self.venue.seen(int(data["ib_order_id"]), ref or None, None)  # answered, never working
        if not ref:
            return
        key = cmds.WHAT_IF_KEY.format(order_ref=ref)
        fields: dict[Any, Any] = {k: str(v) for k, v in data.items()}
        fields["received_at"] = msg.received_at.isoformat()
        with contextlib.suppress(redis.RedisError):
            self.redis.hset(key, mapping=fields)
            self.redis.expire(key, cmds.WHAT_IF_TTL_S)

    def _on_error(self, session: IBSession, msg: Message) -> None:
        code = int(msg.data["code"])
        text = str(msg.data["message"])
        kind = classify(code).kind
        at = now()
        if kind is IbCodeClass.CLIENT_ID_IN_USE:
            cmds.raise_alert(
                self.redis,
                "client_id_in_use",
                f"client id {session.client_id} already in use; {session.name} will not trade",
                at,
                client_id=str(session.client_id),
            )
        elif kind is IbCodeClass.CONNECTIVITY_LOST and code == IB_LOST_SERVERS:
            cmds.raise_alert(self.redis, "connectivity_lost", text, at, session=session.name)
        elif kind is IbCodeClass.PACING_VIOLATION:
            cmds.raise_alert(self.redis, "pacing_violation", text, at, session=session.name)
        elif kind is IbCodeClass.FARM_BROKEN or code == 1300:
            self.redis.hset(FARMS_KEY, _farm_name(text), "broken")
        elif kind is IbCodeClass.FARM_OK:
            self.redis.hset(FARMS_KEY, _farm_name(text), "ok")
        elif session is self.orders and int(msg.data.get("ib_order_id") or 0) > 0:
            order_id = int(msg.data["ib_order_id"])
            if kind is IbCodeClass.DUPLICATE_ORDER_ID:
                self.replacements.on_duplicate_id(session, order_id)
            else:
                self.venue.answered(order_id, code)


def _farm_name(text: str) -> str:
    """ "Market data farm connection is OK:usfarm" → "usfarm"."""
    return text.rsplit(":", 1)[-1].strip() or "unknown"
