"""One API connection: handshake, startApi, pacing, framing errors, and what it asked for.

A `Session` is an `asyncio.Protocol` (not a stream reader/writer pair): `data_received` splits
frames and hands each message to the server synchronously, and `send` writes straight to the
transport. That keeps the per-message cost to one decode and one write, which is what the
throughput aim of issue 5 needs. Everything that can go wrong with the bytes of one client ends
that client's connection (or earns it an error) and nothing else.

A session sees its server through `SessionHost` (registration, dispatch and the disconnect
callback), so this module does not import the server that creates its sessions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import datetime
from enum import IntEnum
from typing import Protocol, cast

from tws_sim.protocol import framing
from tws_sim.protocol.ids import In
from tws_sim.server import out
from tws_sim.server.faults import PacingMeter

log = logging.getLogger("tws_sim.server")

# IB's texts for the codes the session layer itself sends.
MSG_CLIENT_ID_IN_USE = (
    "Unable to connect as the client id is already in use. Retry with a unique client id."
)
MAX_UNSENT_BYTES = 64 * 1024 * 1024
MSG_PACING = "Max rate of messages per second has been exceeded:max={limit} rec={count}"
START_API = str(In.START_API)  # the one message a session accepts before it is registered


class Phase(IntEnum):
    """Where a connection is in its life: handshake, startApi, serving, gone."""

    PREFIX = 0  # waiting for b"API\0" + the framed "v<min>..<max>"
    START_API = 2  # version answered, waiting for startApi (71)
    READY = 3  # registered under a client id
    CLOSED = 4


class SessionHost(Protocol):
    """What a session needs of its server (`SimServer` is the one implementation): the pacing
    limit, the client-id registry, request dispatch and the life-cycle callbacks."""

    @property
    def pacing_limit(self) -> int | None: ...

    def connection_time(self) -> str: ...
    def on_connection(self, session: Session) -> None: ...
    def register(self, session: Session, client_id: int) -> bool: ...
    def on_ready(self, session: Session) -> None: ...
    def dispatch(self, session: Session, fields: list[str]) -> None: ...
    def on_disconnect(self, session: Session) -> None: ...


class Session(asyncio.Protocol):
    """The server side of one socket (an asyncio protocol)."""

    def __init__(self, server: SessionHost) -> None:
        super().__init__()
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()  # handshake bytes only; frames go through `reader`
        self.reader = framing.FrameReader()
        self._out: list[bytes] = []
        self._paced: deque[list[str]] = deque()  # +PACEAPI: messages waiting for their second
        self._drain_scheduled = False
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self.phase = Phase.PREFIX
        self.version = 0
        self.client_id: int | None = None
        self.capabilities = ""
        self.connect_options = ""
        self.pacing = PacingMeter(server.pacing_limit)
        self.connected_at: datetime | None = None
        self.peer = ""
        # Request state kept per connection (the server's subscription registry holds the rest).
        self.auto_open_orders = False
        self.market_data_type = 1
        self.msgs_in = 0
        self.msgs_out = 0
        self.close_reason = ""

    # ---------------------------------------------------------------------------------------------
    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP server's protocol is always given a stream transport (asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        self.server.on_connection(self)

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.CLOSED:
            return
        try:
            if self.phase is Phase.PREFIX:
                self.buf += data
                hs = framing.read_handshake(self.buf)
                if hs is None:
                    return
                data = bytes(self.buf[hs.consumed :])
                self.buf.clear()
                self._on_handshake(hs.min_version, hs.max_version, hs.options)
            for fields in self.reader.feed(data):
                if self.phase is Phase.CLOSED:
                    return
                self._on_message(fields)
        except framing.ProtocolError as e:
            self.close(f"bad bytes: {e}")
        except Exception:  # a bug in a handler must cost this client only, never the server
            log.exception("session %s (client %s) failed", self.peer, self.client_id)
            self.close("internal error")

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.phase is not Phase.CLOSED:
            self.phase = Phase.CLOSED
            self.close_reason = self.close_reason or "peer closed"
        self.server.on_disconnect(self)

    # ---------------------------------------------------------------------------------------------

    def _queue_paced(self, fields: list[str]) -> None:
        """`+PACEAPI`: the client asked TWS to pace it, so excess messages wait for the next
        one-second window (in order) instead of being refused with error 100."""
        if not self._paced and self.pacing.take(time.monotonic()):
            self.server.dispatch(self, fields)
            return
        self._paced.append(fields)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_later(self.pacing.wait_s(time.monotonic()) + 0.001, self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        queue = self._paced
        while queue and self.phase is Phase.READY and self.pacing.take(time.monotonic()):
            fields = queue.popleft()
            try:
                self.server.dispatch(self, fields)
            except Exception:
                log.exception("session %s (client %s) failed", self.peer, self.client_id)
                self.close("internal error")
                return
        if queue and self.phase is Phase.READY:
            self._drain_scheduled = True
            self._loop.call_later(self.pacing.wait_s(time.monotonic()) + 0.001, self._drain)

    @property
    def paced_by_server(self) -> bool:
        return "+PACEAPI" in self.connect_options.upper()

    def _on_handshake(self, lo: int, hi: int, options: str) -> None:
        version = framing.negotiate(lo, hi)
        if version is None:
            # Nothing the client could decode can be said: like TWS, close the socket; the
            # client reports that it could not connect.
            raise framing.ProtocolError(f"client versions {lo}..{hi} outside 157..178")
        self.version = version
        self.connect_options = options
        self.phase = Phase.START_API
        self.send([str(version), self.server.connection_time()])

    def _on_message(self, fields: list[str]) -> None:
        if self.phase is Phase.READY:
            self.msgs_in += 1
            if self.paced_by_server:
                self._queue_paced(fields)
                return
            ok, warn = self.pacing.admit(time.monotonic())
            if not ok:
                if warn:
                    limit = self.server.pacing_limit
                    text = MSG_PACING.format(limit=limit, count=self.pacing.count)
                    self.send_error(-1, 100, text)
                    if self.pacing.should_disconnect():
                        self.close("pacing violations")
                return
            self.server.dispatch(self, fields)
            return
        # Phase.START_API: the only message accepted before registration.
        if not fields or fields[0] != START_API or len(fields) < 3:
            raise framing.ProtocolError(f"expected startApi, got message {fields[:1]}")
        try:
            client_id = int(fields[2])
        except ValueError as e:
            raise framing.ProtocolError(f"startApi client id {fields[2]!r} is not an int") from e
        self.capabilities = fields[3] if len(fields) > 3 else ""
        self.msgs_in += 1
        if not self.server.register(self, client_id):
            self.send_error(-1, 326, MSG_CLIENT_ID_IN_USE)
            self.close(f"client id {client_id} in use")
            return
        self.client_id = client_id
        self.phase = Phase.READY
        self.server.on_ready(self)

    # ---------------------------------------------------------------------------------------------

    def send(self, fields: list[str]) -> None:
        """Queue one message; silently nothing once the session is closed.

        Messages are written in one batch per event-loop turn (`flush`): a placeOrder answered
        with openOrder + orderStatus, or a market step fanned out to many subscriptions, costs one
        socket write instead of one per message.
        """
        if self.phase is Phase.CLOSED:
            return
        self.msgs_out += 1
        self._out.append(framing.frame(fields))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write everything queued (called by the loop; also before a close)."""
        self._flush_scheduled = False
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        if self.transport is not None and self.phase is not Phase.CLOSED:
            self.transport.write(data)
            if self.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
                # A client that stopped reading would otherwise make the server buffer its
                # market data without bound; drop it (its reconnect recovers state).
                self.abort("client is not reading (write buffer full)")

    def send_error(self, req_id: int, code: int, message: str) -> None:
        self.send(out.error(req_id, code, message, self.version or framing.MIN_SERVER_VERSION))

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    def close(self, reason: str) -> None:
        """Close this connection after what was already written (bytes are flushed first)."""
        if self.phase is Phase.CLOSED:
            return
        if self._out and self.transport is not None:
            self.transport.write(b"".join(self._out))
            self._out.clear()
        self.phase = Phase.CLOSED
        self.close_reason = reason
        log.info("closing session %s (client %s): %s", self.peer, self.client_id, reason)
        if self.transport is not None:
            self.transport.close()
        self.server.on_disconnect(self)

    def abort(self, reason: str) -> None:
        """Drop the socket at once (a simulated gateway crash: unsent bytes are lost)."""
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        self.close_reason = reason
        self._out.clear()
        if self.transport is not None:
            self.transport.abort()
        self.server.on_disconnect(self)

    def __repr__(self) -> str:
        return f"Session(client={self.client_id}, v={self.version}, {self.phase.name}, {self.peer})"
