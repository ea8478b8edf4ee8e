"""The paper account: average cost, realized/unrealized P&L, commissions, summary tags."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sim.engine_kit import (
    AAPL,
    CALL_600,
    SPY,
    T0,
    BookMarket,
    later,
    make_venue,
    order,
)
from tws_sim.engine import Venue
from tws_sim.engine.account import Account
from tws_sim.types import Commissioned, Executed, PositionChanged, VenueEvent

D = Decimal


def make() -> tuple[Venue, BookMarket]:
    return make_venue(SPY, AAPL, CALL_600)


def reports(events: list[VenueEvent]) -> list[tuple[Decimal, Decimal | None]]:
    return [
        (e.report.commission, e.report.realized_pnl) for e in events if isinstance(e, Commissioned)
    ]


def test_average_cost_includes_commission_and_realizes_on_close() -> None:
    acct = Account(D(100000))
    assert acct.apply_fill(1, 1, True, D(100), D("10.00"), D("1.00")) is None
    assert acct.positions[1].avg_cost == D("10.01")
    assert acct.apply_fill(1, 1, True, D(100), D("12.00"), D("1.00")) is None
    assert acct.positions[1].avg_cost == D("11.01")
    realized = acct.apply_fill(1, 1, False, D(50), D("13.00"), D("1.00"))
    assert realized == D("98.50")  # (13.00 - 11.01) * 50 - 1.00
    assert acct.positions[1].avg_cost == D("11.01")  # average cost does not move on a close
    assert acct.cash == D(100000) - D(1000) - D(1200) + D(650) - D(3)


def test_flip_through_zero_splits_the_commission() -> None:
    acct = Account(D(0))
    acct.apply_fill(7, 100, True, D(1), D("2.00"), D("1.00"))  # avg 201.00 per contract
    realized = acct.apply_fill(7, 100, False, D(3), D("3.00"), D("3.00"))
    assert realized == D("300") - D("201") - D("1.00") + D("0")  # (300-201)*1 - 1
    pos = acct.positions[7]
    assert pos.qty == D(-2) and pos.cost == D(-600) + D(2)
    assert pos.avg_cost == D(299)


def test_round_trip_realized_pnl_in_commission_reports() -> None:
    v, m = make()
    ev = v.place(order(1, "BUY", "100", "MKT"), T0)
    assert reports(ev) == [(D("0.35"), None)]
    m.set_book(SPY.con_id, later(1), [("501.00", "100")], [("501.02", "100")])
    ev = v.place(order(2, "SELL", "100", "MKT"), later(1))
    comm, realized = reports(ev)[0]
    assert comm == D("0.35")
    assert realized == (D("501.00") - D("500.01")) * 100 - D("0.70")
    daily, unreal, real = v.pnl(later(1))
    assert real == realized and unreal == 0 and daily == realized


def test_commission_minimum_applies_once_per_order_across_partial_fills() -> None:
    v, _ = make()
    ev = v.place(order(1, "BUY", "250", "MKT"), T0)
    comms = [c for c, _ in reports(ev)]
    assert comms == [D("0.35"), D("0.5250")]  # 250 * 0.0035 = 0.875 in total
    assert v.order(1, 1).commission == D("0.8750")  # type: ignore[union-attr]


def test_option_commission_per_contract_with_minimum() -> None:
    v, _ = make()
    ev = v.place(order(1, "BUY", "1", "MKT", con_id=CALL_600.con_id), T0)
    assert reports(ev) == [(D("1.00"), None)]
    ev = v.place(order(2, "BUY", "3", "MKT", con_id=CALL_600.con_id), T0)
    assert reports(ev)[0][0] == D("1.95")
    pos = {i.con_id: (q, a) for i, q, a in v.positions()}
    assert pos[CALL_600.con_id] == (D(4), (D("510") + D("1.00") + D("1530") + D("1.95")) / 4)


def test_stock_commission_per_share_and_one_percent_cap() -> None:
    v, m = make()
    m.set_book(AAPL.con_id, T0, [("200.00", "5000")], [("200.02", "5000")])
    ev = v.place(order(1, "BUY", "1000", "MKT", con_id=AAPL.con_id), T0)
    assert reports(ev) == [(D("3.50"), None)]
    m.set_book(AAPL.con_id, later(1), [("0.10", "5000")], [("0.11", "5000")])
    ev = v.place(order(2, "SELL", "100", "MKT", con_id=AAPL.con_id), later(1))
    assert reports(ev)[0][0] == D("0.10")  # 1 % of $10 caps the $0.35 minimum


def test_position_events_and_unrealized_from_the_mid() -> None:
    v, m = make()
    ev = v.place(order(1, "BUY", "100", "MKT"), T0)
    pos_ev = [e for e in ev if isinstance(e, PositionChanged)]
    assert [(p.con_id, p.position) for p in pos_ev] == [(SPY.con_id, D(100))]
    assert pos_ev[0].avg_cost == D("500.0135")
    m.set_book(SPY.con_id, later(1), [("502.00", "100")], [("502.02", "100")])
    daily, unreal, real = v.pnl(later(1))
    assert unreal == D("502.01") * 100 - D("50001.35")
    assert real == 0 and daily == unreal
    single = v.pnl_single(SPY.con_id, later(1))
    assert single == (D(100), unreal, unreal, D(0), D("50201.00"))
    assert v.pnl_single(AAPL.con_id, later(1)) is None


def test_account_summary_tags() -> None:
    v, _ = make()
    v.place(order(1, "BUY", "100", "MKT"), T0)
    v.place(order(2, "SELL", "100", "MKT", con_id=AAPL.con_id), T0)  # short 100 AAPL at 200.00
    values = v.account_values(later(1))
    for tag in (
        "NetLiquidation",
        "TotalCashValue",
        "SettledCash",
        "BuyingPower",
        "AvailableFunds",
        "ExcessLiquidity",
        "InitMarginReq",
        "MaintMarginReq",
        "GrossPositionValue",
        "EquityWithLoanValue",
        "RealizedPnL",
        "UnrealizedPnL",
        "Cushion",
        "AccountType",
    ):
        assert tag in values, tag
    cash = D(1000000) - D("50001.35") + D("20000") - D("0.35")
    assert values["TotalCashValue"] == (str(cash.quantize(D("0.01"))), "USD")
    mv_spy = D("500.005") * 100
    mv_aapl = D("-200.01") * 100
    net = cash + mv_spy + mv_aapl
    assert values["NetLiquidation"][0] == str(net.quantize(D("0.01")))
    assert values["GrossPositionValue"][0] == str((mv_spy - mv_aapl).quantize(D("0.01")))
    init = (mv_spy - mv_aapl) / 2
    assert values["InitMarginReq"][0] == str(init.quantize(D("0.01")))
    assert values["AvailableFunds"][0] == str((net - init).quantize(D("0.01")))
    assert values["AccountType"] == ("INDIVIDUAL", "")
    assert D(values["Cushion"][0]) > 0


def test_flat_positions_are_still_reported_with_zero() -> None:
    v, _ = make()
    v.place(order(1, "BUY", "10", "MKT"), T0)
    v.place(order(2, "SELL", "10", "MKT"), T0)
    assert [(i.symbol, q) for i, q, _ in v.positions()] == [("SPY", D(0))]


@pytest.mark.parametrize("qty", ["1", "37", "100"])
def test_execution_fields_are_complete(qty: str) -> None:
    v, _ = make()
    ev = v.place(order(4, "SELL", qty, "MKT", order_ref="ref-1"), T0)
    ex = next(e.execution for e in ev if isinstance(e, Executed))
    assert (ex.order_id, ex.client_id, ex.account, ex.con_id) == (4, 1, "DU1234567", SPY.con_id)
    assert (ex.side, ex.shares, ex.price, ex.order_ref) == ("SLD", D(qty), D("500.00"), "ref-1")
    assert ex.time == T0 and ex.exchange == "MM0"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.integers(min_value=1, max_value=500),
            st.integers(min_value=100, max_value=100_000),
            st.integers(min_value=0, max_value=500),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_account_conserves_value_through_any_fill_sequence(
    fills: list[tuple[bool, int, int, int]],
) -> None:
    """cash + cost basis moves only by realized P&L, and qty is the signed sum of fills."""
    acct = Account(D(1_000_000))
    qty = D(0)
    for buy, shares, cents, comm_cents in fills:
        acct.apply_fill(1, 100, buy, D(shares), D(cents) / 100, D(comm_cents) / 100)
        qty += shares if buy else -shares
    pos = acct.positions[1]
    assert pos.qty == qty
    assert acct.cash + pos.cost == D(1_000_000) + acct.realized
    if pos.qty == 0:
        assert pos.cost == 0
    else:
        assert (pos.cost > 0) == (pos.qty > 0)
