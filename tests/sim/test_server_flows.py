"""Server routing and subscriptions through the real stack: client-0 auto-open listeners,
account/position/P&L pushes, bars, history, halts, delayed commissions, duplicate statuses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from ibapi.contract import ComboLeg, Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order

from tws_sim.market.scenario import Scenario
from tws_sim.server import SimServerThread
from tws_sim.server.testing import RecordingClient

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def lmt(action: str, qty: int, price: float) -> Order:
    o = Order()
    o.action, o.orderType, o.totalQuantity, o.lmtPrice, o.tif = (
        action,
        "LMT",
        Decimal(qty),
        price,
        "DAY",
    )
    return o


def ask_of(app: RecordingClient, req_id: int, symbol: str) -> float:
    app.reqMktData(req_id, stock(symbol), "", True, False, [])
    app.wait_for(lambda: [a for a in app.of("tickSnapshotEnd") if a[0] == req_id])
    return [a[2] for a in app.of("tickPrice") if a[0] == req_id and a[1] == 2][-1]


@pytest.fixture
def clients() -> Iterator[Any]:
    made: list[RecordingClient] = []

    def make(port: int, client_id: int) -> RecordingClient:
        app = RecordingClient()
        app.start(port, client_id)
        made.append(app)
        return app

    yield make
    for app in made:
        app.stop()


def test_client_zero_auto_open_orders_sees_other_clients_orders(clients: Any) -> None:
    with SimServerThread(stepped=True, seed=2, start=START) as sim:
        master = clients(sim.port, 0)
        master.reqAutoOpenOrders(True)
        master.wait_for(lambda: master.of("openOrderEnd"))
        owner = clients(sim.port, 1)
        other = clients(sim.port, 2)
        other.reqAutoOpenOrders(True)  # only client 0 may: an error, no binding
        other.wait_for(lambda: other.errors(321))
        ask = ask_of(owner, 1, "SPY")
        oid = owner.of("nextValidId")[-1][0]
        owner.placeOrder(oid, stock("SPY"), lmt("BUY", 100, ask + 1))
        owner.wait_for(lambda: [s for s in owner.of("orderStatus") if s[1] == "Filled"])
        master.wait_for(lambda: [s for s in master.of("orderStatus") if s[1] == "Filled"])
        master.wait_for(lambda: master.of("execDetails"))
        assert master.of("openOrder")[-1][2].clientId == 1
        assert not other.of("orderStatus") and not other.of("execDetails")
        # reqAllOpenOrders / reqOpenOrders / reqCompletedOrders answer with their End.
        owner.placeOrder(oid + 1, stock("SPY"), lmt("BUY", 100, round(ask - 30, 2)))
        owner.wait_for(lambda: [s for s in owner.of("orderStatus") if s[0] == oid + 1])
        other.reqAllOpenOrders()
        other.wait_for(lambda: other.of("openOrderEnd"))
        assert [a[0] for a in other.of("openOrder")] == [oid + 1]
        other.reqOpenOrders()
        other.wait_for(lambda: len(other.of("openOrderEnd")) == 2)
        assert len(other.of("openOrder")) == 1  # its own: none
        owner.reqCompletedOrders(True)
        owner.wait_for(lambda: owner.of("completedOrdersEnd"))
        assert [a[1].permId for a in owner.of("completedOrder")] == [
            owner.of("openOrder")[0][2].permId
        ]


def test_account_positions_and_pnl_are_pushed_on_change(clients: Any) -> None:
    with SimServerThread(stepped=True, seed=2, start=START) as sim:
        app = clients(sim.port, 1)
        app.reqAccountUpdates(True, "DU1234567")
        app.wait_for(lambda: app.of("accountDownloadEnd"))
        tags = {a[0] for a in app.of("updateAccountValue")}
        assert {"NetLiquidation", "TotalCashValue", "BuyingPower"} <= tags
        app.reqAccountSummary(9, "All", "NetLiquidation,TotalCashValue")
        app.wait_for(lambda: app.of("accountSummaryEnd"))
        assert {a[2] for a in app.of("accountSummary")} == {"NetLiquidation", "TotalCashValue"}
        app.reqPositions()
        app.wait_for(lambda: app.of("positionEnd"))
        assert app.of("position") == []
        app.reqPnL(10, "DU1234567", "")
        app.wait_for(lambda: app.of("pnl"))
        ask = ask_of(app, 1, "AAPL")
        oid = app.of("nextValidId")[-1][0]
        app.placeOrder(oid, stock("AAPL"), lmt("BUY", 100, ask + 1))
        app.wait_for(lambda: [s for s in app.of("orderStatus") if s[1] == "Filled"])
        # position, updatePortfolio: pushed by the change itself.
        app.wait_for(lambda: [a for a in app.of("position") if a[1].symbol == "AAPL"])
        sim.advance(1)
        app.wait_for(lambda: [a for a in app.of("updatePortfolio") if a[0].symbol == "AAPL"])
        # pnl: about once a second while it changes; a summary refresh after three minutes.
        n_pnl = len(app.of("pnl"))
        n_summary = len(app.of("accountSummary"))
        for _ in range(200):
            sim.advance(1)
        app.wait_for(lambda: len(app.of("pnl")) > n_pnl)
        app.wait_for(lambda: len(app.of("accountSummary")) > n_summary)
        pushes = len(app.of("pnl")) - n_pnl
        assert pushes <= 200  # never more than one a second


def test_real_time_bars_and_history(clients: Any) -> None:
    with SimServerThread(stepped=True, seed=2, start=START) as sim:
        app = clients(sim.port, 3)
        app.reqRealTimeBars(30, stock("QQQ"), 5, "TRADES", False, [])
        for _ in range(16):
            sim.advance(1)
        bars = app.wait_for(lambda: len(app.of("realtimeBar")) >= 3 and app.of("realtimeBar"))
        times = [b[1] for b in bars]
        assert all(t % 5 == 0 for t in times) and times == sorted(times)
        assert all(b[3] >= b[4] for b in bars)  # high >= low
        app.reqHistoricalData(31, stock("QQQ"), "", "1800 S", "1 min", "TRADES", 1, 1, False, [])
        app.wait_for(lambda: app.of("historicalDataEnd"))
        assert len(app.of("historicalData")) >= 25
        app.reqHistoricalData(32, stock("QQQ"), "", "bogus", "1 min", "TRADES", 1, 1, False, [])
        app.wait_for(lambda: app.errors(162))


def test_history_errors_are_162_or_321_never_a_dropped_connection(clients: Any) -> None:
    """Requests the market cannot serve (HistoryError) get IB's historical-data error 162 on
    their reqId, an end date with keepUpToDate gets 321, and the session keeps serving."""
    with SimServerThread(stepped=True, seed=2, start=START) as sim:
        app = clients(sim.port, 3)
        spy = stock("SPY")
        app.reqHistoricalData(41, spy, "", "1800 S", "1 min", "BOGUS_WHAT", 1, 1, False, [])
        app.reqHistoricalData(42, spy, "", "1 Y", "1 secs", "TRADES", 1, 1, False, [])
        far_back = "20200102 15:00:00 US/Eastern"  # years before the simulation start
        app.reqHistoricalData(43, spy, far_back, "1800 S", "1 secs", "TRADES", 1, 1, False, [])
        app.reqHistoricalData(
            44, spy, "20261124 09:00:00 US/Eastern", "1 D", "1 min", "TRADES", 1, 1, True, []
        )
        got = app.wait_for(lambda: len(app.errors(162)) == 3 and app.errors(162))
        assert sorted(e[0] for e in got) == [41, 42, 43]
        assert "BOGUS_WHAT" in next(e for e in got if e[0] == 41)[2]
        assert "Historical Market Data Service error message" in got[0][2]
        assert app.wait_for(lambda: app.errors(321))[0][0] == 44
        app.reqHistoricalData(45, spy, "", "600 S", "1 min", "MIDPOINT", 1, 1, False, [])
        app.wait_for(lambda: [a for a in app.of("historicalDataEnd") if a[0] == 45])
        assert not app.of("historicalDataUpdate")  # no keepUpToDate, no updates


def test_keep_up_to_date_history_streams_the_forming_bar_until_cancelled(clients: Any) -> None:
    with SimServerThread(stepped=True, seed=2, start=START) as sim:
        app = clients(sim.port, 3)
        app.reqHistoricalData(51, stock("QQQ"), "", "600 S", "1 min", "TRADES", 1, 2, True, [])
        app.wait_for(lambda: [a for a in app.of("historicalDataEnd") if a[0] == 51])
        # an option's bars follow its underlying's (the market closes bars for stocks only)
        chain = sim.call(lambda s: s.catalog.options_of(756733))
        opt = Contract()
        opt.conId, opt.secType, opt.exchange = chain[len(chain) // 2].con_id, "OPT", "SMART"
        app.reqHistoricalData(52, opt, "", "300 S", "1 min", "MIDPOINT", 1, 2, True, [])
        app.wait_for(lambda: [a for a in app.of("historicalDataEnd") if a[0] == 52])
        last_hist = app.of("historicalData")[-1][1]
        for _ in range(30):
            sim.advance(1)
        ups = app.wait_for(
            lambda: len(app.of("historicalDataUpdate")) >= 12 and app.of("historicalDataUpdate")
        )
        assert {u[0] for u in ups} == {51, 52}
        app.cancelHistoricalData(52)
        ups = [u for u in ups if u[0] == 51]
        times = [int(u[1].date) for u in ups]
        assert times == sorted(times) and all(t % 60 == 0 for t in times)  # formatDate 2: epoch
        assert times[0] >= int(last_hist.date)
        assert all(u[1].high >= max(u[1].open, u[1].close) >= u[1].low > 0 for u in ups)
        # a bar keeps its open while it forms, and its volume only grows
        same = [u[1] for u in ups if int(u[1].date) == times[-1]]
        assert len({b.open for b in same}) == 1
        assert [b.volume for b in same] == sorted(b.volume for b in same)
        app.cancelHistoricalData(51)
        app.reqCurrentTime()  # the cancel is processed before the time answer
        app.wait_for(lambda: app.of("currentTime"))
        n = len(app.of("historicalDataUpdate"))
        for _ in range(15):
            sim.advance(1)
        app.reqCurrentTime()
        app.wait_for(lambda: len(app.of("currentTime")) >= 2)
        assert len(app.of("historicalDataUpdate")) == n
        assert not [e for e in app.errors() if e[0] == 51]


def test_cancel_of_market_data_never_requested_gets_error_300(clients: Any) -> None:
    with SimServerThread(stepped=True, seed=2, start=START) as sim:
        app = clients(sim.port, 3)
        app.cancelMktData(77)
        assert app.wait_for(lambda: app.errors(300))[0][0] == 77
        app.reqMktData(78, stock("SPY"), "", False, False, [])
        app.wait_for(lambda: [a for a in app.of("tickPrice") if a[0] == 78])
        app.cancelMktData(78)  # a live subscription: cancelled quietly
        app.cancelMktData(78)  # the second time it no longer exists
        got = app.wait_for(lambda: len(app.errors(300)) >= 2 and app.errors(300))
        assert [e[0] for e in got] == [77, 78]
        assert "Can't find EId with tickerId:78" in got[1][2]


def pair(*legs: tuple[int, str]) -> Contract:
    """A BAG of stock legs: (con_id, action) with ratio 1 each."""
    bag = Contract()
    bag.symbol, bag.secType, bag.exchange, bag.currency = "SPY", "BAG", "SMART", "USD"
    bag.comboLegs = []
    for con_id, action in legs:
        leg = ComboLeg()
        leg.conId, leg.ratio, leg.action, leg.exchange = con_id, 1, action, "SMART"
        bag.comboLegs.append(leg)
    return bag


def touches(app: RecordingClient, req_id: int, symbol: str) -> dict[int, tuple[float, Decimal]]:
    """A snapshot's bid (1) and ask (2) as {tick type: (price, size)}."""
    app.reqMktData(req_id, stock(symbol), "", True, False, [])
    app.wait_for(lambda: [a for a in app.of("tickSnapshotEnd") if a[0] == req_id])
    return {
        side: (combo_touch(app, req_id)[side], sizes_of(app, req_id)[size_tick])
        for side, size_tick in ((1, 0), (2, 3))
    }


