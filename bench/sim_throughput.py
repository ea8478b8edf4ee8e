"""How many messages per second `epm sim` sustains on this machine (issue 5 bench).

Two measurements, each against a real socket:
- order entry: clients blast placeOrder + cancelOrder messages encoded by the official `ibapi`
  client (v157 layout); the clock stops when the server has answered the last cancel. Pacing is
  switched off for this (IB's 50 msg/s per client would otherwise be the number measured).
- market-data fan-out: clients subscribe to tick data, tick-by-tick and depth of every default
  stock of a simulator running accelerated (`--speed`, so that it is saturated); the messages the
  clients receive per wall-clock second are counted.

The simulator runs in its own process (`python -m tws_sim`), so it has one core to itself and the
benchmark's own clients do not share its interpreter.

Run: `.venv/bin/python bench/sim_throughput.py [--orders N] [--clients N] [--seconds S]`.
Aim (issue 5): ≥ 2,000 order messages/s and ≥ 20,000 market-data messages/s on one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import struct
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.order import Order
from ibapi.wrapper import EWrapper

from tws_sim.server.process import SimProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import record

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
SYMBOLS = ("SPY", "QQQ", "IWM", "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA")


class _Capture:
    """A stand-in socket for ibapi's EClient that keeps the bytes it would send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def isConnected(self) -> bool:
        return True

    def sendMsg(self, msg: bytes) -> int:
        self.sent.append(msg)
        return len(msg)


def ibapi_messages(build: object) -> list[bytes]:
    """Run `build(client)` against an ibapi EClient and return the framed messages it wrote."""
    client = EClient(EWrapper())
    client.serverVersion_ = 157
    client.connState = EClient.CONNECTED
    client.conn = _Capture()
    build(client)  # type: ignore[operator]
    return client.conn.sent


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    c.conId = 0
    return c


class RawClient:
    """Handshake + startApi by hand; a reader thread counts frames and remembers the last ones."""

    def __init__(self, port: int, client_id: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        v = b"v100..157"
        self.sock.sendall(b"API\0" + struct.pack(">I", len(v)) + v)
        self.frames = 0
        self.bytes = 0
        self.watch: bytes | None = None
        self.seen = threading.Event()
        self._buf = b""
        self._stop = False
        self._read_frame_blocking()  # server hello
        body = f"71\x002\x00{client_id}\x00\x00".encode()
        self.sock.sendall(struct.pack(">I", len(body)) + body)
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _read_frame_blocking(self) -> bytes:
        while True:
            if len(self._buf) >= 4:
                (n,) = struct.unpack(">I", self._buf[:4])
                if len(self._buf) >= 4 + n:
                    body, self._buf = self._buf[4 : 4 + n], self._buf[4 + n :]
                    return body
            self._buf += self.sock.recv(65536)

    def _reader(self) -> None:
        buf = b""
        while not self._stop:
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                return
            if not chunk:
                return
            self.bytes += len(chunk)
            buf += chunk
            pos = 0
            n = len(buf)
            while n - pos >= 4:
                (size,) = struct.unpack_from(">I", buf, pos)
                if n - pos - 4 < size:
                    break
                if self.watch is not None and buf.startswith(self.watch, pos + 4):
                    self.seen.set()
                pos += 4 + size
                self.frames += 1
            buf = buf[pos:]

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def bench_orders(n_orders: int, n_clients: int, log: Path) -> tuple[int, float]:
    with SimProcess("--no-pacing", "--seed", "1", log_path=log) as sim:
        clients = [RawClient(sim.port, 100 + i) for i in range(n_clients)]
        per = n_orders // n_clients
        payloads = []
        for _c in clients:

            def build(client: EClient) -> None:
                for k in range(per):
                    o = Order()
                    o.action, o.orderType, o.tif = "BUY", "LMT", "DAY"
                    o.totalQuantity = Decimal(10)
                    o.lmtPrice = 1.00 + (k % 50) / 100  # far below the market: rests
                    client.placeOrder(k + 1, stock(SYMBOLS[k % len(SYMBOLS)]), o)
                for k in range(per):
                    client.cancelOrder(k + 1)

            payloads.append(b"".join(ibapi_messages(build)))
        for c in clients:
            # orderStatus (3) "Cancelled" of the last order: the server is done with this client.
            c.watch = f"3\x00{per}\x00Cancelled\x00".encode()
        time.sleep(0.2)
        t0 = time.perf_counter()
        threads = [
            threading.Thread(target=c.sock.sendall, args=(p,))
            for c, p in zip(clients, payloads, strict=True)
        ]
        for t in threads:
            t.start()
        for c in clients:
            if not c.seen.wait(300):
                raise RuntimeError("the server did not finish the order burst")
        elapsed = time.perf_counter() - t0
        for c in clients:
            c.close()
        return per * n_clients * 2, elapsed


def bench_market_data(n_clients: int, seconds: int, speed: int, log: Path) -> tuple[int, float]:
    with SimProcess("--seed", "1", "--speed", str(speed), log_path=log) as sim:
        clients = [RawClient(sim.port, 200 + i) for i in range(n_clients)]

        def build(client: EClient) -> None:
            for i, sym in enumerate(SYMBOLS):
                client.reqMktData(1000 + i, stock(sym), "", False, False, [])
                client.reqTickByTickData(2000 + i, stock(sym), "BidAsk", 0, False)
                client.reqTickByTickData(3000 + i, stock(sym), "AllLast", 0, False)
                client.reqMktDepth(4000 + i, stock(sym), 5, False, [])

        subscribe = b"".join(ibapi_messages(build))
        for c in clients:
            c.sock.sendall(subscribe)
        time.sleep(2)  # subscriptions in, warm-up
        before = sum(c.frames for c in clients)
        t0 = time.perf_counter()
        time.sleep(seconds)
        elapsed = time.perf_counter() - t0
        msgs = sum(c.frames for c in clients) - before
        for c in clients:
            c.close()
        return msgs, elapsed


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10, help="wall seconds of market data")
    parser.add_argument("--speed", type=int, default=200, help="simulated seconds per second")
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="sim-bench-")) / "sim.log"
    cpu = cpu_model()
    print(f"machine: {cpu}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    n, dt = bench_orders(args.orders, args.clients, log)
    print(f"order entry: {n} messages (placeOrder+cancelOrder) in {dt:.2f} s = {n / dt:,.0f} msg/s")
    record("sim_throughput", "order entry (placeOrder + cancelOrder)", n / dt, "msg/s", n=n,
           aim=2_000.0, better="higher")  # fmt: skip
    msgs, dt = bench_market_data(args.clients, args.seconds, args.speed, log)
    print(
        f"market data: {msgs} messages received by {args.clients} clients in {dt:.2f} s "
        f"(speed x{args.speed}) = {msgs / dt:,.0f} msg/s"
    )
    record("sim_throughput", f"market-data fan-out to {args.clients} clients (x{args.speed})",
           msgs / dt, "msg/s", n=msgs, aim=20_000.0, better="higher")  # fmt: skip


if __name__ == "__main__":
    main()
