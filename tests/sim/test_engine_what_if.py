"""What-if orders at the simulator, read by ibapi's own decoder: one openOrder whose OrderState
carries the margins before / change / after, and nothing rests, fills or reports a status."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from ibapi.order import Order

from tests.sim.test_e2e_combos import limit, stock, vertical
from tws_sim.market.scenario import Scenario
from tws_sim.server.app import SimServerThread
from tws_sim.server.testing import RecordingClient

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
D = Decimal
SCENARIO = "name: what-if\nextends: default\nalways_open: true\n"


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


def what_if(order: Order) -> Order:
    order.whatIf = True
    return order


def state_of(app: RecordingClient, oid: int) -> Any:
    app.wait_for(lambda: [a for a in app.of("openOrder") if a[0] == oid])
    return next(a[3] for a in app.of("openOrder") if a[0] == oid)


def summary(sim: SimServerThread) -> dict[str, D]:
    values = sim.call(lambda s: s.venue.account_values(START))
    return {k: D(v[0]) for k, v in values.items() if v[1] == "USD" and k != "Currency"}


def test_a_stock_what_if_answers_margins_and_never_trades(
    sim: SimServerThread, app: RecordingClient
) -> None:
    oid = app.of("nextValidId")[-1][0]
    app.placeOrder(oid, stock("SPY"), what_if(limit("BUY", 100, 601.0)))
    state = state_of(app, oid)
    assert state.status == "PreSubmitted"
    before = summary(sim)
    mark = sim.call(lambda s: s.venue._mark(756733))
    cent = D("0.01")
    # Reg-T stock: 50 % initial, 25 % maintenance of 100 shares at the mark; paying the limit
    # for stock worth the mark changes equity with loan by the difference.
    assert D(state.initMarginBefore) == before["InitMarginReq"] == 0
    assert D(state.initMarginChange) == (100 * mark / 2).quantize(cent)
    assert D(state.maintMarginChange) == (100 * mark / 4).quantize(cent)
    assert D(state.equityWithLoanChange) == (100 * (mark - D(601))).quantize(cent)
    assert D(state.initMarginAfter) == D(state.initMarginBefore) + D(state.initMarginChange)
    assert D(state.equityWithLoanBefore) == before["EquityWithLoanValue"]
    sim.advance(2)
    assert not [a for a in app.of("orderStatus") if a[0] == oid]
    assert not [a for a in app.of("execDetails") if a[2].orderId == oid]
    assert oid not in {s.request.order_id for s in sim.call(lambda s: s.venue.open_orders(None))}
    # The id is used, as any placeOrder's: a lower one after it is a duplicate (103).
    app.placeOrder(oid, stock("SPY"), limit("BUY", 1, 1.0))
    app.wait_for(lambda: app.errors(103))


def test_a_combo_what_if_counts_the_short_leg(sim: SimServerThread, app: RecordingClient) -> None:
    bag, _long, short = vertical(app, "SPY", 756733, 10)
    oid = app.of("nextValidId")[-1][0] + 5
    app.placeOrder(oid, bag, what_if(limit("BUY", 2, 1.0)))
    state = state_of(app, oid)
    assert state.status == "PreSubmitted"
    # The short call is charged premium + 20 % of SPY for each of its 200 shares: well above 0.
    change = D(state.initMarginChange)
    assert change > D(2) * 100 * 600 / 5
    sim.advance(2)
    assert not [a for a in app.of("orderStatus") if a[0] == oid]
    assert short.conId not in sim.call(lambda s: dict(s.venue._account.positions))
