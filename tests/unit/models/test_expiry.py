"""Option settlement at expiry (`models.expiry`): exercise, assignment, worthless; the booking
convention (option out at 0, underlying at the strike) and when a position is due."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from models.expiry import (
    ExpiryError,
    OptionPosition,
    SettlementKind,
    is_due,
    is_settlement,
    parse_expiry,
    settle,
    settlement_key,
)
from models.fills import FillRecord, Side, parse_exec_id, position_from_fills

D = Decimal
DAY = date(2026, 12, 4)
SPY = 756733


def option(qty: str, right: str, strike: str, con_id: int = 900001) -> OptionPosition:
    return OptionPosition(
        con_id=con_id,
        strategy="Momo",
        quantity=D(qty),
        multiplier=D(100),
        right=right,
        strike=D(strike),
        expiry=DAY,
        underlying_con_id=SPY,
    )


@pytest.mark.parametrize(
    ("qty", "right", "strike", "kind", "und_side"),
    [
        ("2", "C", "450", SettlementKind.EXERCISE, Side.BUY),
        ("2", "P", "460", SettlementKind.EXERCISE, Side.SELL),
        ("-2", "C", "450", SettlementKind.ASSIGN, Side.SELL),
        ("-2", "P", "460", SettlementKind.ASSIGN, Side.BUY),
    ],
)
def test_in_the_money_books_the_option_out_at_zero_and_the_underlying_at_the_strike(
    qty: str, right: str, strike: str, kind: SettlementKind, und_side: Side
) -> None:
    s = settle(option(qty, right, strike), D("455.37"))
    assert s.kind is kind
    assert s.intrinsic == (D("5.37") if right == "C" else D("4.63"))
    opt, und = s.fills
    assert (opt.con_id, opt.side, opt.shares, opt.price, opt.multiplier) == (
        900001,
        Side.SELL if D(qty) > 0 else Side.BUY,
        D(2),
        D(0),
        D(100),
    )
    assert (und.con_id, und.side, und.shares, und.price, und.multiplier) == (
        SPY,
        und_side,
        D(200),
        D(strike),
        D(1),
    )
    assert opt.execution_id.startswith(f"{kind.value}-") and is_settlement(und.execution_id)
    assert s.key == settlement_key(900001, "Momo", DAY) == "SETTLE-900001-Momo-20261204"


@pytest.mark.parametrize(
    ("qty", "right", "strike", "close"),
    [
        ("3", "C", "460", "455"),
        ("-3", "C", "460", "455"),
        ("3", "P", "450", "455"),
        ("-3", "P", "450", "455"),
        ("3", "C", "455", "455"),  # at the money: not exercised
        ("3", "C", "455", "455.009"),  # under a cent in the money: not exercised
    ],
)
def test_out_of_the_money_expires_worthless_with_one_fill_at_zero(
    qty: str, right: str, strike: str, close: str
) -> None:
    s = settle(option(qty, right, strike), D(close))
    assert s.kind is SettlementKind.EXPIRY
    assert len(s.fills) == 1
    assert (s.fills[0].price, s.fills[0].shares) == (D(0), D(3))
    assert s.fills[0].execution_id.startswith("EXPIRY-")


def test_exactly_one_cent_in_the_money_is_exercised() -> None:
    assert settle(option("1", "C", "455"), D("455.01")).kind is SettlementKind.EXERCISE


def test_realized_is_the_premium_and_the_exercise_value_sits_in_the_stock() -> None:
    """Long 2 calls at 3.20 struck 450, close 455.37: option realized -640.00 (the premium),
    stock long 200 at 450, worth +1074.00 at the close: together the 434.00 the trade made."""
    bought = FillRecord(
        "b.01", Side.BUY, D(2), D("3.20"), datetime(2026, 12, 4, 15, tzinfo=UTC), D(100)
    )
    s = settle(option("2", "C", "450"), D("455.37"))
    opt, und = s.fills
    close = datetime(2026, 12, 4, 21, tzinfo=UTC)
    option_pos = position_from_fills(
        [bought, FillRecord(opt.execution_id, opt.side, opt.shares, opt.price, close, D(100))]
    )
    stock_pos = position_from_fills(
        [FillRecord(und.execution_id, und.side, und.shares, und.price, close)]
    )
    assert option_pos.quantity == 0 and option_pos.realized_pl == D("-640.00")
    assert (stock_pos.quantity, stock_pos.avg_price) == (D(200), D(450))
    assert stock_pos.unrealized_at(D("455.37")) == D("1074.00")


def test_settlement_ids_are_not_read_as_corrections_of_each_other() -> None:
    """Two expiries of one contract and strategy differ in base, so neither replaces the other."""
    a = settle(option("1", "C", "500"), D(400)).fills[0].execution_id
    later = replace(option("1", "C", "500"), expiry=date(2026, 12, 11))
    b = settle(later, D(400)).fills[0].execution_id
    assert parse_exec_id(a).base != parse_exec_id(b).base
    assert parse_exec_id(a).seq == parse_exec_id(b).seq == 1


@pytest.mark.parametrize(
    ("position", "close", "message"),
    [
        (option("0", "C", "450"), "455", "flat"),
        (option("1", "X", "450"), "455", "right"),
        (option("1", "C", "450"), "0", "closing price"),
        (
            OptionPosition(900001, "Momo", D(1), D(100), "C", D(450), DAY, None),
            "455",
            "underlying is unknown",
        ),
    ],
)
def test_unusable_positions_are_refused_by_name(
    position: OptionPosition, close: str, message: str
) -> None:
    with pytest.raises(ExpiryError, match=message):
        settle(position, D(close))


def test_otm_needs_no_underlying() -> None:
    pos = OptionPosition(900001, "Momo", D(1), D(100), "P", D(400), DAY, None)
    assert settle(pos, D(455)).kind is SettlementKind.EXPIRY


def test_due_only_once_the_expiry_days_close_has_passed() -> None:
    close = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # early close, 13:00 ET
    day = date(2026, 11, 27)
    assert not is_due(day, day, datetime(2026, 11, 27, 17, 59, tzinfo=UTC), close)
    assert is_due(day, day, close, close)
    assert is_due(date(2026, 11, 26), day, datetime(2026, 11, 27, 14, tzinfo=UTC), close)
    assert not is_due(date(2026, 11, 30), day, datetime(2026, 11, 27, 23, tzinfo=UTC), close)
    assert not is_due(day, day, datetime(2026, 11, 27, 23, tzinfo=UTC), None)


def test_parse_expiry() -> None:
    assert parse_expiry("20261204") == DAY
    assert parse_expiry("20261204 16:00 US/Eastern") == DAY
    assert parse_expiry("202612") is None
    assert parse_expiry("20261340") is None
    assert parse_expiry(None) is None
