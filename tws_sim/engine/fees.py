"""Commissions: the market part's IB tiered schedule (`tws_sim.market.commission_for`).

The engine charges per *order*: the commission of an execution is the order's cumulative commission
after it minus what the order was already charged, so IB's per-order minimum and 1 % cap apply
once per order and not once per partial fill. The tier is the month's volume before the order.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from tws_sim.market.commissions import commission_for
from tws_sim.types import Instrument

CommissionFn = Callable[[Instrument, Decimal, Decimal, Decimal], Decimal]


def default_commission_fn() -> CommissionFn:
    """The schedule the venue charges unless a test or drill injects another."""
    return commission_for
