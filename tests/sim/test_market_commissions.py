"""IB tiered commissions: the worked examples from IBKR's published schedule."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tws_sim.market import commission_for, commission_increment
from tws_sim.market.catalog import STOCK_EXCHANGES
from tws_sim.types import Instrument, Right, SecType

STOCK = Instrument(
    con_id=265598, symbol="AAPL", sec_type=SecType.STK, currency="USD", exchange="SMART",
    primary_exchange="NASDAQ", local_symbol="AAPL", trading_class="AAPL", multiplier=1,
    min_tick=Decimal("0.01"), long_name="APPLE INC", valid_exchanges=STOCK_EXCHANGES,
)  # fmt: skip
OPTION = Instrument(
    con_id=700000001, symbol="AAPL", sec_type=SecType.OPT, currency="USD", exchange="SMART",
    primary_exchange="", local_symbol="AAPL  261127C00230000", trading_class="AAPL",
    multiplier=100, min_tick=Decimal("0.01"), long_name="APPLE INC", valid_exchanges=("SMART",),
    expiry=date(2026, 11, 27), strike=Decimal("230"), right=Right.CALL, underlying_con_id=265598,
)  # fmt: skip
D = Decimal


@pytest.mark.parametrize(
    ("shares", "price", "monthly", "expected"),
    [
        (D(100), D("50"), 0, D("0.35")),  # 100 × 0.0035 = 0.35 = the minimum
        (D(1000), D("50"), 0, D("3.50")),
        (D(10), D("50"), 0, D("0.35")),  # minimum
        (D(100), D("0.25"), 0, D("0.25")),  # 1 % of $25 caps the minimum
        (D(1000), D("50"), 300_000, D("2.00")),  # second tier
        (D(1000), D("50"), 3_000_000, D("1.50")),
        (D(1000), D("50"), 20_000_000, D("1.00")),
        (D(1000), D("50"), 100_000_000, D("0.50")),
        (D(-1000), D("50"), 0, D("3.50")),  # sells pay the same
        (D(0), D("50"), 0, D("0")),
    ],
)
def test_commission_stock_tiers(shares: Decimal, price: Decimal, monthly: int, expected: Decimal):
    assert commission_for(STOCK, shares, price, monthly) == expected


@pytest.mark.parametrize(
    ("contracts", "premium", "monthly", "expected"),
    [
        # IBKR's own examples for ≤ 10,000 contracts a month.
        (D(1), D("2"), 0, D("1.00")),
        (D(2), D("5"), 0, D("1.30")),
        (D(3), D("0.075"), 0, D("1.50")),
        (D(5), D("0.03"), 0, D("1.25")),
        (D(10), D("1.20"), 0, D("6.50")),
        # 10,001 - 50,000
        (D(2), D("5"), 10_000, D("1.00")),
        (D(3), D("0.075"), 10_000, D("1.50")),
        (D(10), D("1"), 10_000, D("5.00")),
        # 50,001 - 100,000 and above
        (D(5), D("2"), 50_000, D("1.25")),
        (D(7), D("2"), 100_000, D("1.05")),
        (D(5), D("5"), 100_000, D("1.00")),
    ],
)
def test_commission_option_tiers(
    contracts: Decimal, premium: Decimal, monthly: int, expected: Decimal
) -> None:
    assert commission_for(OPTION, contracts, premium, monthly) == expected


def test_commission_increment_charges_minimum_once_per_order() -> None:
    first = commission_increment(STOCK, D(50), D("100"), D("0"))
    assert first == D("0.35")
    second = commission_increment(STOCK, D(150), D("100"), first)
    assert second == D("0.1750")  # 150 × 0.0035 = 0.525 total
    assert first + second == commission_for(STOCK, D(150), D("100"))
    opt_first = commission_increment(OPTION, D(1), D("2"), D("0"))
    opt_second = commission_increment(OPTION, D(3), D("2"), opt_first)
    assert (opt_first, opt_second) == (D("1.00"), D("0.95"))
