"""One IB connection (one client id): the paced EClient, connect/reconnect, and its control state.

`PacedClient` routes every outgoing message through the connection's `SlidingWindowLimiter` (the
EClient's `sendMsg` is the single choke point, so requests, cancels and orders all count), and
counts the messages whose every byte the kernel took (ibapi's own send ignores a refused or short
write), so a caller knows whether its bytes left. A caller may pass a *gate* that runs after the
pacing wait, just before the bytes go: the bridge checks the halts there, so an order that waited
for a pacing slot cannot reach the venue after the kill switch's global cancel.

`IBSession` owns the connect loop: connect → wait for `nextValidId` → `reqCurrentTime` (client-id
governance: the id must answer before anything trades) → the owner's resync hook → READY. It
reconnects with capped exponential backoff and full jitter; error 326 (client id in use) stops
trading on this connection, raises an alert and retries only per policy; 1100 pauses sending until
1101/1102 come, which trigger the resync again.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Container
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ibapi.client import EClient

from epm.backoff import Backoff
from epm.logging import get_logger
from ibgateway_bridge.pacing import PriorityBacklog, SlidingWindowLimiter
from ibgateway_bridge.translate import parse_connection_time_zone
from ibgateway_bridge.wrapper import BridgeWrapper, Message
from models.ib_codes import IbCodeClass, classify

log = get_logger("ibgateway_bridge.connection")

# 1100: the gateway lost IB's servers, our socket is still up (other CONNECTIVITY_LOST codes
# mean our own socket is gone, which `connection_closed` already tells).
IB_LOST_SERVERS = 1100
RESTORED = frozenset(
    {IbCodeClass.CONNECTIVITY_RESTORED, IbCodeClass.CONNECTIVITY_RESTORED_DATA_LOST}
)


class SessionState(StrEnum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    SYNCING = "SYNCING"
    READY = "READY"
    VENUE_DOWN = "VENUE_DOWN"  # 1100: the gateway lost IB; our socket is still up
    ID_IN_USE = "ID_IN_USE"  # 326: another client holds our id; no trading
    STOPPED = "STOPPED"


class SendRefused(Exception):
    """A gate refused the message after its pacing wait; nothing was written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PacedClient(EClient):  # type: ignore[misc]  # ibapi ships no type hints
    """EClient whose every message waits for a pacing slot; counts messages fully written."""

    def __init__(self, wrapper: BridgeWrapper, limiter: SlidingWindowLimiter) -> None:
        super().__init__(wrapper)
        self.limiter = limiter
        self.sent_count = 0
        self._count_lock = threading.Lock()
        # Per thread: the gate of the request being sent, and whether its last write completed.
        self._local = threading.local()

    def connect(self, host: str, port: int, clientId: int) -> None:
        super().connect(host, port, clientId)
        conn = self.conn
        if conn is not None and getattr(conn, "socket", None) is not None:
            # ibapi writes with socket.send and drops its result: a short write or a closed
            # socket would count as sent. Every frame goes out whole with sendall, or raises.
            conn.sendMsg = self._write_frame

    def _write_frame(self, frame: bytes) -> int:
        conn = self.conn
        if conn is None:
            return 0
        with conn.lock:
            sock = conn.socket
            if sock is None or not conn.isConnected():
                return 0
            sock.sendall(frame)
        self._local.wrote = True
        return len(frame)

    def sendMsg(self, *args: Any) -> None:
        # ibapi 9.81 passes the message text; 10.x passes (msgId, text): forward either.
        self._paced(super().sendMsg, *args)

    def _paced(self, send: Callable[..., None], *args: Any) -> None:
        if self.conn is None or not self.conn.isConnected():
            return
        self.limiter.acquire()
        if self.conn is None or not self.conn.isConnected():
            return
        gate: Callable[[], None] | None = getattr(self._local, "gate", None)
        if gate is not None:
            gate()  # raises SendRefused
        self._local.wrote = False
        send(*args)
        if self._local.wrote:
            with self._count_lock:
                self.sent_count += 1

    def disconnect(self) -> None:
        """Shut the socket down before ibapi closes it, so the venue hears FIN at once.

        A plain close() while the reader thread sits in recv() is deferred by the kernel until
        that recv returns (ibapi's 1 s socket timeout): the venue would hold our client id that
        long, and an immediate reconnect would meet 326.
        """
        sock = getattr(self.conn, "socket", None) if self.conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        super().disconnect()

    def sendMsgProtoBuf(self, *args: Any) -> None:
        # 10.x at server versions >= 201 frames many requests as protobuf: paced the same way.
        self._paced(super().sendMsgProtoBuf, *args)

    def sends(self, action: Callable[[], None], gate: Callable[[], None] | None = None) -> bool:
        """Run an EClient request; True when at least one message reached the socket whole.

        `gate` runs after the pacing wait, right before the write, in this thread only; it
        raises `SendRefused` to stop the request with nothing written.
        """
        before = self.sent_count
        self._local.gate = gate
        try:
            action()
        finally:
            self._local.gate = None
        return self.sent_count > before


