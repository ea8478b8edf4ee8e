"""One broad official-client session against `epm sim`: nothing in it would tell the client that
this is not a paper gateway (issue 5).

Runs with whichever `ibapi` is installed: 9.81 in the main run, 10.46 in the compatibility venv
(`test_ibapi10.py` includes this module in its child run). The client connects, asks for nearly
every request the simulator serves (contracts, option chains, streaming and snapshot market data,
tick-by-tick, depth, bars, history, orders placed / modified / cancelled, a bracket, executions,
positions, account, P&L, completed orders), then the test checks what a client would notice:

- the negotiated version is min(client max, 178), so a 10.x client stays on the text protocol;
- no error callback other than a gateway's informational notices and the answers the requests
  provoke on purpose; in particular no client-side decode error (505 unknown message id,
  507 bad length, 508 bad message) and no server-side "could not read your request" (320/321,
  505 at the server);
- ibapi's own loggers recorded no warning or error (ibapi logs, instead of raising, when a message
  has the wrong number of fields for its callback, and drops it);
- the connection is still up at the end (a decoder exception ends ibapi's reader loop);
- under 10.x, sizes arrive as Decimal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ibapi
import pytest
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.server_versions import MAX_CLIENT_VER

from tws_sim.server import SimServerThread
from tws_sim.server.testing import RecordingClient

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 ET
ACCOUNT = "DU1234567"
IBAPI_10 = ibapi.__version__.startswith("10.")
# what a paper gateway sends unasked: farm notices (2104/2106/2158; 2103/2105/2107/2157 on drops)
NOTICES = {2103, 2104, 2105, 2106, 2107, 2157, 2158}
# the answers the session provokes on purpose: cancel acknowledged (202)
PROVOKED = {202}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def ibapi_log() -> Iterator[_Collect]:
    """Warnings and errors logged by ibapi's modules during the test."""
    handler = _Collect()
    logger = logging.getLogger("ibapi")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def sim() -> Iterator[SimServerThread]:
    with SimServerThread(stepped=True, seed=5, start=START) as server:
        yield server


def _stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def _option(expiry: str, strike: float) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPY", "OPT", "SMART", "USD"
    c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier = expiry, strike, "C", "100"
    return c


def _order(action: str, qty: int, price: float, **extra: Any) -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.lmtPrice, o.tif = (
        action,
        Decimal(qty),
        "LMT",
        price,
        "DAY",
    )
    for k, v in extra.items():
        setattr(o, k, v)
    return o


def _status(app: RecordingClient, order_id: int) -> str:
    got = [a for a in app.of("orderStatus") if a[0] == order_id]
    return str(got[-1][1]) if got else ""


def _until(sim: SimServerThread, app: RecordingClient, pred: Any, limit_s: int = 300) -> Any:
    """Step simulated time 1 s at a time until `pred()` holds; then a short real-time wait."""
    for _ in range(limit_s):
        value = pred()
        if value:
            return value
        sim.advance(1)
    return app.wait_for(pred, 5)


def _ends(app: RecordingClient, *names: str) -> None:
    for name in names:

        def arrived(n: str = name) -> list[tuple[Any, ...]]:
            return app.of(n)

        app.wait_for(arrived)


def test_full_client_session_is_indistinguishable(
    sim: SimServerThread, ibapi_log: _Collect
) -> None:
    app = RecordingClient()
    oid = app.start(sim.port, 7)
    version = app.serverVersion()
    try:
        _session(sim, app, oid)
        assert app.isConnected(), "the client's reader loop ended (a decoder exception?)"
    finally:
        app.stop()

    assert version == min(MAX_CLIENT_VER, 178)
    unexpected = [e for e in app.errors() if e[1] not in NOTICES | PROVOKED]
    assert not unexpected, unexpected
    logged = [f"{r.name}: {r.getMessage()[:300]}" for r in ibapi_log.records]
    assert not logged, logged


