"""Implementation shortfall: the Perold split adds up, signs follow the side, exact decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.shortfall import ChildFill, ShortfallError, shortfall

D = Decimal


def child(
    key: str, filled: str, avg: str | None, ref: str | None = "100", fees: str = "0"
) -> ChildFill:
    return ChildFill(
        key, None, D(filled), None if avg is None else D(avg), D(ref) if ref else None, D(fees)
    )


def test_a_buy_filled_above_arrival_costs_execution_and_fees() -> None:
    result = shortfall(
        buy=True,
        target_qty=D(100),
        arrival_price=D("100"),
        target_price=None,
        end_price=D("101"),
        children=[child("a", "60", "100.10", fees="0.30"), child("b", "40", "100.20", fees="0.20")],
    )
    # 60 x 0.10 + 40 x 0.20 = 14; no target: the decision price is the arrival price.
    assert result.execution_cost == D("14")
    assert result.delay_cost == 0 and result.opportunity_cost == 0
    assert result.fees == D("0.5")
    assert result.total == D("14.5")
    assert result.avg_fill_price == D("100.14")
    # 14.5 over a paper notional of 10,000: 14.5 bps; execution vs arrival 14 bps.
    assert result.total_bps == D("14.5")
    assert result.slippage_bps == D("14")
    assert [c.slippage_bps for c in result.children] == [D("10"), D("20")]


def test_a_sell_with_a_target_splits_delay_execution_and_opportunity() -> None:
    # Decided at 50 (the signal's target), the market was 49.90 when trading began, 60 of 100
    # sold at 49.85, and it ended at 49.50 with 40 unsold.
    result = shortfall(
        buy=False,
        target_qty=D(100),
        arrival_price=D("49.90"),
        target_price=D("50"),
        end_price=D("49.50"),
        children=[child("a", "60", "49.85", ref="49.90")],
    )
    assert result.delay_cost == D("6")  # 60 x 0.10 lower before the first order
    assert result.execution_cost == D("3")  # 60 x 0.05 below arrival
    assert result.opportunity_cost == D("20")  # 40 unsold x 0.50 lower
    assert result.total == D("29")
    assert result.total_bps == D("58")  # 29 / 5,000
    assert result.children[0].slippage_bps == D("10.0200")


def test_options_costs_carry_the_multiplier_and_nothing_filled_is_all_opportunity() -> None:
    result = shortfall(
        buy=True,
        target_qty=D(10),
        arrival_price=D("2.00"),
        target_price=None,
        end_price=D("2.50"),
        children=[child("a", "0", None, ref="2.00")],
        multiplier=D(100),
    )
    assert result.filled_qty == 0 and result.avg_fill_price is None
    assert result.opportunity_cost == D("500")  # 10 x 0.50 x 100
    assert result.slippage_bps is None and result.children[0].slippage_bps is None


def test_no_arrival_price_is_a_clear_error() -> None:
    with pytest.raises(ShortfallError, match="no arrival price"):
        shortfall(
            buy=True,
            target_qty=D(1),
            arrival_price=None,
            target_price=None,
            end_price=None,
            children=[],
        )


prices = st.decimals(min_value=D("0.01"), max_value=D("999"), places=2)
qtys = st.integers(min_value=1, max_value=500)


@given(
    buy=st.booleans(),
    arrival=prices,
    target=st.none() | prices,
    end=prices,
    fills=st.lists(st.tuples(qtys, prices), max_size=5),
    extra=st.integers(min_value=0, max_value=300),
)
def test_the_parts_add_up_to_the_paper_portfolio_difference(
    buy: bool,
    arrival: Decimal,
    target: Decimal | None,
    end: Decimal,
    fills: list[tuple[int, Decimal]],
    extra: int,
) -> None:
    children = [ChildFill(f"c{i}", i, D(q), p, arrival) for i, (q, p) in enumerate(fills)]
    filled = sum((D(q) for q, _p in fills), D(0))
    target_qty = filled + extra if filled + extra > 0 else D(1)
    result = shortfall(
        buy=buy,
        target_qty=target_qty,
        arrival_price=arrival,
        target_price=target,
        end_price=end,
        children=children,
    )
    decision = target or arrival
    sign = 1 if buy else -1
    # Paper portfolio: all of it at the decision price; real: the fills, the rest at the end.
    paper = sum((D(q) * p for q, p in fills), D(0)) - filled * decision
    expected = sign * (paper + (target_qty - filled) * (end - decision))
    assert result.delay_cost + result.execution_cost + result.opportunity_cost == expected