class IBSession:
    """Connect, govern and keep alive one client id; hands data messages to the shared queue."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        client_id: int,
        data_queue: queue.Queue[Message],
        rate: int,
        on_control: Callable[[IBSession, Message], None],
        on_connected: Callable[[IBSession], bool],
        on_state: Callable[[IBSession, SessionState], None],
        reconnect_base_s: float = 0.5,
        reconnect_cap_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        id_in_use_retry_s: float = 30.0,
        id_in_use_max_retries: int = 3,
        snapshot_ids: Container[int] = frozenset(),
    ) -> None:
        self.name = name
        self._snapshot_ids = snapshot_ids
        self.host = host
        self.port = port
        self.client_id = client_id
        self.control: queue.Queue[Message] = queue.Queue()
        self._data_queue = data_queue
        self.limiter = SlidingWindowLimiter(rate, connection=name)
        self.backlog: PriorityBacklog[Any] = PriorityBacklog(connection=name)
        self._on_control = on_control
        self._on_connected = on_connected
        self._on_state = on_state
        self._backoff = Backoff(reconnect_base_s, reconnect_cap_s)
        self._connect_timeout_s = connect_timeout_s
        self._id_in_use_retry_s = id_in_use_retry_s
        self._id_in_use_max_retries = id_in_use_max_retries
        self._id_in_use_count = 0
        self.state = SessionState.DISCONNECTED
        self.ready = threading.Event()
        self.stop_event = threading.Event()
        self.next_valid_id: int | None = None
        # Counts sockets opened; the owner tells a resync on the same socket (1101/1102) from
        # one after a reconnect by comparing it.
        self.connection_number = 0
        self.accounts: list[str] = []
        self.client: PacedClient | None = None
        self._decoder: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._nvi_event = threading.Event()
        self._time_event = threading.Event()
        self._id_in_use = threading.Event()
        self.events: dict[str, threading.Event] = {}

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ib-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.ready.clear()
        client = self.client
        if client is not None:
            client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._set_state(SessionState.STOPPED)

    def _set_state(self, state: SessionState) -> None:
        if state != self.state:
            log.info("session_state", session=self.name, client_id=self.client_id, state=state)
        self.state = state
        if state == SessionState.READY:
            self.ready.set()
        else:
            self.ready.clear()
        self._on_state(self, state)

    def event(self, name: str) -> threading.Event:
        """A named one-shot event the owner waits on during resync (open_order_end, …)."""
        ev = self.events.get(name)
        if ev is None:
            ev = self.events[name] = threading.Event()
        return ev

    # --- the connect loop -------------------------------------------------------------------
    def _run(self) -> None:
        while not self.stop_event.is_set():
            connected = self._connect_once()
            if connected:
                self._backoff.reset()
                self._pump_until_closed()
            if self.stop_event.is_set():
                break
            if self._id_in_use.is_set():
                self._id_in_use_count += 1
                limit = self._id_in_use_max_retries
                if limit >= 0 and self._id_in_use_count > limit:
                    log.error("client_id_in_use_giving_up", client_id=self.client_id)
                    self._set_state(SessionState.ID_IN_USE)
                    self.stop_event.wait()
                    break
                self._set_state(SessionState.ID_IN_USE)
                self.stop_event.wait(self._id_in_use_retry_s)
                continue
            self._set_state(SessionState.DISCONNECTED)
            delay = self._backoff.next_delay()
            log.info("reconnect_backoff", session=self.name, delay_s=round(delay, 3))
            self.stop_event.wait(delay)

    def _connect_once(self) -> bool:
        self._set_state(SessionState.CONNECTING)
        self._closed.clear()
        self._nvi_event.clear()
        self._time_event.clear()
        self._id_in_use.clear()
        for ev in self.events.values():
            ev.clear()
        # A fresh control queue per connection: a late "closed" or 326 of the previous socket
        # must not be read as news about this one.
        self.control = queue.Queue()
        self.connection_number += 1
        wrapper = BridgeWrapper(
            self.client_id, self._data_queue, self.control, snapshot_ids=self._snapshot_ids
        )
        client = PacedClient(wrapper, self.limiter)
        self.client = client
        try:
            client.connect(self.host, self.port, self.client_id)
        except OSError as e:
            log.warning("connect_failed", session=self.name, error=repr(e))
            return False
        if not client.isConnected():
            self._drain_control()
            return False
        # The handshake named the gateway's zone; set before the decoder runs any callback.
        wrapper.set_server_zone(parse_connection_time_zone(client.twsConnectionTime()))
        self._decoder = threading.Thread(
            target=self._decode,
            args=(client, self.control),
            name=f"ib-{self.name}-decoder",
            daemon=True,
        )
        self._decoder.start()
        # The id answers with nextValidId; a 326 closes the socket instead.
        if not self._wait_for(self._nvi_event):
            log.warning("no_next_valid_id", session=self.name, client_id=self.client_id)
            client.disconnect()
            self._drain_until_closed()
            return False
        # Client-id governance (blueprint §3): the id must answer reqCurrentTime before trading.
        client.reqCurrentTime()
        if not self._wait_for(self._time_event):
            log.warning("no_current_time", session=self.name, client_id=self.client_id)
            client.disconnect()
            self._drain_until_closed()
            return False
        self._id_in_use_count = 0
        self._set_state(SessionState.SYNCING)
        return self._resync()

    def _resync(self) -> bool:
        try:
            synced = self._on_connected(self)
        except Exception as e:  # a Redis error mid-resync: reconnect with backoff, never die
            log.error("resync_failed", session=self.name, error=repr(e))
            synced = False
        if synced:
            self._set_state(SessionState.READY)
            return True
        client = self.client
        if client is not None:
            client.disconnect()
        self._drain_until_closed()
        return False

    def _decode(self, client: PacedClient, control: queue.Queue[Message]) -> None:
        try:
            client.run()
        except Exception as e:  # the socket died mid-message; the session reconnects
            log.warning("decoder_stopped", session=self.name, error=repr(e))
        finally:
            control.put(Message("connection_closed", self.client_id, {}, datetime.now(UTC)))

    def _wait_for(self, event: threading.Event) -> bool:
        deadline = time.monotonic() + self._connect_timeout_s
        while not event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed.is_set() or self.stop_event.is_set():
                return event.is_set()
            self._handle_one(timeout=min(remaining, 0.1))
        return True

    def wait_event(self, name: str, timeout: float) -> bool:
        """Pump control messages until the named event fires (used by the resync hook)."""
        ev = self.event(name)
        deadline = time.monotonic() + timeout
        while not ev.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed.is_set() or self.stop_event.is_set():
                return ev.is_set()
            self._handle_one(timeout=min(remaining, 0.1))
        return True

    def _pump_until_closed(self) -> None:
        while not self._closed.is_set() and not self.stop_event.is_set():
            self._handle_one(timeout=0.2)
            if self.state == SessionState.SYNCING and not self._closed.is_set():
                self._resync()

    def _drain_until_closed(self) -> None:
        deadline = time.monotonic() + 2.0
        while not self._closed.is_set() and time.monotonic() < deadline:
            self._handle_one(timeout=0.1)

    def _drain_control(self) -> None:
        while True:
            try:
                msg = self.control.get_nowait()
            except queue.Empty:
                return
            self._handle(msg)

    def _handle_one(self, timeout: float) -> None:
        try:
            msg = self.control.get(timeout=timeout)
        except queue.Empty:
            return
        self._handle(msg)

    def _handle(self, msg: Message) -> None:
        kind = msg.kind
        if kind == "next_valid_id":
            self.next_valid_id = int(msg.data["ib_order_id"])
            self._nvi_event.set()
        elif kind == "current_time":
            self._time_event.set()
        elif kind == "managed_accounts":
            self.accounts = list(msg.data["accounts"])
        elif kind == "connection_closed":
            if not self._closed.is_set():
                self._closed.set()
                self.ready.clear()
        elif kind == "error":
            code = int(msg.data["code"])
            cls = classify(code).kind
            if cls is IbCodeClass.CLIENT_ID_IN_USE:
                self._id_in_use.set()
                self.ready.clear()
            elif cls is IbCodeClass.CONNECTIVITY_LOST and code == IB_LOST_SERVERS:
                self._set_state(SessionState.VENUE_DOWN)
            elif cls in RESTORED and self.state == SessionState.VENUE_DOWN:
                # Connectivity restored: ids, open orders and executions are resynced first.
                self._set_state(SessionState.SYNCING)
        elif kind in ("open_order_end", "exec_details_end", "completed_orders_end"):
            self.event(kind).set()
        try:
            self._on_control(self, msg)
        except Exception as e:  # the owner's handler must never stop the control loop
            log.error("control_handler_failed", kind=kind, error=repr(e))