def _session(sim: SimServerThread, app: RecordingClient, oid: int) -> None:
    app.reqCurrentTime()
    app.reqIds(-1)
    app.reqManagedAccts()
    app.reqMarketDataType(1)
    app.wait_for(lambda: app.of("currentTime") and len(app.of("managedAccounts")) >= 2)
    assert app.of("managedAccounts")[-1] == (ACCOUNT,)

    # contracts and the option chain
    app.reqContractDetails(1, _stock("SPY"))
    app.reqSecDefOptParams(2, "SPY", "", "STK", 756733)
    _ends(app, "contractDetailsEnd", "securityDefinitionOptionParameterEnd")
    app.reqMktData(3, _stock("SPY"), "", True, False, [])
    app.wait_for(lambda: [a for a in app.of("tickSnapshotEnd") if a[0] == 3])
    prices = {a[1]: a[2] for a in app.of("tickPrice") if a[0] == 3}
    bid, ask = prices[1], prices[2]
    chain = app.of("securityDefinitionOptionParameter")[0]
    expiry = sorted(chain[5])[0]
    strike = min(chain[6], key=lambda k: abs(k - (bid + ask) / 2))
    app.reqContractDetails(4, _option(expiry, strike))
    app.wait_for(lambda: [a for a in app.of("contractDetailsEnd") if a[0] == 4])

    # streaming market data of every kind
    app.reqMktData(5, _stock("SPY"), "", False, False, [])
    app.reqMktData(6, _option(expiry, strike), "", False, False, [])
    app.reqTickByTickData(7, _stock("SPY"), "BidAsk", 0, False)
    app.reqTickByTickData(8, _stock("SPY"), "AllLast", 0, False)
    app.reqTickByTickData(9, _stock("SPY"), "Last", 0, False)
    app.reqMktDepth(10, _stock("SPY"), 5, False, [])
    app.reqRealTimeBars(11, _stock("SPY"), 5, "TRADES", False, [])
    app.reqHistoricalData(12, _stock("SPY"), "", "1800 S", "1 min", "TRADES", 1, 1, False, [])
    _until(
        sim,
        app,
        lambda: (
            app.of("tickOptionComputation")
            and app.of("tickByTickAllLast")
            and app.of("tickByTickAllLast")
            and app.of("updateMktDepthL2")
            and app.of("realtimeBar")
            and app.of("historicalDataEnd")
        ),
    )

    # orders: one that fills at once, one that rests, is modified and cancelled, a bracket
    app.placeOrder(oid, _stock("SPY"), _order("BUY", 100, round(ask + 0.5, 2)))
    _until(sim, app, lambda: _status(app, oid) == "Filled")
    resting = _order("BUY", 10, round(bid - 10, 2))
    app.placeOrder(oid + 1, _stock("SPY"), resting)
    app.wait_for(lambda: _status(app, oid + 1) == "Submitted")
    resting.lmtPrice = round(bid - 9, 2)
    app.placeOrder(oid + 1, _stock("SPY"), resting)
    app.cancelOrder(oid + 1)
    app.wait_for(lambda: _status(app, oid + 1) == "Cancelled")
    parent = _order("SELL", 50, round(bid - 0.5, 2), transmit=False)
    take = _order("BUY", 50, round(bid - 20, 2), parentId=oid + 2, transmit=False)
    stop = _order("BUY", 50, 0.0, parentId=oid + 2, transmit=True)
    stop.orderType, stop.auxPrice, stop.lmtPrice = "STP", round(ask + 20, 2), 0.0
    for i, o in enumerate((parent, take, stop)):
        app.placeOrder(oid + 2 + i, _stock("SPY"), o)
    _until(sim, app, lambda: _status(app, oid + 2) == "Filled")
    app.wait_for(lambda: _status(app, oid + 3) == "Submitted" and _status(app, oid + 4))

    # the account side
    app.reqOpenOrders()
    app.reqAllOpenOrders()
    app.reqCompletedOrders(False)
    app.reqExecutions(20, ExecutionFilter())
    app.reqPositions()
    app.reqPositionsMulti(21, ACCOUNT, "")
    app.reqAccountSummary(22, "All", "NetLiquidation,BuyingPower,TotalCashValue")
    app.reqAccountUpdates(True, ACCOUNT)
    app.reqAccountUpdatesMulti(23, ACCOUNT, "", False)
    app.reqPnL(24, ACCOUNT, "")
    app.reqPnLSingle(25, ACCOUNT, "", 756733)
    _ends(
        app,
        "openOrderEnd",
        "completedOrdersEnd",
        "execDetailsEnd",
        "positionEnd",
        "positionMultiEnd",
        "accountSummaryEnd",
        "accountDownloadEnd",
        "accountUpdateMultiEnd",
    )
    _until(sim, app, lambda: app.of("pnl") and app.of("pnlSingle") and app.of("commissionReport"))
    app.reqGlobalCancel()
    app.wait_for(
        lambda: _status(app, oid + 3) == "Cancelled" and _status(app, oid + 4) == "Cancelled"
    )
    for req_id in (5, 6):
        app.cancelMktData(req_id)
    for req_id in (7, 8, 9):
        app.cancelTickByTickData(req_id)
    app.cancelMktDepth(10, False)
    app.cancelRealTimeBars(11)
    app.cancelPositions()
    app.cancelAccountSummary(22)
    app.reqAccountUpdates(False, ACCOUNT)
    app.cancelPnL(24)
    app.cancelPnLSingle(25)
    # a round trip after the cancels: everything before it has been read and handled
    before = len(app.of("currentTime"))
    app.reqCurrentTime()
    app.wait_for(lambda: len(app.of("currentTime")) > before)

    # what the client holds is what a gateway would have given it
    spy = [a for a in app.of("position") if a[1].conId == 756733]
    assert spy and Decimal(str(spy[-1][2])) == 50  # +100, then the bracket parent sold 50
    status = [a for a in app.of("orderStatus") if a[0] == oid][-1]
    execs = [a[2] for a in app.of("execDetails") if a[2].orderId == oid and a[0] == -1]  # live
    assert sum(Decimal(str(e.shares)) for e in execs) == 100
    if IBAPI_10:  # sizes are Decimal on 10.x clients
        assert isinstance(status[2], Decimal) and isinstance(spy[-1][2], Decimal)
        assert all(isinstance(e.shares, Decimal) for e in execs)
        assert all(isinstance(a[2], Decimal) for a in app.of("tickSize"))
