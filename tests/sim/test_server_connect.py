"""The server's connection life cycle over real sockets: handshake, startApi, client ids, bad
bytes, pacing and connectivity faults. Raw sockets where the bytes matter, ibapi elsewhere."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tws_sim.market.scenario import Scenario
from tws_sim.server import SimServerThread
from tws_sim.server.testing import RecordingClient

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.fixture
def sim() -> Iterator[SimServerThread]:
    with SimServerThread(stepped=True, seed=3, start=START) as server:
        yield server


class Raw:
    """A hand-driven API socket: exact bytes out, parsed frames in."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_fields(self, *fields: str) -> None:
        body = ("\0".join(fields) + "\0").encode()
        self.send(struct.pack(">I", len(body)) + body)

    def hello(self, versions: bytes = b"v100..178") -> list[str]:
        self.send(b"API\0" + struct.pack(">I", len(versions)) + versions)
        return self.read()

    def read(self, timeout: float = 10.0) -> list[str]:
        """The next frame's fields; ConnectionError when the server closed the socket."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    return body.decode().split("\0")[:-1]
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by server")
            self.buf += chunk

    def read_until(self, pred: object, timeout: float = 10.0) -> list[list[str]]:
        got: list[list[str]] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.read(max(0.01, deadline - time.monotonic()))
            got.append(msg)
            if pred(msg):  # type: ignore[operator]
                return got

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        """True once the server closes the socket (draining whatever it sent first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.read(max(0.01, deadline - time.monotonic()))
            except ConnectionError:
                return True
            except TimeoutError:
                return False
        return False

    def start(self, client_id: int) -> list[list[str]]:
        """Handshake + startApi; → messages up to and including the 2158 notice."""
        self.hello()
        self.send_fields("71", "2", str(client_id), "")
        return self.read_until(lambda m: m[0] == "4" and m[3] == "2158")

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    ("versions", "expected"),
    [(b"v100..157", 157), (b"v157..178", 178), (b"v100..201", 178), (b"v176", 176)],
)
def test_handshake_negotiates_min_of_client_max_and_178(
    sim: SimServerThread, versions: bytes, expected: int
) -> None:
    raw = Raw(sim.port)
    fields = raw.hello(versions)
    assert int(fields[0]) == expected
    assert len(fields) == 2 and fields[1]  # [version, connection time], no message id
    raw.close()


@pytest.mark.parametrize(
    "opening",
    [
        b"API\0" + struct.pack(">I", 9) + b"v100..150",  # too old: below 157
        b"API\0" + struct.pack(">I", 5) + b"hello",  # garbage version string
        b"GET / HTTP/1.1\r\n\r\n",  # not the API at all
        b"API\0" + struct.pack(">I", 0),  # zero-length version
    ],
)
def test_unusable_handshakes_are_closed(sim: SimServerThread, opening: bytes) -> None:
    raw = Raw(sim.port)
    raw.send(opening)
    assert raw.closed_by_server()
    # ... and the server still serves others.
    other = Raw(sim.port)
    assert other.start(5)[-1][3] == "2158"
    other.close()


def test_connect_sends_next_id_accounts_and_farm_notices(sim: SimServerThread) -> None:
    app = RecordingClient()
    try:
        assert app.start(sim.port, 1) == 1
        app.wait_for(lambda: app.of("managedAccounts"))
        assert app.of("managedAccounts")[0][0] == "DU1234567"
        codes = app.wait_for(lambda: [c for _, c, _ in app.errors() if c == 2158] and app.errors())
        assert [c for _, c, _ in codes] == [2104, 2106, 2158]
        assert all(req_id == -1 for req_id, _, _ in codes)
    finally:
        app.stop()


def test_duplicate_client_id_gets_326_and_first_keeps_its_session(sim: SimServerThread) -> None:
    first = RecordingClient()
    second = RecordingClient()
    try:
        first.start(sim.port, 7)
        second.connect("127.0.0.1", sim.port, 7)
        import threading

        threading.Thread(target=second.run, daemon=True).start()
        second.wait_for(lambda: second.errors(326))
        second.wait_for(lambda: not second.isConnected())
        assert not second.of("nextValidId")
        # The first connection is still registered and served.
        first.reqCurrentTime()
        first.wait_for(lambda: first.of("currentTime"))
        assert sim.call(lambda s: sorted(s.clients)) == [7]
    finally:
        second.stop()
        first.stop()


