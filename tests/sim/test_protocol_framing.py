"""Handshake and framing: unit checks plus real clients connecting over a real socket.

The socket tests run a minimal server built only from `tws_sim.protocol` (handshake → hello →
startApi → nextValidId/managedAccounts/farm notice) and connect the installed `ibapi` EClient and
ib_async `Client` to it, so the handshake bytes, the hello frame and the first messages are the
ones real clients accept.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ib_async.client import Client
from ibapi import comm
from ibapi.client import EClient
from ibapi.server_versions import MAX_CLIENT_VER, MIN_CLIENT_VER

from tests.sim.test_protocol_clients import IBAPI_10, AsyncRecorder, Recorder, ibapi_error
from tws_sim.protocol import incoming as inc
from tws_sim.protocol import outgoing as out
from tws_sim.protocol.framing import (
    FrameReader,
    ProtocolError,
    connection_time,
    frame,
    frames,
    negotiate,
    parse_handshake,
    read_handshake,
    server_hello,
)

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def _ibapi_handshake(options: str = "") -> bytes:
    """The bytes ibapi's EClient.connect sends (same construction, from its own helpers)."""
    version = f"v{MIN_CLIENT_VER}..{MAX_CLIENT_VER}"
    if options:
        version += " " + options
    # 10.x renamed the length-prefix helper (its make_msg now takes a message id)
    prefix = comm.make_initial_msg if IBAPI_10 else comm.make_msg
    return b"API\0" + prefix(version)


def _async_handshake(options: bytes = b"") -> bytes:
    client = Client(AsyncRecorder())
    body = b"v%d..%d" % (client.MinClientVersion, client.MaxClientVersion)
    if options:
        body += b" " + options
    return b"API\0" + client._prefix(body)


# --------------------------------------------------------------------------------------------------
# handshake


def test_handshakes_of_real_clients() -> None:
    # 9.81 asks v100..157; 10.46 asks v100..2xx (past the text protocol; we answer 178 at most)
    assert parse_handshake(_ibapi_handshake()) == (100, MAX_CLIENT_VER, "")
    assert MAX_CLIENT_VER > 200 if IBAPI_10 else MAX_CLIENT_VER == 157
    assert negotiate(100, MAX_CLIENT_VER) == min(MAX_CLIENT_VER, 178)
    assert parse_handshake(_async_handshake()) == (157, 178, "")
    assert parse_handshake(_async_handshake(b"+PACEAPI")) == (157, 178, "+PACEAPI")
    assert parse_handshake(_ibapi_handshake("+PACEAPI")) == (100, MAX_CLIENT_VER, "+PACEAPI")


