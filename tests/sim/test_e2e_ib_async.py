"""Issue 5 acceptance with `ib_async` (negotiates v178) over a real socket.

The objects ib_async builds (Trade, Fill, Position, PnL, account values) must hold the same
quantities and prices the simulator reports: checked against the venue itself and against the
`--exec-log` lines it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ib_async import IB, ComboLeg, Contract, LimitOrder, Option, Stock

from tws_sim.server import SimServerThread

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
ACCOUNT = "DU1234567"


@pytest.fixture(scope="module")
def exec_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim") / "exec.jsonl"


@pytest.fixture(scope="module")
def sim(exec_log: Path) -> Iterator[SimServerThread]:
    with SimServerThread(stepped=True, seed=5, start=START, exec_log=exec_log) as server:
        yield server


@pytest.fixture
def connect(sim: SimServerThread) -> Iterator[Callable[[int], IB]]:
    made: list[IB] = []

    def make(client_id: int) -> IB:
        ib = IB()
        ib.connect("127.0.0.1", sim.port, clientId=client_id, timeout=15)
        made.append(ib)
        return ib

    yield make
    for ib in made:
        ib.disconnect()


def wait_until(ib: IB, pred: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Run ib_async's loop until `pred()` is truthy (deadline-bounded polling)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        ib.sleep(0.02)


def step(sim: SimServerThread, ib: IB, pred: Callable[[], Any], limit_s: int = 600) -> Any:
    """Advance simulated time a second at a time until `pred()` holds.

    After each step a reqCurrentTime round trip is the barrier: the server answers it after
    everything the step sent this client, and ib_async handles messages in order, so `pred`
    sees the whole step (no sleep that a loaded machine could outrun)."""
    for _ in range(limit_s):
        value = pred()
        if value:
            return value
        sim.advance(1)
        ib.reqCurrentTime()
    return pred()


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dec(x: float) -> Decimal:
    return Decimal(str(x))


def touch(ib: IB, contract: Contract) -> tuple[float, float]:
    [ticker] = ib.reqTickers(contract)
    return ticker.bid, ticker.ask


# -------------------------------------------------------------------------------------------------


def test_connect_negotiates_178_and_loads_account(connect: Callable[[int], IB]) -> None:
    ib = connect(1)
    assert ib.client.serverVersion() == 178
    assert ib.managedAccounts() == [ACCOUNT]
    wait_until(ib, lambda: [v for v in ib.accountValues() if v.tag == "NetLiquidation"])


def test_contract_details_option_greeks_tick_by_tick_and_depth(
    sim: SimServerThread, connect: Callable[[int], IB]
) -> None:
    ib = connect(2)
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    assert spy.conId == 756733
    [chain] = [
        c for c in ib.reqSecDefOptParams("SPY", "", "STK", spy.conId) if c.exchange == "SMART"
    ]
    bid, ask = touch(ib, spy)
    strike = min(chain.strikes, key=lambda k: abs(k - (bid + ask) / 2))
    opt = Option("SPY", sorted(chain.expirations)[0], strike, "C", "SMART")
    [opt] = ib.qualifyContracts(opt)
    assert opt.conId > 0 and opt.multiplier == "100"
    ticker = ib.reqMktData(opt)
    wait_until(ib, lambda: ticker.modelGreeks is not None)
    g = ticker.modelGreeks
    assert 0 < g.delta < 1 and g.gamma > 0 and g.impliedVol > 0
    # ib_async keeps only the latest batch in Ticker.tickByTicks: collect every batch.
    bid_ask: list[Any] = []

    def collect(tickers: Any) -> None:
        for t in tickers:
            if t.contract.conId == spy.conId:
                bid_ask.extend(x for x in t.tickByTicks if hasattr(x, "bidPrice"))

    ib.pendingTickersEvent += collect
    ib.reqTickByTickData(spy, "BidAsk")
    depth = ib.reqMktDepth(spy, 5)
    wait_until(ib, lambda: bid_ask and len(depth.domBids) == 5 and len(depth.domAsks) == 5)
    assert depth.domBids[0].price < depth.domAsks[0].price
    assert bid_ask[0].bidPrice < bid_ask[0].askPrice
    seen = len(bid_ask)
    step(sim, ib, lambda: len(bid_ask) > seen, 60)
    ib.cancelMktData(opt)
    ib.cancelTickByTickData(spy, "BidAsk")
    ib.cancelMktDepth(spy)


def test_partial_fills_trade_and_fill_objects_match_the_venue(
    sim: SimServerThread, connect: Callable[[int], IB], exec_log: Path
) -> None:
    ib = connect(1)
    spy = Stock("SPY", "SMART", "USD", conId=756733)
    bid, _ask = touch(ib, spy)
    order = LimitOrder("BUY", 3000, bid)
    trade = ib.placeOrder(spy, order)
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    assert trade.orderStatus.filled < 3000
    for _ in range(20):  # chase a market that runs away by modifying the price
        if step(sim, ib, lambda: trade.isDone(), 60):
            break
        _b, ask = touch(ib, spy)
        order.lmtPrice = ask
        ib.placeOrder(spy, order)
    wait_until(ib, lambda: trade.orderStatus.status == "Filled")
    wait_until(ib, lambda: all(f.commissionReport.execId for f in trade.fills))
    assert len(trade.fills) >= 2
    assert sum(dec(f.execution.shares) for f in trade.fills) == 3000
    assert dec(trade.orderStatus.filled) == 3000 and dec(trade.orderStatus.remaining) == 0
    logged = {r["execId"]: r for r in log_lines(exec_log) if r.get("kind", "execution")}
    for fill in trade.fills:
        rec = logged[fill.execution.execId]
        assert Decimal(rec["shares"]) == dec(fill.execution.shares)
        assert Decimal(rec["price"]) == dec(fill.execution.price)
        assert rec["permId"] == fill.execution.permId == trade.order.permId
    commissions = {
        r["execId"]: Decimal(r["commission"])
        for r in log_lines(exec_log)
        if r.get("commission") not in (None, "")
    }
    for fill in trade.fills:
        assert commissions[fill.execution.execId] == dec(fill.commissionReport.commission)
    # Average price: what the venue says, to the cent.
    venue = sim.call(lambda s: s.venue.order(1, trade.order.orderId))
    assert dec(trade.orderStatus.avgFillPrice).quantize(Decimal("0.0001")) == (
        venue.avg_fill_price.quantize(Decimal("0.0001"))
    )


def test_positions_and_pnl_match_the_venue(
    sim: SimServerThread, connect: Callable[[int], IB]
) -> None:
    ib = connect(3)
    tsla = Stock("TSLA", "SMART", "USD")
    ib.qualifyContracts(tsla)
    _bid, ask = touch(ib, tsla)
    trade = ib.placeOrder(tsla, LimitOrder("BUY", 50, round(ask + 1, 2)))
    wait_until(ib, lambda: trade.orderStatus.status == "Filled")
    venue_positions = sim.call(lambda s: {i.con_id: (q, c) for i, q, c in s.venue.positions()})
    wait_until(ib, lambda: any(p.contract.conId == tsla.conId for p in ib.positions()))
    for p in ib.positions():
        qty, avg_cost = venue_positions[p.contract.conId]
        assert dec(p.position) == qty
        assert abs(dec(p.avgCost) - avg_cost) < Decimal("0.0001")
    pnl = ib.reqPnL(ACCOUNT)
    wait_until(ib, lambda: pnl.dailyPnL == pnl.dailyPnL and pnl.realizedPnL == pnl.realizedPnL)
    daily, unrealized, realized = sim.call(lambda s: s.venue.pnl(s.now()))
    assert abs(dec(pnl.dailyPnL) - daily) < Decimal("0.01")
    assert abs(dec(pnl.unrealizedPnL) - unrealized) < Decimal("0.01")
    assert abs(dec(pnl.realizedPnL) - realized) < Decimal("0.01")
    single = ib.reqPnLSingle(ACCOUNT, "", tsla.conId)
    wait_until(ib, lambda: single.position == single.position and single.position != 0)
    assert dec(single.position) == venue_positions[tsla.conId][0]


def test_modify_cancel_bracket_and_global_cancel(
    sim: SimServerThread, connect: Callable[[int], IB]
) -> None:
    ib = connect(4)
    aapl = Stock("AAPL", "SMART", "USD")
    ib.qualifyContracts(aapl)
    bid, ask = touch(ib, aapl)
    resting = LimitOrder("BUY", 100, round(bid - 5, 2))
    trade = ib.placeOrder(aapl, resting)
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    resting.totalQuantity = 120
    resting.lmtPrice = round(bid - 4, 2)
    ib.placeOrder(aapl, resting)
    wait_until(ib, lambda: sim.call(lambda s: s.venue.order(4, resting.orderId)).remaining == 120)
    ib.cancelOrder(resting)
    wait_until(ib, lambda: trade.orderStatus.status == "Cancelled")

    bracket = ib.bracketOrder(
        "BUY", 10, round(ask + 0.5, 2), round(ask + 40, 2), round(bid - 40, 2)
    )
    trades = [ib.placeOrder(aapl, o) for o in bracket]
    wait_until(ib, lambda: trades[0].orderStatus.status == "Filled")
    wait_until(
        ib, lambda: all(t.orderStatus.status in ("Submitted", "PreSubmitted") for t in trades[1:])
    )
    # Global cancel from the kill-switch client cancels the working children of client 4.
    kill = connect(99)
    kill.reqGlobalCancel()
    wait_until(ib, lambda: all(t.orderStatus.status == "Cancelled" for t in trades[1:]))
    assert sim.call(lambda s: s.venue.open_orders(4)) == []


def test_combo_order(sim: SimServerThread, connect: Callable[[int], IB]) -> None:
    ib = connect(5)
    spy = Stock("SPY", "SMART", "USD", conId=756733)
    [chain] = [c for c in ib.reqSecDefOptParams("SPY", "", "STK", 756733) if c.exchange == "SMART"]
    bid, ask = touch(ib, spy)
    strikes = sorted(chain.strikes)
    k = min(strikes, key=lambda s: abs(s - (bid + ask) / 2))
    k2 = strikes[strikes.index(k) + 2]
    expiry = sorted(chain.expirations)[0]
    legs = ib.qualifyContracts(
        Option("SPY", expiry, k, "C", "SMART"), Option("SPY", expiry, k2, "C", "SMART")
    )
    bag = Contract(secType="BAG", symbol="SPY", exchange="SMART", currency="USD")
    bag.comboLegs = [
        ComboLeg(conId=legs[0].conId, ratio=1, action="BUY", exchange="SMART"),
        ComboLeg(conId=legs[1].conId, ratio=1, action="SELL", exchange="SMART"),
    ]
    trade = ib.placeOrder(bag, LimitOrder("BUY", 3, round(k2 - k, 2)))
    wait_until(ib, lambda: trade.orderStatus.status == "Filled")
    leg_fills = {f.contract.conId: f for f in trade.fills if f.contract.secType == "OPT"}
    assert set(leg_fills) == {legs[0].conId, legs[1].conId}
    assert all(dec(f.execution.shares) == 3 for f in leg_fills.values())


def test_collision_and_consistent_account_across_clients(
    sim: SimServerThread, connect: Callable[[int], IB]
) -> None:
    clients = {cid: connect(cid) for cid in (1, 2, 3, 99)}
    dup = IB()
    with pytest.raises((ConnectionError, TimeoutError, OSError)):
        dup.connect("127.0.0.1", sim.port, clientId=2, timeout=5)
    dup.disconnect()
    assert clients[2].isConnected()
    views = []
    for ib in clients.values():
        ib.reqPositions()
        views.append(sorted((p.contract.conId, dec(p.position)) for p in ib.positions()))
    assert all(v == views[0] for v in views) and views[0]
    net = set()
    for ib in clients.values():
        wait_until(ib, lambda ib=ib: [v for v in ib.accountValues() if v.tag == "NetLiquidation"])
        net.add(next(v.value for v in ib.accountValues() if v.tag == "NetLiquidation"))
    assert len(net) == 1


def test_reconnect_recovers_fills_made_while_away(
    sim: SimServerThread, connect: Callable[[int], IB]
) -> None:
    ib = connect(7)
    iwm = Stock("IWM", "SMART", "USD")
    ib.qualifyContracts(iwm)
    bid, ask = touch(ib, iwm)
    buy = ib.placeOrder(iwm, LimitOrder("BUY", 100, round(bid - 0.02, 2)))
    sell = ib.placeOrder(iwm, LimitOrder("SELL", 100, round(ask + 0.02, 2)))
    wait_until(ib, lambda: buy.orderStatus.status == "Submitted" == sell.orderStatus.status)
    ids = (buy.order.orderId, sell.order.orderId)
    ib.disconnect()

    def filled() -> list[int]:
        snaps = sim.call(lambda s: [s.venue.order(7, o) for o in ids])
        return [x.request.order_id for x in snaps if x is not None and x.status == "Filled"]

    for _ in range(1800):
        if filled():
            break
        sim.advance(1)
    done = filled()
    assert done
    ib.connect("127.0.0.1", sim.port, clientId=7, timeout=15)  # ib_async asks reqExecutions
    fills = wait_until(
        ib,
        lambda: [
            f for f in ib.fills() if f.execution.orderId == done[0] and f.execution.clientId == 7
        ],
    )
    assert sum(dec(f.execution.shares) for f in fills) == 100
