"""Combos (BAG) through the wire with the official client: a combo limit order fills in whole
combo units over several executions (each one a BAG execution under conId 28812380 plus one per
leg with the leg's ratio times the units), orderStatus counts combo units, and a scenario can
still refuse combos so a client falls back to legging."""

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

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 ET
BAG_CON_ID = 28812380
D = Decimal

SCENARIO = """
name: combos
extends: default
always_open: true
faults:
  # SPY combos: one unit per execution, at most one execution a second (a thin complex book)
  - {kind: combo_partial_fills, symbols: [SPY], max_units: 1, interval_s: 1}
  # QQQ combos are refused: the client legs them instead
  - {kind: combo_unfillable, symbols: [QQQ]}
"""


@pytest.fixture
def sim() -> Iterator[SimServerThread]:
    with SimServerThread(
        stepped=True, seed=5, start=START, scenario=Scenario.from_text(SCENARIO)
    ) as server:
        yield server


@pytest.fixture
def app(sim: SimServerThread) -> Iterator[RecordingClient]:
    client = RecordingClient()
    client.start(sim.port, 7)
    yield client
    client.stop()


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def option(symbol: str, expiry: str, strike: float, right: str = "C") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "OPT", "SMART", "USD"
    c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier = expiry, strike, right, "100"
    return c


def mid(app: RecordingClient, req_id: int, contract: Contract) -> float:
    app.reqMktData(req_id, contract, "", True, False, [])
    app.wait_for(lambda: [a for a in app.of("tickSnapshotEnd") if a[0] == req_id])
    prices = [a for a in app.of("tickPrice") if a[0] == req_id]
    bid = [a[2] for a in prices if a[1] == 1][-1]
    ask = [a[2] for a in prices if a[1] == 2][-1]
    return (bid + ask) / 2


def vertical(app: RecordingClient, symbol: str, und_con_id: int, base: int) -> tuple[Contract, ...]:
    """A call vertical near the money: (bag, long leg, short leg) with resolved conIds."""
    spot = mid(app, base, stock(symbol))
    app.reqSecDefOptParams(base + 1, symbol, "", "STK", und_con_id)
    app.wait_for(
        lambda: [a for a in app.of("securityDefinitionOptionParameterEnd") if a[0] == base + 1]
    )
    row = next(a for a in app.of("securityDefinitionOptionParameter") if a[0] == base + 1)
    expiry = sorted(row[5])[0]
    strikes = sorted(row[6])
    near = min(strikes, key=lambda s: abs(s - spot))
    far = strikes[strikes.index(near) + 2]
    legs = []
    for req_id, strike in ((base + 2, near), (base + 3, far)):
        app.reqContractDetails(req_id, option(symbol, expiry, strike))
        app.wait_for(lambda r=req_id: [a for a in app.of("contractDetailsEnd") if a[0] == r])
        legs.append(next(a[1].contract for a in app.of("contractDetails") if a[0] == req_id))
    bag = Contract()
    bag.symbol, bag.secType, bag.exchange, bag.currency = symbol, "BAG", "SMART", "USD"
    bag.comboLegs = []
    for leg_contract, action in zip(legs, ("BUY", "SELL"), strict=True):
        leg = ComboLeg()
        leg.conId, leg.ratio, leg.action, leg.exchange = leg_contract.conId, 1, action, "SMART"
        bag.comboLegs.append(leg)
    return bag, legs[0], legs[1]


def limit(action: str, qty: int, price: float) -> Order:
    o = Order()
    o.action, o.orderType, o.totalQuantity, o.lmtPrice, o.tif = action, "LMT", D(qty), price, "DAY"
    return o


def statuses(app: RecordingClient, oid: int) -> list[tuple[str, D, D]]:
    return [(a[1], D(str(a[2])), D(str(a[3]))) for a in app.of("orderStatus") if a[0] == oid]