def test_handshake_incremental_and_trailing_bytes() -> None:
    data = _async_handshake() + frame(["71", "2", "5", ""])
    for cut in range(len(_async_handshake())):
        assert read_handshake(data[:cut]) is None
    hs = read_handshake(data)
    assert hs is not None
    assert (hs.min_version, hs.max_version) == (157, 178)
    assert FrameReader().feed(data[hs.consumed :]) == [["71", "2", "5", ""]]


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"APX\0\0\0\0\x05v1..2",
        b"API\0\0\0\0\0",
        b"API\0\xff\xff\xff\xff",
        b"API\0" + struct.pack(">I", 6) + b"hello!",
        b"API\0" + struct.pack(">I", 7) + b"v178..1",
        b"API\0" + struct.pack(">I", 4) + b"v\xff\xfe1",
    ],
)
def test_handshake_garbage_raises(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_handshake(data)


def test_single_version_handshake() -> None:
    assert parse_handshake(b"API\0" + struct.pack(">I", 4) + b"v176") == (176, 176, "")


def test_negotiate() -> None:
    assert negotiate(100, 157) == 157
    assert negotiate(157, 178) == 178
    assert negotiate(157, 213) == 178
    assert negotiate(100, 150) is None
    assert negotiate(179, 213) is None


def test_server_hello_is_two_fields_without_message_id() -> None:
    (fields,) = FrameReader().feed(server_hello(176, T0))
    assert fields == ["176", "20260105 14:30:00 UTC"]
    assert connection_time(T0) == "20260105 14:30:00 UTC"


# --------------------------------------------------------------------------------------------------
# frames


def test_frame_reader_partial_and_batched() -> None:
    data = frames([["1", "6", "3", "1", "450.25", "100", "0"], ["9", "1", "1"]]) + frame(["49"])
    reader = FrameReader()
    got: list[list[str]] = []
    for b in data:
        got += reader.feed(bytes([b]))
    assert got == [["1", "6", "3", "1", "450.25", "100", "0"], ["9", "1", "1"], ["49"]]
    assert reader.buffered == 0
    assert FrameReader().feed(data) == got


def test_frame_reader_keeps_empty_fields() -> None:
    assert FrameReader().feed(frame(["4", "1", "7", ""])) == [["4", "1", "7", ""]]


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">I", 0),
        struct.pack(">I", 0x7FFFFFFF) + b"x",
        struct.pack(">I", 3) + b"abc",  # no NUL terminator
    ],
)
def test_frame_reader_garbage(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameReader().feed(data)


def test_frame_reader_max_size() -> None:
    reader = FrameReader(max_size=16)
    with pytest.raises(ProtocolError):
        reader.feed(frame(["x" * 40]))


def test_frame_reader_non_ascii_survives() -> None:
    (fields,) = FrameReader().feed(struct.pack(">I", 4) + b"\xff\xfe1\0")
    assert fields[0].endswith("1")


# --------------------------------------------------------------------------------------------------
# real clients over a real socket


class MiniServer:
    """A one-connection server speaking the handshake with tws_sim.protocol only."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.requests: list[inc.Request] = []
        self.version = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                self._session(conn)
            except (OSError, ProtocolError) as e:
                self.errors.append(e)

    def _session(self, conn: socket.socket) -> None:
        buf = b""
        hs = None
        while hs is None:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
            hs = read_handshake(buf)
        version = negotiate(hs.min_version, hs.max_version)
        assert version is not None
        self.version = version
        conn.sendall(server_hello(version, T0))
        reader = FrameReader()
        pending = buf[hs.consumed :]
        client_id = 0
        while True:
            for fields in reader.feed(pending):
                req = inc.decode(fields, version, client_id)
                self.requests.append(req)
                if isinstance(req, inc.StartApi):
                    client_id = req.client_id
                    conn.sendall(
                        frames(
                            [
                                out.encode_next_valid_id(1, version),
                                out.encode_managed_accounts(["DU1234567"], version),
                                out.encode_error(-1, 2104, "Market data farm OK:usfarm", version),
                            ]
                        )
                    )
                elif isinstance(req, inc.ReqCurrentTime):
                    conn.sendall(frame(out.encode_current_time(T0, version)))
            pending = conn.recv(4096)
            if not pending:
                return

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def mini_server() -> Iterator[MiniServer]:
    server = MiniServer()
    yield server
    server.close()


def _wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


def test_ibapi_client_connects(mini_server: MiniServer) -> None:
    wrapper = Recorder()
    client = EClient(wrapper)
    client.connect("127.0.0.1", mini_server.port, 7)
    runner = threading.Thread(target=client.run, daemon=True)
    runner.start()
    try:
        assert client.serverVersion() == min(MAX_CLIENT_VER, 178)
        assert mini_server.version == client.serverVersion()
        assert client.twsConnectionTime() == b"20260105 14:30:00 UTC"  # ibapi keeps bytes
        _wait_for(lambda: any(n == "error" for n, _ in wrapper.calls))
        client.reqCurrentTime()
        _wait_for(lambda: any(n == "currentTime" for n, _ in wrapper.calls))
    finally:
        client.disconnect()
        runner.join(timeout=5)
    names = [n for n, _ in wrapper.calls]
    assert ("nextValidId", (1,)) in wrapper.calls
    assert ("managedAccounts", ("DU1234567",)) in wrapper.calls
    farm = [ibapi_error(args) for n, args in wrapper.calls if n == "error"]
    assert farm == [(-1, 2104, "Market data farm OK:usfarm")]
    assert ("currentTime", (int(T0.timestamp()),)) in wrapper.calls
    assert "connectAck" in names
    assert mini_server.requests[0] == inc.StartApi(7, "")
    assert not mini_server.errors


def test_ib_async_client_connects(mini_server: MiniServer) -> None:
    async def run() -> tuple[int, list[str], list[tuple[str, tuple[Any, ...]]]]:
        wrapper = AsyncRecorder()
        client = Client(wrapper)
        await client.connectAsync("127.0.0.1", mini_server.port, 9, timeout=10)
        try:
            return client.serverVersion(), client.getAccounts(), wrapper.calls
        finally:
            client.disconnect()

    version, accounts, calls = asyncio.run(run())
    assert version == 178
    assert accounts == ["DU1234567"]
    assert ("nextValidId", (1,)) in calls
    assert ("error", (-1, 2104, "Market data farm OK:usfarm", "")) in calls
    _wait_for(lambda: bool(mini_server.requests))
    assert mini_server.requests[0] == inc.StartApi(9, "")
    assert mini_server.version == 178
