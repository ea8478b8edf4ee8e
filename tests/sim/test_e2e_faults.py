"""The shipped `faults` scenario driven end to end with ibapi: gateway drop with refusal and
recovery, market-data farm drop, a size-limit reject — the timeline a fault drill relies on."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order

from tws_sim.server import SimServerThread
from tws_sim.server.testing import RecordingClient

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def spy() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPY", "STK", "SMART", "USD"
    return c


def test_faults_scenario_timeline() -> None:
    with SimServerThread(stepped=True, scenario="faults", start=START) as sim:
        app = RecordingClient()
        app.start(sim.port, 1)
        app.reqMktData(1, spy(), "", False, False, [])
        app.wait_for(lambda: app.of("tickPrice"))
        oid = app.of("nextValidId")[-1][0]
        big = Order()
        big.action, big.orderType, big.totalQuantity, big.tif = "BUY", "MKT", Decimal(6000), "DAY"
        app.placeOrder(oid, spy(), big)  # > 5,000 shares: the scenario's size limit
        app.wait_for(lambda: [e for e in app.errors(201) if e[0] == oid])
        small = Order()
        small.action, small.orderType, small.totalQuantity = "BUY", "MKT", Decimal(100)
        small.tif = "DAY"
        app.placeOrder(oid + 1, spy(), small)
        app.wait_for(lambda: [s for s in app.of("orderStatus") if s[1] == "Filled"])
        for _ in range(121):
            sim.advance(1)
        app.wait_for(lambda: not app.isConnected())
        app.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", sim.port), timeout=5)
        for _ in range(30):
            sim.advance(1)
        back = RecordingClient()
        try:
            back.start(sim.port, 1)
            back.wait_for(lambda: back.errors(1102))
            back.reqExecutions(2, ExecutionFilter())
            back.wait_for(lambda: back.of("execDetailsEnd"))
            assert [a[2].orderId for a in back.of("execDetails")] == [oid + 1]
            back.reqMktData(3, spy(), "", False, False, [])
            for _ in range(90):  # t = 151 .. 241: the md farm goes down at 240 s
                sim.advance(1)
            back.wait_for(lambda: back.errors(2103))
            for _ in range(21):
                sim.advance(1)
            back.wait_for(lambda: back.errors(2104)[-1:] and len(back.errors(2104)) >= 2)
        finally:
            back.stop()
