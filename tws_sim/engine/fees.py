"""Commissions: the market part's `commission_for` (IB tiered), an interim table until it lands.

The engine charges per *order*: the commission of an execution is the order's cumulative commission
after it minus the cumulative before it, so IB's per-order minimum and 1 % cap apply once per order
and not once per partial fill.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

from tws_sim.types import Instrument, SecType

CommissionFn = Callable[[Instrument, Decimal, Decimal, Decimal], Decimal]

_CENT4 = Decimal("0.0001")


def _interim_commission_for(
    instrument: Instrument, shares: Decimal, price: Decimal, monthly_volume: Decimal
) -> Decimal:
    """IB Pro tiered schedule, exchange/clearing fees left out (replaced by the market part's).

    Stocks: $0.0035/share up to 300k shares a month, $0.002 above, min $0.35, max 1 % of value.
    Options: $0.65/contract (premium >= $0.10), $0.50 (0.05-0.10), $0.25 (< 0.05), min $1.00.
    """
    if shares <= 0:
        return Decimal(0)
    if instrument.sec_type == SecType.OPT:
        if price >= Decimal("0.10"):
            rate = Decimal("0.65")
        elif price >= Decimal("0.05"):
            rate = Decimal("0.50")
        else:
            rate = Decimal("0.25")
        fee = max(rate * shares, Decimal("1.00"))
    else:
        rate = Decimal("0.0035") if monthly_volume <= 300_000 else Decimal("0.002")
        fee = max(rate * shares, Decimal("0.35"))
        cap = shares * price * instrument.multiplier / 100
        if cap > 0:
            fee = min(fee, cap)
    return fee.quantize(_CENT4, rounding=ROUND_HALF_UP)


def resolve_commission_fn() -> CommissionFn:
    """Return the market part's `commission_for` when present, else the interim table."""
    try:
        from tws_sim.market.commissions import commission_for
    except ImportError:
        return _interim_commission_for
    return commission_for
