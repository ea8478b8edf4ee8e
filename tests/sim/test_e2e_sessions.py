"""The session close and the next session through the wire with the official client, on the
XNYS calendar: at Wednesday's close the day's options expire (in the money exercised or
assigned at the strike, the rest worthless, reported as position changes), working orders for
them and DAY orders are cancelled (a stock's outsideRth DAY order at 20:00), the expired
contracts are gone; Thanksgiving is skipped, Friday's session opens at 09:30 and closes early
at 13:00, expiring Friday's options then."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from ibapi.contract import Contract
from ibapi.order import Order

from tws_sim.market.scenario import Scenario
from tws_sim.server import SimServerThread
from tws_sim.server.testing import RecordingClient

ACCOUNT = "DU1234567"
WED_1555 = datetime(2026, 11, 25, 20, 55, tzinfo=UTC)  # 15:55 ET, the day before Thanksgiving
WED_CLOSE = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
WED_2000 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
FRI_OPEN = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)  # Friday 09:30 ET
FRI_CLOSE = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # 13:00 ET: an early close
D = Decimal

SCENARIO = """
name: sessions
always_open: false
instruments: [{symbol: SPY, price: "600.00", vol: 0.12}]
"""


@pytest.fixture
def sim() -> Iterator[SimServerThread]:
    with SimServerThread(
        stepped=True, seed=9, start=WED_1555, scenario=Scenario.from_text(SCENARIO)
    ) as server:
        yield server


@pytest.fixture
def app(sim: SimServerThread) -> Iterator[RecordingClient]:
    client = RecordingClient()
    client.start(sim.port, 3)
    yield client
    client.stop()


def stock() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPY", "STK", "SMART", "USD"
    return c


def option(expiry: str, strike: float, right: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPY", "OPT", "SMART", "USD"
    c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier = expiry, strike, right, "100"
    return c


def touch(app: RecordingClient, req_id: int, contract: Contract) -> tuple[float, float]:
    app.reqMktData(req_id, contract, "", True, False, [])
    app.wait_for(lambda: [a for a in app.of("tickSnapshotEnd") if a[0] == req_id])
    prices = [a for a in app.of("tickPrice") if a[0] == req_id]
    return [a[2] for a in prices if a[1] == 1][-1], [a[2] for a in prices if a[1] == 2][-1]


def con_id(app: RecordingClient, req_id: int, contract: Contract) -> int:
    app.reqContractDetails(req_id, contract)
    app.wait_for(lambda: [a for a in app.of("contractDetailsEnd") if a[0] == req_id])
    return int(next(a[1].contract.conId for a in app.of("contractDetails") if a[0] == req_id))


def limit(action: str, qty: int, price: float, tif: str = "DAY", rth: bool = True) -> Order:
    o = Order()
    o.action, o.orderType, o.totalQuantity, o.lmtPrice, o.tif = action, "LMT", D(qty), price, tif
    o.outsideRth = not rth
    return o


def status(app: RecordingClient, oid: int) -> str:
    got = [a[1] for a in app.of("orderStatus") if a[0] == oid]
    return got[-1] if got else ""


def expirations(app: RecordingClient, req_id: int) -> list[str]:
    app.reqSecDefOptParams(req_id, "SPY", "", "STK", 756733)
    app.wait_for(
        lambda: [a for a in app.of("securityDefinitionOptionParameterEnd") if a[0] == req_id]
    )
    return sorted(next(a for a in app.of("securityDefinitionOptionParameter") if a[0] == req_id)[5])


def positions(app: RecordingClient) -> dict[int, tuple[D, float]]:
    """The latest position callback per conId: (position, avgCost)."""
    return {a[1].conId: (D(str(a[2])), a[3]) for a in app.of("position")}


def advance_to(sim: SimServerThread, when: datetime) -> None:
    sim.advance((when - sim.now()).total_seconds())


def test_close_expiry_and_the_next_business_day(sim: SimServerThread, app: RecordingClient) -> None:
    app.reqPositions()
    app.wait_for(lambda: app.of("positionEnd"))
    app.reqAccountUpdates(True, ACCOUNT)
    app.wait_for(lambda: app.of("accountDownloadEnd"))
    bid, ask = touch(app, 1, stock())
    spot = (bid + ask) / 2
    today, friday = expirations(app, 2)[:2]
    assert (today, friday) == ("20261125", "20261127")
    itm_call = option(today, float(round(spot - 5)), "C")
    otm_call = option(today, float(round(spot + 5)), "C")
    itm_put = option(today, float(round(spot + 5)), "P")
    friday_call = option(friday, float(round(spot + 5)), "C")
    ids = {
        name: con_id(app, 10 + k, c)
        for k, (name, c) in enumerate(
            (("itm_call", itm_call), ("otm_call", otm_call), ("itm_put", itm_put))
        )
    }
    oid = app.of("nextValidId")[-1][0]
    # the day's positions: long an ITM call and an OTM call, short an ITM put
    for k, (contract, action) in enumerate(
        ((itm_call, "BUY"), (otm_call, "BUY"), (itm_put, "SELL"))
    ):
        b, a = touch(app, 20 + k, contract)
        price = round(a + 0.5, 2) if action == "BUY" else round(max(b - 0.5, 0.01), 2)
        app.placeOrder(oid + k, contract, limit(action, 1, price))
    for k in range(3):
        app.wait_for(lambda k=k: status(app, oid + k) == "Filled")
    # working orders: a DAY stock order, GTC ones (expiring option, stock, Friday's option) and a
    # stock DAY order allowed outside regular hours
    app.placeOrder(oid + 3, stock(), limit("BUY", 100, round(spot - 50, 2)))
    app.placeOrder(oid + 4, otm_call, limit("SELL", 1, 50.0, "GTC"))
    app.placeOrder(oid + 5, stock(), limit("BUY", 100, round(spot - 60, 2), "GTC"))
    app.placeOrder(oid + 6, friday_call, limit("SELL", 1, 50.0, "GTC"))
    app.placeOrder(oid + 7, stock(), limit("BUY", 100, round(spot - 55, 2), rth=False))
    for k in range(3, 8):
        app.wait_for(lambda k=k: status(app, oid + k) == "Submitted")
    execs_before = len(app.of("execDetails"))

    advance_to(sim, WED_CLOSE.replace(second=2))
    app.wait_for(
        lambda: status(app, oid + 3) == "Cancelled" and status(app, oid + 4) == "Cancelled"
    )
    for k in (5, 6, 7):
        assert status(app, oid + k) == "Submitted"
    # exercise (long ITM call: +100 SPY at its strike), assignment (short ITM put: +100 SPY at
    # its strike), the OTM call worthless: position changes only, no executions
    app.wait_for(lambda: positions(app).get(756733, (D(0), 0))[0] == 200)
    held = positions(app)
    assert {held[c][0] for c in ids.values()} == {D(0)}
    assert held[756733][1] == pytest.approx((itm_call.strike + itm_put.strike) * 100 / 200)
    assert len(app.of("execDetails")) == execs_before
    app.wait_for(
        lambda: [a for a in app.of("updatePortfolio") if a[0].conId == 756733 and a[1] == 200]
    )
    # reqPositions again: the same
    app.reqPositions()
    app.wait_for(lambda: len(app.of("positionEnd")) == 2)
    assert positions(app)[756733][0] == 200
    # the expired contracts are gone
    assert expirations(app, 3)[0] == friday
    app.reqContractDetails(30, itm_call)
    app.wait_for(lambda: [e for e in app.errors(200) if e[0] == 30])
    app.placeOrder(oid + 8, itm_call, limit("SELL", 1, 1.0))
    app.wait_for(lambda: [e for e in app.errors(200) if e[0] == oid + 8])
    # an order placed after the close waits for the next session
    app.placeOrder(oid + 9, stock(), limit("BUY", 10, round(spot + 20, 2), "GTC"))
    app.wait_for(lambda: status(app, oid + 9) == "PreSubmitted")

    advance_to(sim, WED_2000.replace(second=2))
    app.wait_for(lambda: status(app, oid + 7) == "Cancelled")  # the extended session ended
    assert status(app, oid + 9) == "PreSubmitted"

    # Thanksgiving is no session; Friday's opens at 09:30 ET and the waiting order trades
    advance_to(sim, FRI_OPEN.replace(second=5))
    app.wait_for(lambda: status(app, oid + 9) == "Filled")
    fill = next(a[2] for a in app.of("execDetails") if a[2].orderId == oid + 9)
    assert fill.time.startswith("20261127")
    app.placeOrder(oid + 10, stock(), limit("BUY", 100, round(spot - 70, 2)))
    app.wait_for(lambda: status(app, oid + 10) == "Submitted")

    # Friday closes at 13:00 ET: its DAY orders and Friday's options expire then
    advance_to(sim, FRI_CLOSE.replace(second=2))
    app.wait_for(
        lambda: status(app, oid + 10) == "Cancelled" and status(app, oid + 6) == "Cancelled"
    )
    assert status(app, oid + 5) == "Submitted"  # GTC stock order: still working
    assert expirations(app, 4)[0] > friday