def test_combo_limit_fills_in_units_over_several_executions(
    sim: SimServerThread, app: RecordingClient
) -> None:
    bag, long_leg, short_leg = vertical(app, "SPY", 756733, 10)
    width = short_leg.strike - long_leg.strike
    oid = app.of("nextValidId")[-1][0]
    app.placeOrder(oid, bag, limit("BUY", 3, round(width, 2)))  # a debit under the width
    for _ in range(10):
        if statuses(app, oid) and statuses(app, oid)[-1][0] == "Filled":
            break
        sim.advance(1)
    app.wait_for(lambda: statuses(app, oid) and statuses(app, oid)[-1][0] == "Filled")
    # orderStatus counts combo units: 1/2, 2/1, then 3/0 Filled
    progress = [(f, r) for _s, f, r in statuses(app, oid)]
    assert [p for p in progress if p[0] > 0] == [(D(1), D(2)), (D(2), D(1)), (D(3), D(0))]
    execs = [(a[1], a[2]) for a in app.of("execDetails") if a[2].orderId == oid]
    by_con: dict[int, list[Any]] = {}
    for contract, ex in execs:
        by_con.setdefault(contract.conId, []).append((contract, ex))
    assert set(by_con) == {BAG_CON_ID, long_leg.conId, short_leg.conId}
    for con_id, rows in by_con.items():
        # three executions each: one unit (ratio 1) per execution, cumulative 1, 2, 3
        assert [D(str(ex.shares)) for _c, ex in rows] == [D(1)] * 3
        assert [D(str(ex.cumQty)) for _c, ex in rows] == [D(1), D(2), D(3)]
        assert {c.secType for c, _ in rows} == ({"BAG"} if con_id == BAG_CON_ID else {"OPT"})
    sides = {con_id: {ex.side for _c, ex in rows} for con_id, rows in by_con.items()}
    assert sides == {BAG_CON_ID: {"BOT"}, long_leg.conId: {"BOT"}, short_leg.conId: {"SLD"}}
    # each BAG execution's price is its legs' net
    for k in range(3):
        net = by_con[long_leg.conId][k][1].price - by_con[short_leg.conId][k][1].price
        assert by_con[BAG_CON_ID][k][1].price == pytest.approx(net)
    exec_ids = {ex.execId for _c, ex in execs}
    assert len(exec_ids) == 9 and len({ex.permId for _c, ex in execs}) == 1
    # a commission report per execution: the legs carry them (IB's $1 minimum once per leg
    # order, then per contract), the BAG's own execution carries none
    reports = app.wait_for(
        lambda: (
            got
            if exec_ids <= set(got := {c[0].execId: c[0] for c in app.of("commissionReport")})
            else None
        )
    )
    bag_ids = {ex.execId for c, ex in execs if c.conId == BAG_CON_ID}
    assert all(reports[e].commission == 0 for e in bag_ids)
    for leg in (long_leg, short_leg):
        leg_ids = [ex.execId for c, ex in execs if c.conId == leg.conId]
        assert sum(D(str(reports[e].commission)) for e in leg_ids) == D("1.95")  # 3 x 0.65
    # reqExecutions answers with the same nine executions; positions hold the legs only
    app.reqExecutions(90, ExecutionFilter())
    app.wait_for(lambda: [a for a in app.of("execDetailsEnd") if a[0] == 90])
    again = {a[2].execId for a in app.of("execDetails") if a[0] == 90 and a[2].orderId == oid}
    assert again == exec_ids
    app.reqPositions()
    app.wait_for(lambda: app.of("positionEnd"))
    held = {a[1].conId: D(str(a[2])) for a in app.of("position")}
    assert held[long_leg.conId] == 3 and held[short_leg.conId] == -3
    assert BAG_CON_ID not in held


def test_a_refused_combo_can_be_legged(sim: SimServerThread, app: RecordingClient) -> None:
    bag, long_leg, short_leg = vertical(app, "QQQ", 320227571, 30)
    oid = app.of("nextValidId")[-1][0]
    app.placeOrder(oid, bag, limit("BUY", 2, round(short_leg.strike - long_leg.strike, 2)))
    refused = app.wait_for(lambda: [e for e in app.errors(201) if e[0] == oid])
    assert "combo" in refused[0][2]
    app.wait_for(lambda: statuses(app, oid) and statuses(app, oid)[-1][0] == "Cancelled")
    assert not [a for a in app.of("execDetails") if a[2].orderId == oid]
    # the legged fallback: each leg as its own marketable order
    for k, (contract, action) in enumerate(((long_leg, "BUY"), (short_leg, "SELL"))):
        contract.exchange = "SMART"
        px = mid(app, 40 + k, contract)
        price = round(px + 1, 2) if action == "BUY" else round(max(px - 1, 0.01), 2)
        app.placeOrder(oid + 1 + k, contract, limit(action, 2, price))
    for k in range(2):
        app.wait_for(
            lambda k=k: statuses(app, oid + 1 + k) and statuses(app, oid + 1 + k)[-1][0] == "Filled"
        )
