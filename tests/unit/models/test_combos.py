"""Combos: the net quote, units from legs, the legged fallback's order and the residual hedge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from models.combos import (
    ComboLeg,
    combo_snapshot,
    fallback_order,
    hedge_order,
    residual_delta,
    units_by_legs,
)
from models.fills import Side
from models.ledger_rules import counts_toward_order, holds_position
from models.market import MarketSnapshot

T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
D = Decimal


def snap(con_id: int, bid: str, ask: str, at: datetime = T0) -> MarketSnapshot:
    return MarketSnapshot(con_id=con_id, as_of=at, bid=D(bid), ask=D(ask))


def test_a_calendar_rolls_net_quote_is_a_debit_and_a_credit_roll_can_go_negative() -> None:
    legs = [ComboLeg(1, 1, Side.BUY), ComboLeg(2, 1, Side.SELL)]
    net = combo_snapshot(legs, [snap(1, "20.00", "20.20"), snap(2, "15.00", "15.30")])
    assert net is not None and (net.bid, net.ask, net.mid) == (D("4.70"), D("5.20"), D("4.95"))
    credit = combo_snapshot(legs, [snap(1, "1.00", "1.10"), snap(2, "3.00", "3.20")])
    assert credit is not None and credit.ask is not None and credit.ask < 0
    # Ratios multiply; the oldest leg dates the combo; a leg without a quote leaves none.
    two = combo_snapshot(
        [ComboLeg(1, 2, Side.BUY), ComboLeg(2, 1, Side.SELL)],
        [snap(1, "1.00", "1.10"), snap(2, "1.50", "1.60", at=T0 - timedelta(seconds=9))],
    )
    assert two is not None and (two.bid, two.ask) == (D("0.40"), D("0.70"))
    assert two.as_of == T0 - timedelta(seconds=9)
    assert combo_snapshot(legs, [snap(1, "1", "2"), None]) is None


def test_legs_make_whole_combo_units_the_least_filled_leg_deciding() -> None:
    assert units_by_legs([D(6), D(3)], [2, 1]) == D(3)
    assert units_by_legs([D(5), D(3)], [2, 1]) == D(2)
    assert units_by_legs([D(6), D(0)], [2, 1]) == D(0)
    assert units_by_legs([], []) == D(0)


def test_the_legged_fallback_buys_before_it_sells() -> None:
    legs = [(Side.SELL, 1), (Side.BUY, 1), (Side.BUY, 2)]
    assert fallback_order(legs, Side.BUY) == [2, 1, 0]
    # Selling the combo reverses every leg, and so the order.
    assert fallback_order(legs, Side.SELL) == [0, 2, 1]


def test_the_residual_delta_and_its_hedge() -> None:
    residual = residual_delta(
        [(Side.BUY, D(3)), (Side.SELL, D(2))], [D("0.55"), D("0.45")], [D(100), D(100)]
    )
    assert residual == D(75)
    assert hedge_order(residual) == (Side.SELL, D(75))
    assert hedge_order(D("-12.6")) == (Side.BUY, D(13))
    assert hedge_order(D("0.4")) is None
    # An unknown delta of a filled leg leaves the hedge undecided; of an unfilled leg, not.
    assert residual_delta([(Side.BUY, D(1))], [None], [D(100)]) is None
    assert residual_delta([(Side.BUY, D(0))], [None], [D(100)]) == D(0)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([Side.BUY, Side.SELL]), st.integers(0, 50), st.integers(-100, 100)
        ),
        min_size=1,
        max_size=4,
    )
)
def test_a_hedge_always_leaves_less_than_half_a_share_of_delta(
    legs: list[tuple[Side, int, int]],
) -> None:
    fills = [(side, D(q)) for side, q, _d in legs]
    deltas: list[Decimal | None] = [D(d) / 100 for _s, _q, d in legs]
    residual = residual_delta(fills, deltas, [D(100)] * len(legs))
    assert residual is not None
    order = hedge_order(residual)
    hedged = D(0) if order is None else (order[1] if order[0] is Side.BUY else -order[1])
    assert abs(residual + hedged) <= D("0.5")


def test_a_combo_order_counts_its_bag_executions_and_books_only_its_legs() -> None:
    assert counts_toward_order("BAG", "BAG") and not counts_toward_order("BAG", "OPT")
    assert counts_toward_order("STK", "STK") and counts_toward_order(None, "OPT")
    assert holds_position("OPT") and not holds_position("BAG")