def sizes_of(app: RecordingClient, req_id: int) -> dict[int, Decimal]:
    """The latest bid size (0) and ask size (3) sent on `req_id`."""
    return {a[1]: Decimal(str(a[2])) for a in app.of("tickSize") if a[0] == req_id}


def combo_touch(app: RecordingClient, req_id: int) -> dict[int, float]:
    """The latest bid (1) and ask (2) price sent on `req_id`."""
    return {a[1]: a[2] for a in app.of("tickPrice") if a[0] == req_id and a[1] in (1, 2)}


def test_combo_market_data_streams_the_net_quote_of_its_legs(clients: Any) -> None:
    """TWS quotes a BAG: bid = what selling one unit gets (buy legs at their bid, sell legs
    bought back at their ask), ask = what buying one costs; it follows the legs as they move."""
    spy_id, qqq_id = 756733, 320227571
    with SimServerThread(stepped=True, seed=5, start=START) as sim:
        app = clients(sim.port, 3)
        app.reqMktData(60, pair((spy_id, "BUY"), (qqq_id, "SELL")), "", False, False, [])
        app.wait_for(lambda: len(combo_touch(app, 60)) == 2)
        spy, qqq = touches(app, 61, "SPY"), touches(app, 62, "QQQ")
        got = combo_touch(app, 60)
        assert got[1] == pytest.approx(spy[1][0] - qqq[2][0])
        assert got[2] == pytest.approx(spy[2][0] - qqq[1][0])
        sizes = sizes_of(app, 60)
        assert sizes[0] == min(spy[1][1], qqq[2][1]) and sizes[3] == min(spy[2][1], qqq[1][1])
        assert [a for a in app.of("tickGeneric") if a[0] == 60] == [(60, 49, 0.0)]
        n = len([a for a in app.of("tickPrice") if a[0] == 60])
        for step in range(3):
            sim.advance(20)
            spy = touches(app, 70 + 2 * step, "SPY")  # answered after the step's combo ticks
            qqq = touches(app, 71 + 2 * step, "QQQ")
            got = combo_touch(app, 60)
            assert got[1] == pytest.approx(spy[1][0] - qqq[2][0])
            assert got[2] == pytest.approx(spy[2][0] - qqq[1][0])
        assert len([a for a in app.of("tickPrice") if a[0] == 60]) > n  # it did move
        assert not [a for a in app.of("tickSize") if a[0] == 60 and a[1] == 8]  # no volume
        app.cancelMktData(60)
        app.cancelMktData(60)
        assert app.wait_for(lambda: app.errors(300))[0][0] == 60
        # a leg the catalog does not know: no security definition
        app.reqMktData(63, pair((spy_id, "BUY"), (999, "SELL")), "", False, False, [])
        assert app.wait_for(lambda: app.errors(200))[0][0] == 63