def test_many_client_ids_at_once(sim: SimServerThread) -> None:
    raws = {cid: Raw(sim.port) for cid in (1, 2, 3, 99, 0)}
    try:
        for cid, raw in raws.items():
            msgs = raw.start(cid)
            assert ["15", "1", "DU1234567"] in msgs
        assert sim.call(lambda s: sorted(s.clients)) == [0, 1, 2, 3, 99]
    finally:
        for raw in raws.values():
            raw.close()


@pytest.mark.parametrize(
    "bad",
    [
        struct.pack(">I", 0),  # zero length prefix
        struct.pack(">I", 0x7FFFFFFF) + b"49\0",  # absurd length prefix
        struct.pack(">I", 4) + b"49\x001",  # body without its closing NUL
    ],
)
def test_bad_frames_close_only_that_client(sim: SimServerThread, bad: bytes) -> None:
    good = Raw(sim.port)
    good.start(1)
    victim = Raw(sim.port)
    victim.start(2)
    victim.send(bad)
    assert victim.closed_by_server()
    good.send_fields("49", "1")  # reqCurrentTime
    assert good.read_until(lambda m: m[0] == "49")[-1][0] == "49"
    assert sim.call(lambda s: sorted(s.clients)) == [1]
    good.close()


def test_truncated_message_then_close_leaves_server_serving(sim: SimServerThread) -> None:
    victim = Raw(sim.port)
    victim.start(2)
    victim.send(struct.pack(">I", 50) + b"49\0")  # promises 50 bytes, sends 3, goes away
    victim.close()
    good = Raw(sim.port)
    good.start(2)  # the id is free again once the truncated client is gone
    good.send_fields("49", "1")
    assert good.read_until(lambda m: m[0] == "49")[-1][0] == "49"
    good.close()


def test_unknown_and_garbage_message_ids_get_an_error_and_keep_the_connection(
    sim: SimServerThread,
) -> None:
    raw = Raw(sim.port)
    raw.start(4)
    raw.send_fields("999", "1", "2")
    err = raw.read_until(lambda m: m[0] == "4")[-1]
    assert err[3] == "505"
    raw.send_fields("zz\x01garbage")
    err = raw.read_until(lambda m: m[0] == "4")[-1]
    assert err[3] == "505"
    raw.send_fields("1", "11", "5")  # reqMktData cut short: a reading error for that request
    err = raw.read_until(lambda m: m[0] == "4")[-1]
    assert err[3] == "320"
    raw.send_fields("49", "1")
    assert raw.read_until(lambda m: m[0] == "49")[-1][0] == "49"
    raw.close()


def test_pacing_more_than_50_messages_a_second_gets_error_100(sim: SimServerThread) -> None:
    raw = Raw(sim.port)
    raw.start(1)
    burst = b"".join(struct.pack(">I", 5) + b"49\x001\x00" for _ in range(60))
    raw.send(burst)
    msgs = raw.read_until(lambda m: m[0] == "4" and m[3] == "100")
    times = [m for m in msgs if m[0] == "49"]
    assert len(times) <= 50
    # The excess was not acted on: exactly 50 currentTime answers arrive in total. Poll with
    # reqManagedAccts until one is admitted (the next wall-clock second): by then every answer
    # to the burst has been written before it.
    rest: list[list[str]] = []
    deadline = time.monotonic() + 10
    while not any(m[0] == "15" for m in rest):
        assert time.monotonic() < deadline
        raw.send_fields("17", "1")
        until = time.monotonic() + 0.25
        while time.monotonic() < until and not any(m[0] == "15" for m in rest):
            try:
                rest.append(raw.read(max(0.01, until - time.monotonic())))
            except TimeoutError:
                break
    assert len(times) + sum(1 for m in rest if m[0] == "49") == 50
    assert not [m for m in rest if m[0] == "4" and m[3] == "100"]  # one error per second only
    raw.close()


def test_drop_all_refuses_connects_until_the_window_ends(sim: SimServerThread) -> None:
    app = RecordingClient()
    app.start(sim.port, 1)
    port = sim.port
    sim.call(lambda s: s.drop_all(30))
    app.wait_for(lambda: not app.isConnected())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    sim.advance(31)
    again = Raw(port)
    assert again.start(1)[-1][3] == "2158"
    again.close()
    app.stop()


