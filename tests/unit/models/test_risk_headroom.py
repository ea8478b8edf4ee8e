"""The margin-headroom gate (models.risk.gate_headroom): pure, fails closed, never holds exits."""

from __future__ import annotations

import tomllib
from decimal import Decimal

import pytest

from models.intent import Side
from models.limits import parse_limits
from models.rejects import RejectReason
from models.risk import AccountFacts, Breach, MarketFacts, OrderFacts, check_order

LIMITS = parse_limits(
    tomllib.loads(
        """
version = 1
[defaults.instrument]
max_order_notional = "5000000"
max_order_quantity = "1000000"
[defaults.strategy]
max_position_quantity = "2000000"
max_position_delta = "2000000"
max_position_gamma = "100000"
max_active_intents = 50
max_intraday_drawdown = "250000"
[account]
min_margin_headroom = "0.10"
"""
    )
)
HEALTHY = AccountFacts(
    live=True,
    net_liquidation=Decimal("1000000"),
    excess_liquidity=Decimal("900000"),
    available_funds=Decimal("800000"),
)


def order(
    side: Side = Side.BUY, qty: str = "100", price: str | None = "500", mult: int = 1
) -> OrderFacts:
    return OrderFacts(
        "Momentum_EQ", "SPY", side, Decimal(qty), "sig-1",
        None if price is None else Decimal(price), mult,
    )  # fmt: skip


def check(o: OrderFacts, account: AccountFacts | None) -> Breach | None:
    return check_order(o, LIMITS, MarketFacts(account=account))


def test_an_order_within_the_headroom_passes_and_no_account_facts_skips_the_gate() -> None:
    assert check(order(), HEALTHY) is None
    assert check(order(), None) is None


def test_the_orders_own_margin_may_not_eat_into_the_floor() -> None:
    # 2,800 × 500 × 0.5 = 700,000 leaves 100,000 = the floor (10 % of 1,000,000): allowed.
    assert check(order(qty="2800"), HEALTHY) is None
    breach = check(order(qty="2802"), HEALTHY)
    assert breach is not None and breach.reason is RejectReason.MARGIN_HEADROOM
    assert breach.numbers["order_margin"] == "700500.0"
    assert breach.numbers["floor"] == "100000.00"
    # An option pays its whole premium: 10 contracts × 2.50 × 100 = 2,500.
    option = check(order(qty="2880", price="2.50", mult=100), HEALTHY)
    assert option is not None and option.reason is RejectReason.MARGIN_HEADROOM
    assert check(order(qty="2800", price="2.50", mult=100), HEALTHY) is None


def test_too_little_excess_liquidity_refuses_every_opening_order_with_the_numbers() -> None:
    thin = AccountFacts(
        live=True,
        net_liquidation=Decimal("1000000"),
        excess_liquidity=Decimal("99999.99"),
        available_funds=Decimal("50000"),
    )
    for o in (order(), order(price=None), order(Side.SELL_SHORT)):
        breach = check(o, thin)
        assert breach is not None and breach.reason is RejectReason.MARGIN_HEADROOM
        assert breach.numbers["excess_liquidity"] == "99999.99"
        assert "below the headroom floor 100000.00" in breach.message


@pytest.mark.parametrize(
    "account",
    [
        AccountFacts(live=False, why="the risk connection (client 2) is DISCONNECTED"),
        AccountFacts(live=True, net_liquidation=None, excess_liquidity=Decimal(1)),
        AccountFacts(live=True, net_liquidation=Decimal(0), excess_liquidity=Decimal(0)),
    ],
)
def test_unknown_figures_fail_closed_for_openings_but_never_hold_an_exit(
    account: AccountFacts,
) -> None:
    for side in (Side.BUY, Side.SELL_SHORT):
        breach = check(order(side), account)
        assert breach is not None and breach.reason is RejectReason.ACCOUNT_DATA_UNAVAILABLE
    for side in (Side.SELL, Side.BUY_TO_COVER):
        assert check(order(side), account) is None
