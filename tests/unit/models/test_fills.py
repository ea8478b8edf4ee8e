"""Pure fill math: execId identity and corrections, cumulative quantity, average-cost positions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.fills import (
    ExecIdError,
    ExecKey,
    FillRecord,
    PositionState,
    Side,
    cumulative,
    effective_fills,
    estimate_commission,
    parse_exec_id,
    position_from_fills,
    supersession,
)

T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
D = Decimal


def fill(
    exec_id: str, side: Side, shares: str, price: str, seconds: int = 0, **kw: object
) -> FillRecord:
    return FillRecord(
        exec_id,
        side,
        D(shares),
        D(price),
        T0 + timedelta(seconds=seconds),
        **kw,  # type: ignore[arg-type]
    )


def test_parse_exec_id_splits_base_and_correction_suffix() -> None:
    assert parse_exec_id("0000e0d5.6581b1f5.01.01") == ExecKey("0000e0d5.6581b1f5.01", 1)
    assert parse_exec_id("0000e0d5.6581b1f5.01.02") == ExecKey("0000e0d5.6581b1f5.01", 2)
    assert parse_exec_id("0000e0d5.6581b1f5.01.0a").seq == 10


def test_parse_exec_id_without_suffix_is_its_own_base() -> None:
    assert parse_exec_id("abc") == ExecKey("abc", 0)
    assert parse_exec_id("sim.exec-7") == ExecKey("sim.exec-7", 0)


@pytest.mark.parametrize("bad", ["", "   "])
def test_parse_exec_id_rejects_empty(bad: str) -> None:
    with pytest.raises(ExecIdError) as info:
        parse_exec_id(bad)
    assert info.value.code == "BAD_EXEC_ID"


def test_correction_replaces_not_adds() -> None:
    fills = [
        fill("e.01.01", Side.BUY, "100", "10"),
        fill("e.01.02", Side.BUY, "100", "10.5"),
        fill("f.01.01", Side.BUY, "50", "11"),
    ]
    assert [f.execution_id for f in effective_fills(fills)] == ["e.01.02", "f.01.01"]
    qty, avg = cumulative(fills)
    assert qty == D("150")
    assert avg == D("10.6666666667")


def test_correction_arriving_first_still_wins() -> None:
    newer, older = fill("e.01.02", Side.BUY, "90", "10"), fill("e.01.01", Side.BUY, "100", "10")
    assert effective_fills([newer, older]) == effective_fills([older, newer]) == [newer]


def test_supersession_maps_each_id_to_its_replacement() -> None:
    result = supersession(["e.01.01", "e.01.03", "e.01.02", "x.01.01"])
    assert result == {
        "e.01.01": "e.01.03",
        "e.01.02": "e.01.03",
        "e.01.03": None,
        "x.01.01": None,
    }


def test_cumulative_of_nothing() -> None:
    assert cumulative([]) == (D(0), None)


def test_position_average_cost_and_realized_pl() -> None:
    fills = [
        fill("a.01", Side.BUY, "100", "10", 0),
        fill("b.01", Side.BUY, "100", "12", 1),
        fill("c.01", Side.SELL, "50", "15", 2, commission=D("1.25")),
    ]
    position = position_from_fills(fills)
    assert position.quantity == D("150")
    assert position.avg_price == D("11")
    assert position.realized_pl == D("200")
    assert position.commissions == D("1.25")
    assert position.unrealized_at(D("12")) == D("150")


def test_position_flip_opens_at_fill_price() -> None:
    fills = [fill("a.01", Side.BUY, "10", "100", 0), fill("b.01", Side.SELL, "25", "110", 1)]
    position = position_from_fills(fills)
    assert position.quantity == D("-15")
    assert position.avg_price == D("110")
    assert position.realized_pl == D("100")


def test_position_close_to_flat_clears_average() -> None:
    fills = [fill("a.01", Side.SELL, "3", "2.5", 0, multiplier=D(100))]
    fills.append(fill("b.01", Side.BUY, "3", "1.5", 1, multiplier=D(100)))
    position = position_from_fills(fills)
    assert position == PositionState(D(0), None, D("300.0"), D(0), D(100))


def test_short_option_multiplier_applies_to_realized() -> None:
    fills = [
        fill("a.01", Side.SELL, "2", "3.10", 0, multiplier=D(100)),
        fill("b.01", Side.BUY, "1", "2.60", 1, multiplier=D(100)),
    ]
    assert position_from_fills(fills).realized_pl == D("50.00")


@pytest.mark.parametrize(
    ("sec_type", "shares", "price", "expected"),
    [
        ("STK", "100", "50", "1.00"),  # 0.50 → minimum 1.00
        ("STK", "1000", "50", "5.00"),
        ("STK", "10", "1", "0.10"),  # capped at 1% of 10.00
        ("OPT", "3", "2.5", "1.95"),
        ("OPT", "1", "0.05", "1.00"),
        ("STK", "0", "10", "0"),
    ],
)
def test_estimate_commission(sec_type: str, shares: str, price: str, expected: str) -> None:
    multiplier = D(100) if sec_type == "OPT" else D(1)
    assert estimate_commission(sec_type, D(shares), D(price), multiplier) == D(expected)


_sides = st.sampled_from([Side.BUY, Side.SELL])
_qty = st.integers(min_value=1, max_value=500).map(D)
_price = st.integers(min_value=1, max_value=100_000).map(lambda c: D(c) / 100)


@given(st.lists(st.tuples(_sides, _qty, _price), max_size=30), st.randoms())
def test_position_quantity_is_signed_sum_and_order_free(
    legs: list[tuple[Side, Decimal, Decimal]], rnd: object
) -> None:
    fills = [fill(f"x{i:03d}.01", s, str(q), str(p), i) for i, (s, q, p) in enumerate(legs)]
    shuffled = list(fills)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    position = position_from_fills(fills)
    assert position.quantity == sum((f.signed_shares for f in fills), D(0))
    assert position_from_fills(shuffled) == position


@given(st.lists(st.tuples(_sides, _qty, _price), min_size=1, max_size=20), _price)
def test_realized_plus_unrealized_equals_cash_flow_pnl(
    legs: list[tuple[Side, Decimal, Decimal]], mark: Decimal
) -> None:
    # Independent computation: P&L = value of the position at the mark minus net cash paid.
    fills = [fill(f"x{i:03d}.01", s, str(q), str(p), i) for i, (s, q, p) in enumerate(legs)]
    position = position_from_fills(fills)
    cash = sum((-f.signed_shares * f.price for f in fills), D(0))
    expected = cash + position.quantity * mark
    got = position.realized_pl + position.unrealized_at(mark)
    # Average prices are quantized to 1e-10 after each fill; each rounding can shift P&L by at
    # most (quantity it applies to) x 0.5e-10, so the total error is bounded by traded volume.
    traded = sum((f.shares for f in fills), D(0))
    assert abs(got - expected) <= 2 * traded * D("1e-10")


def test_large_figures_are_not_rounded_by_the_default_decimal_context() -> None:
    # 19 x 13 significant digits: Python's default context (28 digits) would round the realized
    # P&L silently; the ledger's sums and products stay exact (only averages are quantized).
    shares, buy, sell = D("1234567890123.456789"), D("100.1234567891"), D("200.9876543219")
    position = position_from_fills(
        [
            fill("big.01", Side.BUY, str(shares), str(buy)),
            fill("big2.01", Side.SELL, str(shares), str(sell), 1),
        ]
    )
    # Exact: 1234567890123.456789 x 100.8641975328.
    assert position.realized_pl == D("124523699537064.4717444612101792")
    assert position.quantity == D(0)