def test_scenario_md_farm_drop_and_disconnect_faults() -> None:
    scenario = Scenario.from_text(
        """
name: faults
always_open: true
instruments: [{symbol: SPY, price: 600}]
faults:
  - {kind: md_farm_drop, after_s: 5, duration_s: 10}
  - {kind: disconnect, after_s: 30, duration_s: 20}
"""
    )
    with SimServerThread(stepped=True, scenario=scenario, start=START) as sim:
        raw = Raw(sim.port)
        raw.start(1)
        # reqMktData (v178 layout): reqId 7, SPY by conId, no generic ticks, streaming.
        spy = ("756733", "SPY", "STK", "", "0", "", "", "SMART", "", "USD", "", "")
        raw.send_fields("1", "11", "7", *spy, "0", "", "0", "0", "")
        assert raw.read_until(lambda m: m[0] == "1")  # first ticks
        sim.advance(6)
        got = raw.read_until(lambda m: m[0] == "4" and m[3] == "2103")
        assert got[-1][3] == "2103"
        sim.advance(5)  # farm down: no market data at all
        raw.send_fields("49", "1")
        assert [m[0] for m in raw.read_until(lambda m: m[0] == "49")] == ["49"]
        sim.advance(5)
        after = raw.read_until(lambda m: m[0] == "4" and m[3] == "2104")
        assert after[-1][3] == "2104"
        sim.advance(2)
        assert raw.read_until(lambda m: m[0] in ("1", "2"))  # data flows again
        sim.advance(13)  # t = 31: the gateway drops every socket and refuses for 20 s
        assert raw.closed_by_server()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", sim.port), timeout=5)
        sim.advance(20)
        again = Raw(sim.port)
        assert again.start(1)[-1][3] == "2158"
        assert again.read_until(lambda m: m[0] == "4")[-1][3] == "1102"  # connectivity back
        again.close()


def test_paceapi_clients_are_queued_not_refused(sim: SimServerThread) -> None:
    raw = Raw(sim.port)
    raw.hello(b"v100..178 +PACEAPI")
    raw.send_fields("71", "2", "8", "")
    raw.read_until(lambda m: m[0] == "4" and m[3] == "2158")
    t0 = time.monotonic()
    raw.send(b"".join(struct.pack(">I", 5) + b"49\x001\x00" for _ in range(70)))
    got: list[list[str]] = []
    while sum(1 for m in got if m[0] == "49") < 70:
        got.append(raw.read(5))
    assert not [m for m in got if m[0] == "4" and m[3] == "100"]
    assert time.monotonic() - t0 >= 0.9  # the last 20 waited for the next second
    raw.close()


def test_a_client_that_stops_reading_is_dropped_alone(
    sim: SimServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tws_sim.server.session as session_mod

    monkeypatch.setattr(session_mod, "MAX_UNSENT_BYTES", 100_000)
    lazy = Raw(sim.port)
    lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lazy.start(60)
    for k, con_id in enumerate(("756733", "320227571", "9579970", "265598")):
        contract = (con_id, "", "STK", "", "0", "", "", "SMART", "", "USD", "", "")
        lazy.send_fields("10", "5", str(100 + k), *contract, "10", "0", "")  # reqMktDepth
        lazy.send_fields("1", "11", str(200 + k), *contract, "0", "", "0", "0", "")
    good = Raw(sim.port)
    good.start(61)
    deadline = time.monotonic() + 60
    while sim.call(lambda s: 60 in s.clients):
        assert time.monotonic() < deadline, "the non-reading client was never dropped"
        sim.advance(10)
    good.send_fields("49", "1")
    assert good.read_until(lambda m: m[0] == "49")[-1][0] == "49"
    good.close()
    lazy.close()


def test_connectivity_loss_keeps_sockets_and_says_1100_then_1102(sim: SimServerThread) -> None:
    raw = Raw(sim.port)
    raw.start(1)
    sim.call(lambda s: s.set_connectivity(False))
    assert raw.read_until(lambda m: m[0] == "4")[-1][3] == "1100"
    late = Raw(sim.port)  # a client logging on meanwhile hears it right after the farm notices
    late.start(2)
    assert late.read_until(lambda m: m[0] == "4")[-1][3] == "1100"
    sim.call(lambda s: s.set_connectivity(True))
    assert raw.read_until(lambda m: m[0] == "4")[-1][3] == "1102"
    raw.send_fields("49", "1")
    assert raw.read_until(lambda m: m[0] == "49")[-1][0] == "49"
    raw.close()
    late.close()