def test_halt_tick_and_order_rejection_during_a_halt(clients: Any) -> None:
    scenario = Scenario.from_text(
        """
name: halt
always_open: true
instruments: [{symbol: TSLA, price: 300}]
halts: [{symbol: TSLA, after_s: 10, duration_s: 30, state: 2}]
"""
    )
    with SimServerThread(stepped=True, scenario=scenario, start=START) as sim:
        app = clients(sim.port, 1)
        app.reqMktData(1, stock("TSLA"), "", False, False, [])
        app.wait_for(lambda: [a for a in app.of("tickGeneric") if a[1] == 49])
        for _ in range(12):
            sim.advance(1)
        app.wait_for(lambda: [a for a in app.of("tickGeneric") if a[1] == 49 and a[2] == 2])
        oid = app.of("nextValidId")[-1][0]
        app.placeOrder(oid, stock("TSLA"), lmt("BUY", 10, 300))
        app.wait_for(lambda: [e for e in app.errors(154) if e[0] == oid])
        for _ in range(30):
            sim.advance(1)
        app.wait_for(lambda: app.of("tickGeneric")[-1][2] == 0)


def test_delayed_commissions_and_duplicate_statuses(clients: Any) -> None:
    scenario = Scenario.from_text(
        """
name: quirks
always_open: true
instruments: [{symbol: SPY, price: 600}]
faults:
  - {kind: delayed_commissions, after_s: 0, duration_s: 600, delay_s: 20}
  - {kind: duplicate_order_status, after_s: 0, duration_s: 600}
"""
    )
    with SimServerThread(stepped=True, scenario=scenario, start=START) as sim:
        sim.advance(1)  # the duplicate-status window opens
        app = clients(sim.port, 1)
        ask = ask_of(app, 1, "SPY")
        oid = app.of("nextValidId")[-1][0]
        app.placeOrder(oid, stock("SPY"), lmt("BUY", 100, ask + 1))
        app.wait_for(lambda: app.of("execDetails"))
        filled = app.wait_for(lambda: [s for s in app.of("orderStatus") if s[1] == "Filled"])
        assert len(filled) == 2  # sent twice, as IB sometimes does
        sim.advance(5)
        assert app.of("commissionReport") == []  # not yet: delayed 20 s
        for _ in range(20):
            sim.advance(1)
        reports = app.wait_for(lambda: app.of("commissionReport"))
        assert {r[0].execId for r in reports} == {e[2].execId for e in app.of("execDetails")}


