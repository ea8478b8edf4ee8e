"""The bridge process: lease, two IB sessions, the command reader, the senders and the outbox.

Threads: one lease renewer; per session a connect/control loop, a decoder (EClient.run) and a
sender that takes commands from that session's priority backlog through its pacer; one command
reader (Redis stream → backlogs); one outbox (callbacks → tasks/Redis). Order commands go to client
1 (orders), data commands to client 2 (account), so order pacing is never spent on market data.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import redis
from ibapi.execution import ExecutionFilter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from epm.logging import get_logger
from epm.settings import Settings
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.connection import IBSession, SendRefused, SessionState
from ibgateway_bridge.ibobjects import cancel_order, global_cancel, to_ib_contract, to_ib_order
from ibgateway_bridge.ids import OrderIdAllocator
from ibgateway_bridge.lease import BridgeLease, LeaseGrant, LeaseHeldError
from ibgateway_bridge.marketdata import MarketDataLines
from ibgateway_bridge.outbox import ORDER_REPLACED, Outbox
from ibgateway_bridge.pacing import SEND_WAIT, Priority, Ticket
from ibgateway_bridge.translate import ib_filter_time
from ibgateway_bridge.venue_orders import VenueOrders
from ibgateway_bridge.wrapper import Message

log = get_logger("ibgateway_bridge")

STATE_KEY = "ib:bridge:state"
FARMS_KEY = "ib:bridge:farms"
# The ledger's Redis mirror of an order (written by `tasks.ledger` after each commit).
ORDER_MIRROR_KEY = "exec:order:{client_order_id}"
ACCOUNT_TAGS = "NetLiquidation,TotalCashValue,BuyingPower,AvailableFunds,ExcessLiquidity,"
ACCOUNT_TAGS += "InitMarginReq,MaintMarginReq,GrossPositionValue"


class BridgeConfig(BaseSettings):
    """Bridge-only tunables (`EPM_BRIDGE_*`); connection ids and pacing come from `Settings`."""

    model_config = SettingsConfigDict(env_prefix="EPM_BRIDGE_", frozen=True, extra="ignore")

    lease_ttl_ms: int = Field(default=5000, ge=300)
    # A restarted bridge (after kill -9) finds its predecessor's lease until it expires; a
    # supervisor can let it wait that long instead of failing. 0 = refuse at once.
    lease_wait_s: float = Field(default=0.0, ge=0)
    reconnect_base_s: float = Field(default=0.5, gt=0)
    reconnect_cap_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    resync_timeout_s: float = Field(default=15.0, gt=0)
    # Error 326 policy: wait this long, retry the same id at most this often (-1 = forever).
    id_in_use_retry_s: float = Field(default=30.0, ge=0)
    id_in_use_max_retries: int = Field(default=10, ge=-1)
    md_line_limit: int = Field(default=100, ge=1)
    account_session: bool = True
    # Prometheus exposition on 127.0.0.1 (backlog, pacer and send waits, publish latency);
    # None = off, 0 = an OS-chosen port (written to ib:bridge:state as metrics_port).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    send_extra_tasks: bool = True
    batch_max: int = Field(default=200, ge=1)
    # Callbacks per `record_batch` message for bursts; 1 = one task per callback always.
    batch_items: int = Field(default=50, ge=1)


def _now() -> datetime:
    return datetime.now(UTC)


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
        self.lease = BridgeLease(client, ttl_ms=self.config.lease_ttl_ms, on_lost=self._lease_lost)
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
        self.orders = self._session("orders", settings.ib_client_id_orders)
        self.account = (
            self._session("account", settings.ib_client_id_account)
            if self.config.account_session
            else None
        )
        # What the venue said of client 1's orders, and what the bridge still waits to hear.
        self.venue = VenueOrders()
        self._replace_pending: list[cmds.Envelope] = []
        self._req_ids = iter(range(1_000_000_000, 1_400_000_000))
        self._threads: list[threading.Thread] = []
        self._pnl_single: set[tuple[str, int]] = set()
        # Streams client 2 opened on its current socket (kind, req_id), and which socket.
        self._account_subs: list[tuple[str, int]] = []
        self._account_subs_on = 0
        self._metrics_server: Any = None
        self.metrics_port: int | None = None
        self.outbox.on_position = self._ensure_pnl_single

    def _session(self, name: str, client_id: int) -> IBSession:
        return IBSession(
            name=name,
            host=self.settings.ib_host,
            port=self.settings.ib_port,
            client_id=client_id,
            data_queue=self.data,
            rate=self.settings.pacing_msgs_per_sec,
            on_control=self._on_control,
            on_connected=self._on_connected,
            on_state=self._on_state,
            reconnect_base_s=self.config.reconnect_base_s,
            reconnect_cap_s=self.config.reconnect_cap_s,
            connect_timeout_s=self.config.connect_timeout_s,
            id_in_use_retry_s=self.config.id_in_use_retry_s,
            id_in_use_max_retries=self.config.id_in_use_max_retries,
        )

    @property
    def commands(self) -> cmds.CommandLog:
        """The fenced stream reader/marker writer; exists once `start` took the lease."""
        if self._command_log is None:
            raise RuntimeError("bridge not started: no lease, no command log")
        return self._command_log

    def sessions(self) -> list[IBSession]:
        return [s for s in (self.orders, self.account) if s is not None]

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
            mapping={"lease": grant.value, "started_at": _now().isoformat(), "stopped_at": ""},
        )
        log.info("bridge_starting", lease=grant.value, port=self.settings.ib_port)
        self._spawn("outbox", self.outbox.run)
        for session in self.sessions():
            session.start()
            self._spawn(f"sender-{session.name}", self._sender_loop, session)
        self._spawn("commands", self._reader_loop)
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
            self.redis.hset(STATE_KEY, mapping={"stopped_at": _now().isoformat()})

    def wait(self) -> None:
        while not self.stop_event.wait(0.5):
            pass

    def _lease_lost(self) -> None:
        log.error("lease_lost_stopping")
        with contextlib.suppress(redis.RedisError):
            cmds.raise_alert(self.redis, "lease_lost", "bridge lease lost; stopping", _now())
        for session in self.sessions():
            session.ready.clear()
        self.stop_event.set()

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.wait(1.0):
            try:
                mapping: dict[Any, Any] = {
                    "heartbeat": _now().isoformat(),
                    "last_order_id": self.allocator.last(),
                }
                for s in self.sessions():
                    mapping[f"client{s.client_id}"] = str(s.state)
                    mapping[f"backlog_{s.name}"] = len(s.backlog)
                self.redis.hset(STATE_KEY, mapping=mapping)
            except redis.RedisError as e:
                log.warning("heartbeat_failed", error=repr(e))

    # --- session hooks ----------------------------------------------------------------------
    def _on_state(self, session: IBSession, state: SessionState) -> None:
        with contextlib.suppress(redis.RedisError):
            self.redis.hset(STATE_KEY, f"client{session.client_id}", str(state))
        if (
            state in (SessionState.DISCONNECTED, SessionState.CONNECTING)
            and session is self.account
        ):
            self.md.reset()

    def _on_connected(self, session: IBSession) -> bool:
        """Resync after a (re)connect; True when the session may trade."""
        client = session.client
        if client is None:
            return False
        if session.next_valid_id is not None and session is self.orders:
            last = self.allocator.sync(session.next_valid_id)
            log.info("order_ids_synced", next_valid_id=session.next_valid_id, last_id=last)
        if session is self.orders:
            self.venue.begin_resync()
            for name in ("open_order_end", "exec_details_end", "completed_orders_end"):
                session.event(name).clear()
            client.reqOpenOrders()
            # Every execution of the day: fills made while we were away reach the ledger, which
            # is idempotent on exec_id, so the overlap with what it already has is harmless.
            client.reqExecutions(next(self._req_ids), ExecutionFilter())
            client.reqCompletedOrders(True)
            timeout = self.config.resync_timeout_s
            if not session.wait_event("open_order_end", timeout):
                return False
            if not session.wait_event("exec_details_end", timeout):
                return False
            # An older gateway may not answer for completed orders: then the resync is not
            # complete, and no placement whose fate is unknown is sent on its word.
            complete = session.wait_event("completed_orders_end", min(timeout, 3.0))
            self.venue.end_resync(complete)
            self._settle_after_resync(session)
            log.info("orders_resynced", complete=complete)
        else:
            if self._account_subs_on == session.connection_number:
                # 1101/1102 on the same socket: drop what it already streams before asking again.
                client.cancelPositions()
                for kind, req_id in self._account_subs:
                    if kind == "summary":
                        client.cancelAccountSummary(req_id)
                    elif kind == "pnl":
                        client.cancelPnL(req_id)
                    else:
                        client.cancelPnLSingle(req_id)
            self._account_subs = []
            self._account_subs_on = session.connection_number
            self._pnl_single.clear()
            self.md.resubscribe_all(client)
            client.reqPositions()
            summary_id = next(self._req_ids)
            self._account_subs.append(("summary", summary_id))
            client.reqAccountSummary(summary_id, "All", ACCOUNT_TAGS)
            account = self.settings.ib_account or (session.accounts[0] if session.accounts else "")
            if account:
                req_id = next(self._req_ids)
                self._account_subs.append(("pnl", req_id))
                self.outbox.register_pnl_request(req_id, account, None)
                client.reqPnL(req_id, account, "")
        return True

    def _ensure_pnl_single(self, account: str, con_id: int) -> None:
        """Subscribe reqPnLSingle for a position the first time it shows up on this connection."""
        session = self.account
        if session is None or session.client is None or (account, con_id) in self._pnl_single:
            return
        self._pnl_single.add((account, con_id))
        req_id = next(self._req_ids)
        self._account_subs.append(("pnl_single", req_id))
        self.outbox.register_pnl_request(req_id, account, con_id)
        session.client.reqPnLSingle(req_id, account, "", con_id)

    def _on_control(self, session: IBSession, msg: Message) -> None:
        kind = msg.kind
        if kind in ("order_seen", "completed_order") and session is self.orders:
            order_id = msg.data.get("order_id")
            self.venue.seen(
                int(order_id) if order_id else None,
                msg.data.get("order_ref") or None,
                msg.data.get("ib_status") or None,
            )
        elif kind == "next_valid_id" and session is self.orders:
            self.allocator.sync(int(msg.data["order_id"]))
            self._replace_duplicates()
        elif kind == "error":
            self._on_error(session, msg)

    def _on_error(self, session: IBSession, msg: Message) -> None:
        code = int(msg.data["code"])
        text = str(msg.data["message"])
        now = _now()
        if code == 326:
            cmds.raise_alert(
                self.redis,
                "client_id_in_use",
                f"client id {session.client_id} already in use; {session.name} will not trade",
                now,
                client_id=str(session.client_id),
            )
        elif code == 1100:
            cmds.raise_alert(self.redis, "connectivity_lost", text, now, session=session.name)
        elif code == 100:
            cmds.raise_alert(self.redis, "pacing_violation", text, now, session=session.name)
        elif code in (2103, 2105, 2157, 1300):
            self.redis.hset(FARMS_KEY, _farm_name(text), "broken")
        elif code in (2104, 2106, 2158):
            self.redis.hset(FARMS_KEY, _farm_name(text), "ok")
        elif session is self.orders and int(msg.data.get("order_id") or 0) > 0:
            order_id = int(msg.data["order_id"])
            if code == 103:
                # NOTES: 103 = duplicate order id → resync ids, re-place under a fresh id; but
                # only a first placement the venue never accepted. A 103 answering a modify
                # (of a cancelled order) or a resent placement must never become a new order.
                original = self.venue.take_unaccepted(order_id)
                if original is not None:
                    self._replace_pending.append(original)
                    client = session.client
                    if client is not None:
                        client.reqIds(-1)
            else:
                self.venue.answered(order_id, code)

    def _replace_duplicates(self) -> None:
        """Re-place each 103'd placement under a fresh id (see `_replace`), unless a cancel was
        asked for it meanwhile: then it ends there, announced as cancelled before it was sent.

        The original leaves the pending list only once its replacement is on the stream, so a
        Redis error retries it at the next `nextValidId`.
        """
        while self._replace_pending:
            env = self._replace_pending[0]
            original = env.command
            if not isinstance(original, cmds.PlaceOrder):
                self._replace_pending.pop(0)
                continue
            if self._cancel_asked(original.order_id):
                cmds.publish_reject(
                    self.redis,
                    env.stream_id,
                    cmds.BridgeRejectReason.CANCELED_BEFORE_SEND,
                    "IB refused the id (103) and the order was cancelled before its re-place",
                    original,
                    _now(),
                )
                self.venue.replaced(original.order_id)
            else:
                self._replace(original, "IB_103_DUPLICATE_ORDER_ID")
            self._replace_pending.pop(0)

    def _replace(self, original: cmds.PlaceOrder, reason: str, *, id_dead: bool = True) -> int:
        """Queue `original` again under a fresh id; the ledger link goes through the outbox.

        `id_dead`: the old id carries nothing at the venue (103), so every command naming it
        follows the order; otherwise (the venue holds the id for another order) only commands
        carrying this order's ref do. The link is queued for the outbox, which retries a broker
        outage instead of failing here (a direct `send_task` here once raised before the XADD and
        the order was never placed).
        """
        new_id = self.allocator.allocate()
        replacement = original.model_copy(update={"order_id": new_id})
        now = _now()
        fields: dict[Any, Any] = dict(cmds.encode_command(replacement, now))
        # On the stream for durability, and straight into its lane so that commands following
        # the redirect queue behind it; the reader's copy of the entry is then a duplicate.
        stream_id = str(self.redis.xadd(cmds.COMMAND_STREAM, fields))
        self.orders.backlog.put(
            cmds.Envelope(stream_id, replacement, now), Priority.PLACE, lane=new_id
        )
        redirect = f"{new_id}|{'dead' if id_dead else 'shared'}|{original.client_order_id}"
        self.redis.set(self._replaced_key(original.order_id), redirect, ex=cmds.SENT_TTL_S)
        self.venue.replaced(original.order_id)
        link = {
            "old_order_id": original.order_id,
            "new_order_id": new_id,
            "client_order_id": original.client_order_id,
            "client_id": self.settings.ib_client_id_orders,
            "reason": reason,
            "at": now.isoformat(),
        }
        if self.config.send_extra_tasks:
            self.data.put(Message(ORDER_REPLACED, self.settings.ib_client_id_orders, link, now))
        log.warning("order_replaced", **link)
        cmds.audit(
            self.redis, "bridge", "order_replaced", now, **{k: str(v) for k, v in link.items()}
        )
        return new_id

    def _ask_cancel(self, *order_ids: int) -> None:
        """Record that these ids are being cancelled, in memory and durably."""
        self.venue.ask_cancel(*order_ids)
        pipe = self.redis.pipeline(transaction=False)
        for order_id in set(order_ids):
            key = cmds.CANCEL_ASKED_KEY.format(
                client_id=self.settings.ib_client_id_orders, order_id=order_id
            )
            pipe.set(key, "1", ex=cmds.SENT_TTL_S)
        pipe.execute()

    def _cancel_asked(self, order_id: int) -> bool:
        """A cancel went out for this id, in this process or an earlier one."""
        if self.venue.cancel_asked(order_id):
            return True
        key = cmds.CANCEL_ASKED_KEY.format(
            client_id=self.settings.ib_client_id_orders, order_id=order_id
        )
        return bool(self.redis.exists(key))

    def _replaced_key(self, order_id: int) -> str:
        return cmds.REPLACED_KEY.format(
            client_id=self.settings.ib_client_id_orders, order_id=order_id
        )

    def _current_id(self, order_id: int, order_ref: str | None = None) -> int:
        """The id an order lives under now: re-places are followed (ids only grow); one off an
        id the venue holds for another order only by commands carrying the moved order's ref."""
        for _ in range(16):
            raw = self.redis.get(self._replaced_key(order_id))
            if raw is None:
                return order_id
            newer, kind, ref = [*str(raw).split("|", 2), "dead", ""][:3]
            if int(newer) <= order_id or (kind != "dead" and ref != order_ref):
                return order_id
            order_id = int(newer)
        return order_id

    def _settle_after_resync(self, session: IBSession) -> None:
        """Placements sent on an earlier connection that the venue does not know lost their
        bytes with it: sent again (same id, same stream entry). Cancels of orders the venue still
        shows working are repeated. Only on a complete resync: never resend on doubt."""
        if not self.venue.resync_complete:
            return
        settlement = self.venue.settle()
        for env in (*settlement.lost_places, *settlement.repeat_cancels):
            log.warning(
                "unanswered_command_repeated", stream_id=env.stream_id, kind=env.command.type
            )
            session.backlog.put(env, _priority(env.command), lane=_lane(env.command))

    # --- command intake ---------------------------------------------------------------------
    def _reader_loop(self) -> None:
        # First our own unacknowledged entries (a previous run read them and died), page by page.
        start: str | None = "0"
        while not self.stop_event.is_set():
            try:
                entries = self.commands.read(start=start)
            except redis.RedisError as e:
                log.warning("command_read_failed", error=repr(e))
                self.stop_event.wait(0.5)
                continue
            if start is not None and not entries:
                start = None
                continue
            try:
                for stream_id, fields in entries:
                    if start is not None:
                        start = stream_id
                        if not fields:
                            # Deleted while pending (the kill switch purges queued placements).
                            self.commands.ack(stream_id)
                            continue
                    self._intake(stream_id, fields)
            except redis.RedisError as e:
                # Read again from our own unacknowledged entries, so the one that failed is not
                # skipped; a copy of one already queued is harmless (sends are keyed).
                log.warning("command_intake_failed", error=repr(e))
                self.stop_event.wait(0.5)
                start = "0"

    def _intake(self, stream_id: str, fields: dict[str, str]) -> None:
        parsed = cmds.parse_entry(stream_id, fields)
        if isinstance(parsed, cmds.BadCommand):
            self._reject(stream_id, parsed.reason, parsed.message, None)
            return
        command = parsed.command
        if isinstance(command, cmds.CancelOrder):
            self._cancel_queued(stream_id, command)
        target = self.orders if _lane(command) is not None else (self.account or self.orders)
        if isinstance(command, cmds.GlobalCancel | cmds.RequestExecutions):
            target = self.orders
        target.backlog.put(parsed, _priority(command), lane=_lane(command))

    def _cancel_queued(self, stream_id: str, command: cmds.CancelOrder) -> None:
        """A cancel takes the order's queued placement and modifications out of the backlog.

        A removed placement that never went out is refused for good (`refused` marker, so a
        later copy of it is refused too) and announced; one whose marker shows that another copy
        of it was sent (a redelivery, a reread) is only a duplicate: dropped silently, and the
        cancel still goes to the venue. The cancel itself is always queued; whether it needs the
        venue is decided when it is sent (`_send_cancel`).
        """
        removed = self.orders.backlog.remove_if(
            lambda env: (
                isinstance(env.command, cmds.PlaceOrder | cmds.ModifyOrder)
                and env.command.order_id == command.order_id
            )
        )
        for env in removed:
            order_command = env.command
            assert isinstance(order_command, cmds.PlaceOrder | cmds.ModifyOrder)
            key = cmds.sent_key(self.settings.ib_client_id_orders, order_command)
            reason = cmds.BridgeRejectReason.CANCELED_BEFORE_SEND
            existing = (
                self.commands.claim_refusal(
                    key, env.stream_id, str(reason), order_command.client_order_id
                )
                if key is not None
                else None
            )
            if existing is not None:
                # A copy of a command already sent, being sent or refused: nothing to announce.
                log.info("duplicate_copy_dropped", stream_id=env.stream_id, marker=existing)
                self.commands.ack(env.stream_id)
                continue
            self._reject(env.stream_id, reason, f"cancel {stream_id} overtook it", order_command)

    def _reject(
        self,
        stream_id: str,
        reason: cmds.BridgeRejectReason,
        message: str,
        command: cmds.Command | None,
    ) -> None:
        """Announce a refusal, then acknowledge the entry; never raise into the calling thread.

        A lost Redis connection is waited out (the owner must hear of the refusal). A write Redis
        refuses outright (say WRONGTYPE on the rejects stream) would fail forever: it is logged
        and the entry left unacknowledged, so the next start refuses it again, while the reader
        carries on with the commands behind it (it once died here and the bridge went deaf).
        """
        delay = 0.05
        while True:
            try:
                cmds.publish_reject(self.redis, stream_id, reason, message, command, _now())
                self.commands.ack(stream_id)
                break
            except (redis.ConnectionError, redis.TimeoutError) as e:
                if self.stop_event.is_set():
                    return
                log.warning("reject_retry", stream_id=stream_id, error=repr(e), delay_s=delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 2.0)
            except redis.RedisError as e:
                log.error(
                    "reject_unrecorded", stream_id=stream_id, reason=str(reason), error=repr(e)
                )
                return
        log.warning("command_refused", stream_id=stream_id, reason=str(reason), detail=message)

    # --- sending ----------------------------------------------------------------------------
    def _sender_loop(self, session: IBSession) -> None:
        while not self.stop_event.is_set():
            if not session.ready.wait(0.2):
                continue
            if not self.lease.held():
                self.stop_event.wait(0.2)
                continue
            ticket: Ticket[cmds.Envelope] | None = session.backlog.get(timeout=0.2)
            if ticket is None:
                continue
            env = ticket.item
            try:
                outcome = self._send(session, env)
            except cmds.LeaseFencedError as e:
                log.error("fenced", error=repr(e))
                self._lease_lost()
                return
            except (redis.RedisError, OSError) as e:
                log.warning("send_failed_requeue", stream_id=env.stream_id, error=repr(e))
                outcome = False
            if outcome is True:
                SEND_WAIT.labels(session.name, str(env.command.type)).observe(
                    time.monotonic() - ticket.enqueued_at
                )
                session.backlog.done(ticket)
            else:
                # Back at the front of its order's lane: the order's later commands wait for it.
                session.backlog.requeue(ticket)
                self.stop_event.wait(0.05 if outcome is False else 0.005)

    def _send(self, session: IBSession, env: cmds.Envelope) -> bool | None:
        """Send one command; True when it is done (sent, refused or known duplicate), False to
        retry after a failure, None to wait a moment (its order is being re-placed)."""
        command = env.command
        client = session.client
        if client is None or not session.ready.is_set():
            return False
        if isinstance(command, cmds.SubscribeMarketData | cmds.UnsubscribeMarketData):
            return self._market_data(client, env)
        if isinstance(command, cmds.ModifyOrder | cmds.CancelOrder) and self.venue.replacing(
            command.order_id
        ):
            if isinstance(command, cmds.CancelOrder):
                # The 103'd placement will not be re-placed: the cancel ends it (announced then).
                self._ask_cancel(command.order_id)
                self.commands.ack(env.stream_id)
                return True
            return None
        if isinstance(command, cmds.PlaceOrder | cmds.ModifyOrder):
            return self._send_order(session, client, env, command)
        if isinstance(command, cmds.CancelOrder):
            return self._send_cancel(client, env, command)
        if not client.sends(lambda: self._write(client, command)):
            return False
        self._record_sent(None, env.stream_id, None)
        return True

    def _send_order(
        self,
        session: IBSession,
        client: Any,
        env: cmds.Envelope,
        command: cmds.PlaceOrder | cmds.ModifyOrder,
    ) -> bool:
        """A placement or modification: refusals, markers, the venue's knowledge, then bytes."""
        if isinstance(command, cmds.ModifyOrder):
            # A modify follows its order onto the id it was re-placed under, behind the
            # re-placement in that id's lane when the re-placement has not gone out yet.
            current = self._current_id(command.order_id, command.client_order_id)
            if current != command.order_id:
                command = command.model_copy(update={"order_id": current})
                if not self._placement_out(current):
                    moved = replace(env, command=command)
                    session.backlog.put(moved, Priority.MODIFY, lane=current)
                    return True
        refusal = self._refusal(command)
        if refusal is not None:
            reason, message = refusal
            self._refuse(env, command, reason, message)
            return True
        key = cmds.sent_key(self.settings.ib_client_id_orders, command)
        assert key is not None
        ref = command.client_order_id
        existing = self.commands.mark_pending(key, env.stream_id, ref)
        if existing is not None:
            settled = self._settle_marker(env, command, key, cmds.Marker.parse(existing))
            if settled is not None:
                return settled
        if isinstance(command, cmds.PlaceOrder):
            other = self.venue.held_by_other(command)
            if other is not None:
                # The venue holds this id under another order: sending ours would modify it.
                self.commands.clear_pending(key, env.stream_id)
                self._replace(command, f"ID_IN_USE_AT_VENUE:{other}", id_dead=False)
                self.commands.ack(env.stream_id)
                return True
            self.venue.placing(env)
        else:
            self.venue.modifying(command)
        try:
            sent = client.sends(
                lambda: self._write(client, command), gate=lambda: self._gate(command)
            )
        except SendRefused as e:
            reason = cmds.BridgeRejectReason(e.reason)
            self.commands.refuse_pending(key, env.stream_id, str(reason), ref)
            self._reject(env.stream_id, reason, "halted at the socket write", command)
            return True
        if not sent:
            # Nothing left the socket: the next attempt is a first attempt again.
            self.commands.clear_pending(key, env.stream_id)
            if isinstance(command, cmds.PlaceOrder):
                self.venue.not_sent(env)
            return False
        self._record_sent(key, env.stream_id, ref)
        return True

    def _refusal(
        self, command: cmds.PlaceOrder | cmds.ModifyOrder
    ) -> tuple[cmds.BridgeRejectReason, str] | None:
        """Why this order command must not go out at all, checked before any marker."""
        reason = cmds.halt_reason(self.redis, command.contract.con_id, command.strategy)
        if reason is not None:
            return reason, "halted at send time"
        if isinstance(command, cmds.PlaceOrder) and command.order_id > self.allocator.last():
            return (
                cmds.BridgeRejectReason.ORDER_ID_NOT_ALLOCATED,
                f"order id {command.order_id} was never allocated from ib:order:last_id",
            )
        if isinstance(command, cmds.ModifyOrder) and not self._placement_out(command.order_id):
            # At the venue a modify of an id it does not know would be a new order.
            return (
                cmds.BridgeRejectReason.ORDER_NOT_SENT,
                f"order {command.order_id} was never sent; a modify cannot place it",
            )
        return None

    def _placement_out(self, order_id: int) -> bool:
        if self.venue.knows_id(order_id):
            return True
        marker = self.commands.marker(cmds.place_key(self.settings.ib_client_id_orders, order_id))
        return marker is not None and cmds.Marker.parse(marker).state == cmds.MarkerState.SENT

    def _gate(self, command: cmds.PlaceOrder | cmds.ModifyOrder) -> None:
        """Right before the bytes go (after the pacing wait): the halts, once more."""
        reason = cmds.halt_reason(self.redis, command.contract.con_id, command.strategy)
        if reason is not None:
            raise SendRefused(str(reason))

    def _settle_marker(
        self,
        env: cmds.Envelope,
        command: cmds.PlaceOrder | cmds.ModifyOrder,
        key: str,
        marker: cmds.Marker,
    ) -> bool | None:
        """An earlier attempt left a marker: decide without sending twice. None = send now."""
        ref = command.client_order_id
        if marker.state == cmds.MarkerState.REFUSED:
            if marker.stream_id != env.stream_id:
                # A copy of a command refused for good: refused the same way.
                reason = cmds.BridgeRejectReason(marker.reason)
                self._reject(env.stream_id, reason, "refused before, for good", command)
            else:
                self.commands.ack(env.stream_id)  # refused and announced already
            return True
        if isinstance(command, cmds.PlaceOrder) and marker.other_order(ref):
            # Another order went out under this id: ours gets a fresh one.
            self._replace(command, f"ID_IN_USE:{marker.order_ref}", id_dead=False)
            self.commands.ack(env.stream_id)
            return True
        if marker.state == cmds.MarkerState.SENT:
            if env.resend and marker.stream_id == env.stream_id and self._still_lost(command):
                return None  # its bytes died with the old connection (`_settle_after_resync`)
            log.info("duplicate_command_skipped", stream_id=env.stream_id, marker=marker.encode())
            self.commands.ack(env.stream_id)
            return True
        # `pending`: a crash (or a failed write) between the marker and the bytes.
        if isinstance(command, cmds.ModifyOrder):
            return None  # a modify is safe to repeat: the venue applies the same fields again
        if self.venue.accepted(command) or self._ledger_saw(ref):
            self.commands.mark_sent_and_ack(key, env.stream_id, ref)
            return True
        if self._cancel_asked(command.order_id):
            # Its cancel went out (the order never reached the venue): it must not go now.
            reason = cmds.BridgeRejectReason.CANCELED_BEFORE_SEND
            self.commands.refuse_pending(key, marker.stream_id, str(reason), ref)
            self._reject(env.stream_id, reason, "cancelled before it reached the venue", command)
            return True
        if not self.venue.resync_complete:
            reason = cmds.BridgeRejectReason.SEND_UNCERTAIN
            self.commands.refuse_pending(key, marker.stream_id, str(reason), ref)
            cmds.raise_alert(
                self.redis,
                "send_uncertain",
                f"order {command.order_id} ({ref}) may or may not be at the venue; not resent",
                _now(),
                order_id=str(command.order_id),
            )
            self._reject(env.stream_id, reason, "the venue's lists were incomplete", command)
            return True
        return None  # a complete resync does not know it: it never reached the venue

    def _still_lost(self, command: cmds.PlaceOrder | cmds.ModifyOrder) -> bool:
        """A placement to send again after a reset: still unknown to the venue, not re-placed
        (a 103 for an earlier copy), not cancelled meanwhile."""
        if not isinstance(command, cmds.PlaceOrder) or self.venue.accepted(command):
            return False
        order_id = command.order_id
        if self.venue.replacing(order_id) or self._current_id(order_id) != order_id:
            return False
        return not self._cancel_asked(order_id)

    def _ledger_saw(self, client_order_id: str) -> bool:
        """The ledger recorded a venue callback for this order (its Redis mirror says so)."""
        mirror = self.redis.hmget(
            ORDER_MIRROR_KEY.format(client_order_id=client_order_id),
            ["last_ib_status", "filled_qty", "ib_filled_qty", "perm_id"],
        )
        status, filled, ib_filled, perm_id = mirror
        return bool(status or perm_id) or any(v not in (None, "", "0") for v in (filled, ib_filled))

    def _send_cancel(self, client: Any, env: cmds.Envelope, command: cmds.CancelOrder) -> bool:
        """Cancel the order where it lives now; an order never sent needs no venue."""
        target = self._current_id(command.order_id)
        # Were a 103 to come for it, the order must end, not be re-placed.
        self._ask_cancel(command.order_id, target)
        if not self.venue.knows_id(target):
            key = cmds.place_key(self.settings.ib_client_id_orders, target)
            reason = cmds.BridgeRejectReason.CANCELED_BEFORE_SEND
            existing = self.commands.claim_refusal(key, env.stream_id, str(reason))
            if existing is None or cmds.Marker.parse(existing).state == cmds.MarkerState.REFUSED:
                # No placement of it ever went out, and none ever will (the refused marker).
                if existing is None:
                    self._reject(env.stream_id, reason, "the order was never sent", command)
                else:
                    self.commands.ack(env.stream_id)
                return True
        cancel = command if target == command.order_id else cmds.CancelOrder(order_id=target)
        if not client.sends(lambda: self._write(client, cancel)):
            return False
        self.venue.cancelling(replace(env, command=cancel))
        self._record_sent(None, env.stream_id, None)
        log.info(
            "cancel_sent", stream_id=env.stream_id, order_id=command.order_id, ib_order_id=target
        )
        return True

    def _refuse(
        self,
        env: cmds.Envelope,
        command: cmds.PlaceOrder | cmds.ModifyOrder,
        reason: cmds.BridgeRejectReason,
        message: str,
    ) -> None:
        """Refuse for good: the marker makes every later copy of the command refused too.

        A copy of a command that already went out (or was refused and announced) is only
        acknowledged: announcing a refusal for it would make its owner close a working order.
        """
        key = cmds.sent_key(self.settings.ib_client_id_orders, command)
        ref = command.client_order_id
        existing = (
            self.commands.claim_refusal(key, env.stream_id, str(reason), ref) if key else None
        )
        if key is not None and existing is not None:
            marker = cmds.Marker.parse(existing)
            mine = marker.stream_id == env.stream_id
            if marker.state == cmds.MarkerState.PENDING and mine:
                self.commands.refuse_pending(key, env.stream_id, str(reason), ref)
            elif marker.state != cmds.MarkerState.REFUSED or mine:
                log.info("refused_copy_dropped", stream_id=env.stream_id, marker=existing)
                self.commands.ack(env.stream_id)
                return
        self._reject(env.stream_id, reason, message, command)

    def _record_sent(self, key: str | None, stream_id: str, order_ref: str | None) -> None:
        """The bytes left: the `sent:` marker must land before this command counts as not done.

        Handing a written command back to the backlog because Redis blipped would send it again
        while the venue's echo may still be in flight; for an order already filled IB answers 104
        (or 103), and a re-place would then trade it twice. So the marker is retried here, for as
        long as Redis is away; a stopping bridge leaves the `pending:` marker, which the next start
        resolves against the venue's open and completed orders.
        """
        delay = 0.05
        while True:
            try:
                self.commands.mark_sent_and_ack(key, stream_id, order_ref)
                return
            except redis.RedisError as e:  # LeaseFencedError is not one: it stops the sender
                if self.stop_event.is_set():
                    raise
                log.warning("sent_marker_retry", stream_id=stream_id, error=repr(e), delay_s=delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 2.0)

    def _market_data(self, client: Any, env: cmds.Envelope) -> bool:
        command = env.command
        if isinstance(command, cmds.SubscribeMarketData):
            reason = self.md.subscribe(command, client)
            if reason is not None:
                self._reject(env.stream_id, reason, f"con_id {command.con_id}", command)
                return True
        elif isinstance(command, cmds.UnsubscribeMarketData):
            self.md.unsubscribe(command, client)
        self.commands.ack(env.stream_id)
        return True

    def _write(self, client: Any, command: cmds.Command) -> None:
        if isinstance(command, cmds.PlaceOrder | cmds.ModifyOrder):
            client.placeOrder(
                command.order_id, to_ib_contract(command.contract), to_ib_order(command)
            )
        elif isinstance(command, cmds.CancelOrder):
            cancel_order(client, command.order_id)
        elif isinstance(command, cmds.GlobalCancel):
            global_cancel(client)
        elif isinstance(command, cmds.RequestExecutions):
            flt = ExecutionFilter()
            if command.since is not None:
                flt.time = ib_filter_time(command.since)
            client.reqExecutions(next(self._req_ids), flt)
        elif isinstance(command, cmds.RequestPositions):
            client.reqPositions()
        elif isinstance(command, cmds.RequestContractDetails):
            client.reqContractDetails(self.md.next_req_id(), to_ib_contract(command.contract))


def _lane(command: cmds.Command) -> int | None:
    """Commands of one order share a lane: they leave in the order they came."""
    if isinstance(command, cmds.PlaceOrder | cmds.ModifyOrder | cmds.CancelOrder):
        return command.order_id
    return None


def _priority(command: cmds.Command) -> Priority:
    if isinstance(command, cmds.GlobalCancel):
        return Priority.GLOBAL_CANCEL
    if isinstance(command, cmds.CancelOrder):
        return Priority.CANCEL
    if isinstance(command, cmds.ModifyOrder):
        return Priority.MODIFY
    if isinstance(command, cmds.PlaceOrder):
        return Priority.PLACE
    return Priority.REQUEST


def _farm_name(text: str) -> str:
    """ "Market data farm connection is OK:usfarm" → "usfarm"."""
    return text.rsplit(":", 1)[-1].strip() or "unknown"
