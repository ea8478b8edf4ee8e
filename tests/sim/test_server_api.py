"""The programmatic API as documented: `SimServer` on the caller's event loop (stepped), and a
real-time accelerated server whose market moves without anyone stepping it."""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime

import pytest
from ibapi.contract import Contract

from tws_sim.server import SimServer, SimServerThread
from tws_sim.server.testing import RecordingClient

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


async def _read(reader: asyncio.StreamReader) -> list[str]:
    (n,) = struct.unpack(">I", await reader.readexactly(4))
    return (await reader.readexactly(n)).decode().split("\0")[:-1]


def _frame(*fields: str) -> bytes:
    body = ("\0".join(fields) + "\0").encode()
    return struct.pack(">I", len(body)) + body


def test_in_process_server_start_advance_stop() -> None:
    async def scenario() -> None:
        server = SimServer(stepped=True, seed=4, start=START)
        port = await server.start()
        assert port == server.port > 0
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"API\0" + struct.pack(">I", 9) + b"v157..178")
        assert (await _read(reader))[0] == "178"
        writer.write(_frame("71", "2", "1", ""))
        while (await _read(reader))[0] != "15":
            pass
        writer.write(_frame("49", "1"))  # reqCurrentTime
        while (msg := await _read(reader))[0] != "49":
            pass
        assert int(msg[2]) == int(START.timestamp())
        await server.advance(90)
        assert server.now() == START.replace(minute=1, second=30)
        writer.write(_frame("49", "1"))
        while (msg := await _read(reader))[0] != "49":
            pass
        assert int(msg[2]) == int(START.timestamp()) + 90
        with pytest.raises(RuntimeError):
            await SimServer(seed=1).advance(1)  # only a stepped server can be advanced
        await server.stop()
        assert await reader.read() == b""  # the session was closed by stop()
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)

    asyncio.run(scenario())


def test_real_time_accelerated_market_moves_by_itself() -> None:
    with SimServerThread(seed=4, start=START, speed=30) as sim:
        app = RecordingClient()
        try:
            app.start(sim.port, 1)
            c = Contract()
            c.symbol, c.secType, c.exchange, c.currency = "SPY", "STK", "SMART", "USD"
            app.reqMktData(1, c, "", False, False, [])
            first = app.wait_for(lambda: app.of("tickPrice"))
            n = len(first)
            app.wait_for(lambda: len(app.of("tickPrice")) > n + 10, timeout=20)
            assert sim.now() > START
        finally:
            app.stop()