def test_execution_correction_reaches_the_client_with_the_next_suffix(clients: Any) -> None:
    scenario = Scenario.from_text(
        """
name: correction
always_open: true
instruments: [{symbol: SPY, price: 600}]
faults:
  - {kind: execution_correction, after_s: 0, nth: 1, price_delta: "0.05"}
"""
    )
    with SimServerThread(stepped=True, scenario=scenario, start=START) as sim:
        app = clients(sim.port, 1)
        ask = ask_of(app, 1, "SPY")
        oid = app.of("nextValidId")[-1][0]
        app.placeOrder(oid, stock("SPY"), lmt("BUY", 100, ask + 1))
        app.wait_for(lambda: app.of("execDetails"))
        for _ in range(5):
            sim.advance(1)
        execs = app.wait_for(lambda: len(app.of("execDetails")) >= 2 and app.of("execDetails"))
        first, second = execs[0][2], execs[1][2]
        assert first.execId.endswith(".01") and second.execId == first.execId[:-2] + "02"
        assert Decimal(str(second.price)) - Decimal(str(first.price)) == Decimal("0.05")
        # reqExecutions now reports only the corrected one.
        app.reqExecutions(77, ExecutionFilter())
        app.wait_for(lambda: app.of("execDetailsEnd"))
        assert [a[2].execId for a in app.of("execDetails") if a[0] == 77] == [second.execId]


def test_midpoint_ticks_positions_multi_and_account_updates_multi(clients: Any) -> None:
    with SimServerThread(stepped=True, seed=2, start=START) as sim:
        app = clients(sim.port, 1)
        app.reqTickByTickData(40, stock("SPY"), "MidPoint", 0, False)
        first = app.wait_for(lambda: app.of("tickByTickMidPoint"))
        assert first[0][0] == 40 and first[0][2] > 0
        app.reqPositionsMulti(41, "DU1234567", "")
        app.wait_for(lambda: app.of("positionMultiEnd"))
        app.reqAccountUpdatesMulti(42, "DU1234567", "", True)
        app.wait_for(lambda: app.of("accountUpdateMultiEnd"))
        keys = {a[3] for a in app.of("accountUpdateMulti")}
        assert "NetLiquidation" in keys
        ask = ask_of(app, 1, "META")
        oid = app.of("nextValidId")[-1][0]
        app.placeOrder(oid, stock("META"), lmt("BUY", 10, ask + 1))
        app.wait_for(lambda: [a for a in app.of("positionMulti") if a[3].symbol == "META"])
        sim.advance(5)
        app.wait_for(lambda: len(app.of("tickByTickMidPoint")) > 1)
