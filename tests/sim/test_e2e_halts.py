"""Option halts follow their underlying, through the wire with the official client: when the
underlying is halted its options' market data say so (tick 49 = 1, then 0 on resume), their
quotes freeze, new orders for them are refused (154, as IB answers for a halted security) and
working ones hold until trading resumes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from ibapi.contract import ComboLeg, Contract
from ibapi.order import Order

from tws_sim.market.scenario import Scenario
from tws_sim.server import SimServerThread
from tws_sim.server.testing import RecordingClient

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 ET
HALTED = 49

SCENARIO = """
name: spy-halt
extends: default
always_open: true
halts:
  # a regulatory halt of SPY 20 s in, for 30 s
  - {symbol: SPY, after_s: 20, duration_s: 30, state: 1}
"""


@pytest.fixture
def sim() -> Iterator[SimServerThread]:
    with SimServerThread(
        stepped=True, seed=4, start=START, scenario=Scenario.from_text(SCENARIO)
    ) as server:
        yield server


@pytest.fixture
def app(sim: SimServerThread) -> Iterator[RecordingClient]:
    client = RecordingClient()
    client.start(sim.port, 8)
    yield client
    client.stop()


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def option(expiry: str, strike: float, right: str = "C") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPY", "OPT", "SMART", "USD"
    c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier = expiry, strike, right, "100"
    return c


def snapshot(app: RecordingClient, req_id: int, contract: Contract) -> dict[int, float]:
    """tick type → value of one market-data snapshot (prices and the halt tick)."""
    app.reqMktData(req_id, contract, "", True, False, [])
    app.wait_for(lambda: [a for a in app.of("tickSnapshotEnd") if a[0] == req_id])
    ticks = {a[1]: a[2] for a in app.of("tickPrice") if a[0] == req_id}
    ticks.update({a[1]: a[2] for a in app.of("tickGeneric") if a[0] == req_id})
    return ticks


def limit(action: str, qty: int, price: float) -> Order:
    o = Order()
    o.action, o.orderType, o.totalQuantity, o.lmtPrice, o.tif = (
        action,
        "LMT",
        Decimal(qty),
        price,
        "DAY",
    )
    return o


def status(app: RecordingClient, oid: int) -> str:
    got = [a[1] for a in app.of("orderStatus") if a[0] == oid]
    return got[-1] if got else ""


def halt_ticks(app: RecordingClient, req_id: int) -> list[int]:
    return [int(a[2]) for a in app.of("tickGeneric") if a[0] == req_id and a[1] == HALTED]


def test_options_halt_with_their_underlying(sim: SimServerThread, app: RecordingClient) -> None:
    spy = snapshot(app, 1, stock("SPY"))
    spot = (spy[1] + spy[2]) / 2
    app.reqSecDefOptParams(2, "SPY", "", "STK", 756733)
    app.wait_for(lambda: app.of("securityDefinitionOptionParameterEnd"))
    row = app.of("securityDefinitionOptionParameter")[0]
    expiry = sorted(row[5])[0]
    strikes = sorted(row[6])
    strike = min(strikes, key=lambda s: abs(s - spot))
    call = option(expiry, strike)
    far = option(expiry, strikes[strikes.index(strike) + 2])
    # a streaming subscription to the option (not to SPY itself): trading at first
    app.reqMktData(10, call, "", False, False, [])
    app.wait_for(lambda: halt_ticks(app, 10) == [0])
    before = snapshot(app, 3, call)
    assert before[HALTED] == 0
    # a resting buy well under the bid, placed while trading
    oid = app.of("nextValidId")[-1][0]
    resting = limit("BUY", 1, round(max(before[1] - 1.0, 0.01), 2))
    app.placeOrder(oid, call, resting)
    app.wait_for(lambda: status(app, oid) == "Submitted")

    for _ in range(21):
        sim.advance(1)
    # SPY halts: its option's subscription hears tick 49 = 1
    app.wait_for(lambda: halt_ticks(app, 10) == [0, 1])
    during = snapshot(app, 4, call)
    assert during[HALTED] == 1
    # a new order for the option is refused as for a halted security ...
    app.placeOrder(oid + 1, call, limit("BUY", 1, round(during[2] + 1.0, 2)))
    refused = app.wait_for(lambda: [e for e in app.errors(154) if e[0] == oid + 1])
    assert "halted" in refused[0][2]
    app.wait_for(lambda: status(app, oid + 1) == "Cancelled")
    # ... so is a combo with a leg on the halted underlying
    bag = Contract()
    bag.symbol, bag.secType, bag.exchange, bag.currency = "SPY", "BAG", "SMART", "USD"
    bag.comboLegs = []
    for contract, action, req_id in ((call, "BUY", 20), (far, "SELL", 21)):
        app.reqContractDetails(req_id, contract)
        app.wait_for(lambda r=req_id: [a for a in app.of("contractDetailsEnd") if a[0] == r])
        leg = ComboLeg()
        leg.conId = next(a[1].contract.conId for a in app.of("contractDetails") if a[0] == req_id)
        leg.ratio, leg.action, leg.exchange = 1, action, "SMART"
        bag.comboLegs.append(leg)
    app.placeOrder(oid + 2, bag, limit("BUY", 1, 5.0))
    app.wait_for(lambda: [e for e in app.errors(154) if e[0] == oid + 2])
    # ... and the working order, made marketable during the halt, holds: no fill while halted
    resting.lmtPrice = round(during[2] + 1.0, 2)
    app.placeOrder(oid, call, resting)
    app.wait_for(
        lambda: [
            a for a in app.of("openOrder") if a[0] == oid and a[2].lmtPrice == resting.lmtPrice
        ]
    )
    seen = len([a for a in app.of("tickPrice") + app.of("tickSize") if a[0] == 10])
    for _ in range(10):
        sim.advance(1)
    assert status(app, oid) == "Submitted"
    assert not [a for a in app.of("execDetails") if a[2].orderId == oid]
    # the halted option's quote is frozen: no price or size ticks while halted
    assert len([a for a in app.of("tickPrice") + app.of("tickSize") if a[0] == 10]) == seen
    assert snapshot(app, 5, call)[1] == during[1]

    for _ in range(25):
        sim.advance(1)
    # trading resumes: tick 49 = 0 on the option's subscription, and the held order fills
    app.wait_for(lambda: halt_ticks(app, 10) == [0, 1, 0])
    assert snapshot(app, 6, call)[HALTED] == 0
    for _ in range(10):
        if status(app, oid) == "Filled":
            break
        sim.advance(1)
    app.wait_for(lambda: status(app, oid) == "Filled")
    app.cancelMktData(10)
