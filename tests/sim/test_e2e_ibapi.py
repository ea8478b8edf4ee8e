"""Issue 5 acceptance with the official `ibapi` client (v157) over a real socket.

One stepped simulator per module; each test connects its own client id. Fills are checked
against what the venue really did (`--exec-log` lines), not just against what the client saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ibapi.contract import ComboLeg, Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order

from tws_sim.server import SimServerThread
from tws_sim.server.testing import RecordingClient

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 ET


@pytest.fixture(scope="module")
def exec_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim") / "exec.jsonl"


@pytest.fixture(scope="module")
def sim(exec_log: Path) -> Iterator[SimServerThread]:
    with SimServerThread(stepped=True, seed=11, start=START, exec_log=exec_log) as server:
        yield server


@pytest.fixture
def client_factory(sim: SimServerThread) -> Iterator[Any]:
    made: list[RecordingClient] = []

    def make(client_id: int) -> RecordingClient:
        app = RecordingClient()
        app.start(sim.port, client_id)
        made.append(app)
        return app

    yield make
    for app in made:
        app.stop()


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def order(action: str, qty: int, order_type: str = "LMT", price: float | None = None) -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.tif = action, Decimal(qty), order_type, "DAY"
    if price is not None:
        if order_type == "STP":
            o.auxPrice = price
        else:
            o.lmtPrice = price
    return o


def touch(app: RecordingClient, req_id: int, contract: Contract) -> tuple[float, float]:
    """Current (bid, ask) via a market-data snapshot."""
    app.reqMktData(req_id, contract, "", True, False, [])
    app.wait_for(lambda: [a for a in app.of("tickSnapshotEnd") if a[0] == req_id])
    prices = [a for a in app.of("tickPrice") if a[0] == req_id]
    bid = [a[2] for a in prices if a[1] == 1][-1]
    ask = [a[2] for a in prices if a[1] == 2][-1]
    return bid, ask


def statuses(app: RecordingClient, order_id: int) -> list[tuple[Any, ...]]:
    return [a for a in app.of("orderStatus") if a[0] == order_id]


def last_status(app: RecordingClient, order_id: int) -> str:
    got = statuses(app, order_id)
    return got[-1][1] if got else ""


def advance_until(sim: SimServerThread, app: RecordingClient, pred: Any, limit_s: int = 600) -> Any:
    """Step the simulated clock 1 s at a time until `pred()` holds (bounded)."""
    for _ in range(limit_s):
        value = pred()
        if value:
            return value
        sim.advance(1)
    try:
        return app.wait_for(pred, 2)
    except TimeoutError:
        return None


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def nearest_call(app: RecordingClient, spot: float) -> tuple[str, float, list[float]]:
    app.reqSecDefOptParams(40, "SPY", "", "STK", 756733)
    app.wait_for(lambda: app.of("securityDefinitionOptionParameterEnd"))
    rows = app.of("securityDefinitionOptionParameter")
    expirations = sorted(rows[0][5])
    strikes = sorted(rows[0][6])
    strike = min(strikes, key=lambda s: abs(s - spot))
    return expirations[0], strike, strikes


def option(expiry: str, strike: float, right: str = "C") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPY", "OPT", "SMART", "USD"
    c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier = expiry, strike, right, "100"
    return c


# -------------------------------------------------------------------------------------------------


def test_contract_details_stock_option_and_unknown(client_factory: Any) -> None:
    app = client_factory(11)
    app.reqContractDetails(1, stock("SPY"))
    app.wait_for(lambda: app.of("contractDetailsEnd"))
    details = app.of("contractDetails")
    assert len(details) == 1 and details[0][1].contract.conId == 756733
    bid, ask = touch(app, 2, stock("SPY"))
    expiry, strike, strikes = nearest_call(app, (bid + ask) / 2)
    assert len(strikes) > 10
    app.reqContractDetails(3, option(expiry, strike))
    app.wait_for(lambda: [a for a in app.of("contractDetailsEnd") if a[0] == 3])
    opt = [a[1] for a in app.of("contractDetails") if a[0] == 3]
    assert len(opt) == 1 and opt[0].contract.right == "C" and opt[0].contract.strike == strike
    app.reqContractDetails(4, stock("NOPE"))
    app.wait_for(lambda: app.errors(200))
    assert app.errors(200)[0][0] == 4


def test_option_market_data_carries_greeks_and_halt_tick(
    sim: SimServerThread, client_factory: Any
) -> None:
    app = client_factory(12)
    bid, ask = touch(app, 1, stock("SPY"))
    expiry, strike, _ = nearest_call(app, (bid + ask) / 2)
    app.reqMktData(5, option(expiry, strike), "", False, False, [])
    comps = app.wait_for(lambda: [a for a in app.of("tickOptionComputation") if a[0] == 5])
    model = [a for a in comps if a[1] == 13][-1]
    _req, _tick, *rest = model
    iv, delta, opt_price, _pv, gamma, vega, theta, und = rest[-8:]
    assert 0 < delta < 1 and gamma > 0 and vega > 0 and theta < 0
    assert 0.01 < iv < 3 and opt_price > 0 and abs(und - (bid + ask) / 2) < 5
    assert [a for a in app.of("tickGeneric") if a[0] == 5 and a[1] == 49]
    before = len(app.of("tickOptionComputation"))
    advance_until(sim, app, lambda: len(app.of("tickOptionComputation")) > before, 60)
    app.cancelMktData(5)


def test_tick_by_tick_and_depth(sim: SimServerThread, client_factory: Any) -> None:
    app = client_factory(13)
    app.reqTickByTickData(20, stock("SPY"), "BidAsk", 0, False)
    app.reqTickByTickData(21, stock("SPY"), "AllLast", 0, False)
    app.reqMktDepth(22, stock("SPY"), 5, False, [])
    app.wait_for(lambda: app.of("tickByTickBidAsk") and app.of("updateMktDepthL2"))
    advance_until(sim, app, lambda: app.of("tickByTickAllLast"), 120)
    last = app.of("tickByTickAllLast")[0]
    assert last[0] == 21 and last[3] > 0 and last[4] > 0  # price, size
    rows = app.of("updateMktDepthL2")
    positions = {(r[4], r[1]) for r in rows}  # (side, position)
    assert {(0, p) for p in range(5)} <= positions and {(1, p) for p in range(5)} <= positions
    assert all(r[2] for r in rows)  # every row names a market maker
    seen = len(rows)
    advance_until(sim, app, lambda: len(app.of("updateMktDepthL2")) > seen, 60)
    for req_id in (20, 21):
        app.cancelTickByTickData(req_id)
    app.cancelMktDepth(22, False)


def test_limit_order_rests_then_fills_in_parts(
    sim: SimServerThread, client_factory: Any, exec_log: Path
) -> None:
    app = client_factory(1)
    bid, _ask = touch(app, 1, stock("SPY"))
    oid = app.of("nextValidId")[-1][0]
    lmt = order("BUY", 3000, "LMT", bid)
    app.placeOrder(oid, stock("SPY"), lmt)
    app.wait_for(lambda: last_status(app, oid))
    assert statuses(app, oid)[0][2] < 3000  # not all of it at once: it rests
    limits = [bid]
    for snap in range(1, 20):  # the market may run away: chase it by modifying the price
        if advance_until(sim, app, lambda: last_status(app, oid) == "Filled", 60) is True:
            break
        if last_status(app, oid) == "Filled":
            break
        _b, ask = touch(app, 100 + snap, stock("SPY"))
        lmt.lmtPrice = ask
        limits.append(ask)
        app.placeOrder(oid, stock("SPY"), lmt)
    app.wait_for(lambda: last_status(app, oid) == "Filled")
    execs = [a[2] for a in app.of("execDetails") if a[2].orderId == oid]
    assert len(execs) >= 2
    assert sum(Decimal(str(e.shares)) for e in execs) == 3000
    assert all(e.price <= max(limits) for e in execs)
    final = statuses(app, oid)[-1]
    assert final[2] == 3000 and final[3] == 0
    # Every execution has a commission report tied to its execId ...
    app.wait_for(
        lambda: {e.execId for e in execs} <= {c[0].execId for c in app.of("commissionReport")}
    )
    # ... and matches the venue's own record line for line.
    logged = {r["execId"]: r for r in log_lines(exec_log) if r.get("orderId") == oid}
    for e in execs:
        rec = logged[e.execId]
        assert Decimal(rec["shares"]) == Decimal(str(e.shares))
        assert Decimal(rec["price"]) == Decimal(str(e.price))
        assert rec["side"] == e.side and rec["clientId"] == 1


def test_modify_then_cancel(client_factory: Any) -> None:
    app = client_factory(2)
    bid, _ask = touch(app, 1, stock("AAPL"))
    oid = app.of("nextValidId")[-1][0]
    low = round(bid - 5, 2)
    app.placeOrder(oid, stock("AAPL"), order("BUY", 100, "LMT", low))
    app.wait_for(lambda: last_status(app, oid) == "Submitted")
    app.placeOrder(oid, stock("AAPL"), order("BUY", 150, "LMT", round(low + 1, 2)))
    app.wait_for(
        lambda: [a for a in app.of("openOrder") if a[0] == oid and a[2].totalQuantity == 150]
    )
    modified = [a for a in app.of("openOrder") if a[0] == oid][-1][2]
    assert modified.lmtPrice == pytest.approx(low + 1)
    app.cancelOrder(oid)
    app.wait_for(lambda: last_status(app, oid) == "Cancelled")
    assert [e for e in app.errors(202) if e[0] == oid]
    app.cancelOrder(oid)  # cancelling a done order: IB's 10148 (or 161 on older builds)
    app.wait_for(lambda: [e for e in app.errors() if e[0] == oid and e[1] in (10148, 161)])
    app.cancelOrder(987654)  # unknown id
    app.wait_for(lambda: [e for e in app.errors() if e[0] == 987654])


def test_bracket_children_work_after_parent_and_oca_cancels_sibling(
    sim: SimServerThread, client_factory: Any
) -> None:
    app = client_factory(3)
    bid, ask = touch(app, 1, stock("MSFT"))
    pid = app.of("nextValidId")[-1][0]
    parent = order("BUY", 100, "LMT", round(ask + 0.5, 2))
    parent.transmit = False
    take = order("SELL", 100, "LMT", round(ask + 50, 2))
    take.parentId, take.transmit, take.ocaGroup = pid, False, f"oca{pid}"
    stop = order("SELL", 100, "STP", round(bid - 50, 2))
    stop.parentId, stop.transmit, stop.ocaGroup = pid, True, f"oca{pid}"
    app.placeOrder(pid, stock("MSFT"), parent)
    app.placeOrder(pid + 1, stock("MSFT"), take)
    app.placeOrder(pid + 2, stock("MSFT"), stop)
    app.wait_for(lambda: last_status(app, pid) == "Filled")
    app.wait_for(lambda: last_status(app, pid + 1) in ("Submitted", "PreSubmitted"))
    app.wait_for(lambda: last_status(app, pid + 2) in ("Submitted", "PreSubmitted"))
    # Make the take-profit marketable: it fills and OCA cancels the stop.
    bid2, _ = touch(app, 2, stock("MSFT"))
    take.lmtPrice = round(bid2 - 0.5, 2)
    app.placeOrder(pid + 1, stock("MSFT"), take)
    advance_until(sim, app, lambda: last_status(app, pid + 1) == "Filled", 30)
    app.wait_for(lambda: last_status(app, pid + 2) == "Cancelled")


def test_combo_order_fills_all_legs(client_factory: Any) -> None:
    app = client_factory(4)
    bid, ask = touch(app, 1, stock("SPY"))
    expiry, strike, strikes = nearest_call(app, (bid + ask) / 2)
    higher = strikes[strikes.index(strike) + 2]
    ids = []
    for req_id, k in ((50, strike), (51, higher)):
        app.reqContractDetails(req_id, option(expiry, k))
        app.wait_for(lambda r=req_id: [a for a in app.of("contractDetailsEnd") if a[0] == r])
        ids.append(next(a[1].contract.conId for a in app.of("contractDetails") if a[0] == req_id))
    bag = Contract()
    bag.symbol, bag.secType, bag.exchange, bag.currency = "SPY", "BAG", "SMART", "USD"
    legs = []
    for con_id, action in zip(ids, ("BUY", "SELL"), strict=True):
        leg = ComboLeg()
        leg.conId, leg.ratio, leg.action, leg.exchange = con_id, 1, action, "SMART"
        legs.append(leg)
    bag.comboLegs = legs
    oid = app.of("nextValidId")[-1][0]
    app.placeOrder(oid, bag, order("BUY", 2, "LMT", round(higher - strike, 2)))
    app.wait_for(lambda: last_status(app, oid) == "Filled")
    fills = [a[2] for a in app.of("execDetails") if a[2].orderId == oid]
    legs_filled = {a[1].conId for a in app.of("execDetails") if a[2].orderId == oid}
    assert set(ids) <= legs_filled
    assert all(Decimal(str(f.shares)) == 2 for f in fills)


def test_executions_positions_and_pnl_after_fills(
    sim: SimServerThread, client_factory: Any
) -> None:
    app = client_factory(5)
    _bid, ask = touch(app, 1, stock("NVDA"))
    oid = app.of("nextValidId")[-1][0]
    app.placeOrder(oid, stock("NVDA"), order("BUY", 200, "LMT", round(ask + 1, 2)))
    app.wait_for(lambda: last_status(app, oid) == "Filled")
    f = ExecutionFilter()
    f.clientId = 5
    app.reqExecutions(60, f)
    app.wait_for(lambda: app.of("execDetailsEnd"))
    mine = [a[2] for a in app.of("execDetails") if a[0] == 60]
    assert mine and all(e.clientId == 5 for e in mine)
    assert sum(Decimal(str(e.shares)) for e in mine) == 200
    app.reqPositions()
    app.wait_for(lambda: app.of("positionEnd"))
    nvda = [a for a in app.of("position") if a[1].symbol == "NVDA"]
    venue_qty = sim.call(lambda s: next(q for i, q, _ in s.venue.positions() if i.symbol == "NVDA"))
    assert Decimal(str(nvda[-1][2])) == venue_qty
    app.reqPnL(61, "DU1234567", "")
    pnl = app.wait_for(lambda: app.of("pnl"))
    assert pnl[-1][0] == 61
    app.reqPnLSingle(62, "DU1234567", "", nvda[-1][1].conId)
    single = app.wait_for(lambda: app.of("pnlSingle"))
    assert single[-1][1] == float(venue_qty)


def test_global_cancel_from_client_99(sim: SimServerThread, client_factory: Any) -> None:
    a = client_factory(21)
    b = client_factory(22)
    bid, _ = touch(a, 1, stock("QQQ"))
    oa = a.of("nextValidId")[-1][0]
    ob = b.of("nextValidId")[-1][0]
    a.placeOrder(oa, stock("QQQ"), order("BUY", 10, "LMT", round(bid - 20, 2)))
    b.placeOrder(ob, stock("QQQ"), order("BUY", 10, "LMT", round(bid - 21, 2)))
    a.wait_for(lambda: last_status(a, oa) == "Submitted")
    b.wait_for(lambda: last_status(b, ob) == "Submitted")
    kill = client_factory(99)
    kill.reqGlobalCancel()
    a.wait_for(lambda: last_status(a, oa) == "Cancelled")
    b.wait_for(lambda: last_status(b, ob) == "Cancelled")
    assert sim.call(lambda s: s.venue.open_orders(None)) == []


def test_fills_while_disconnected_are_recovered_with_req_executions(
    sim: SimServerThread, client_factory: Any
) -> None:
    app = client_factory(31)
    bid, ask = touch(app, 1, stock("IWM"))
    oid = app.of("nextValidId")[-1][0]
    # Rest on both sides of the touch: whichever way the market moves, one of them fills.
    app.placeOrder(oid, stock("IWM"), order("BUY", 200, "LMT", round(bid - 0.02, 2)))
    app.placeOrder(oid + 1, stock("IWM"), order("SELL", 200, "LMT", round(ask + 0.02, 2)))
    app.wait_for(lambda: last_status(app, oid) and last_status(app, oid + 1))
    assert not [a for a in app.of("execDetails") if a[2].orderId in (oid, oid + 1)]
    app.stop()
    sim.call(lambda s: s.clients.get(31) is None or s.clients[31].close("test"))

    def filled() -> list[int]:
        snaps = sim.call(lambda s: [s.venue.order(31, o) for o in (oid, oid + 1)])
        return [s.request.order_id for s in snaps if s is not None and s.status == "Filled"]

    for _ in range(1800):
        if filled():
            break
        sim.advance(1)
    done = filled()
    assert done
    back = client_factory(31)
    assert back.of("nextValidId")[-1][0] > oid + 1
    back.reqExecutions(70, ExecutionFilter())  # no filter: every client's fills of the day
    back.wait_for(lambda: back.of("execDetailsEnd"))
    everything = [a[2] for a in back.of("execDetails") if a[0] == 70]
    assert {e.clientId for e in everything} > {31}
    got = [e for e in everything if e.clientId == 31 and e.orderId == done[0]]
    assert sum(Decimal(str(e.shares)) for e in got) == 200
    reports = {c[0].execId for c in back.of("commissionReport")}
    assert {e.execId for e in got} <= reports


def test_single_option_order_by_expiry_strike_right(client_factory: Any) -> None:
    app = client_factory(6)
    bid, ask = touch(app, 1, stock("SPY"))
    expiry, strike, _ = nearest_call(app, (bid + ask) / 2)
    contract = option(expiry, strike, "P")
    _obid, oask = touch(app, 2, contract)
    oid = app.of("nextValidId")[-1][0]
    app.placeOrder(oid, contract, order("BUY", 2, "LMT", round(oask + 0.5, 2)))
    app.wait_for(lambda: last_status(app, oid) == "Filled")
    fills = [a for a in app.of("execDetails") if a[2].orderId == oid]
    assert {a[1].right for a in fills} == {"P"} and {a[1].strike for a in fills} == {strike}
    assert sum(Decimal(str(a[2].shares)) for a in fills) == 2
    exec_ids = {a[2].execId for a in fills}
    reports = app.wait_for(
        lambda: [c[0] for c in app.of("commissionReport") if c[0].execId in exec_ids]
    )
    assert sum(Decimal(str(r.commission)) for r in reports) >= 1  # IB's $1 minimum per order
