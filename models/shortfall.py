"""Implementation shortfall (blueprint §7.4), the pure part: what executing an intent cost
against the price the desk decided at, split the classic way (Perold).

Prices, for an intent of target quantity Q of which q filled (sign s: +1 buying, -1 selling):

- decision `P_d`: the signal's `target_price` when it gave one, else the arrival price;
- arrival `P_0`: the mid when the intent's first child was priced (the orders path keeps it as
  every child's `reference_price`; the first child goes out from the plan task, milliseconds
  after the intent arrived);
- end `P_e`: the price when the intent ended (the shell's: the live mid, else the last fill);
- the fills, `p_i` × `q_i`, and their fees.

Costs in money (× the contract multiplier), positive = worse for the desk:

- delay = s · q · (P_0 − P_d): the market moving between the decision and the first order;
- execution = s · Σ q_i (p_i − P_0): paying the spread and impact while working;
- opportunity = s · (Q − q) · (P_e − P_d): what the unfilled rest would have made or lost;
- fees: commissions of the fills.

Shortfall = the sum; in basis points of the paper notional Q · P_d. Per child, slippage bps of
its average fill against its own reference (`models.market.slippage_bps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from models.market import BPS, slippage_bps

ZERO = Decimal(0)
ONE = Decimal(1)
# Money figures are kept to 1e-6 of a currency unit, bps to 1e-4: exact, and short to read.
_MONEY = Decimal("0.000001")
_BPS = Decimal("0.0001")


class ShortfallError(ValueError):
    """The figures cannot make a shortfall (no arrival price, a non-positive quantity)."""


@dataclass(frozen=True, slots=True)
class ChildFill:
    """One child of the intent as executed: its fills summed (quantity, average price)."""

    key: str
    order_id: int | None
    filled: Decimal
    avg_price: Decimal | None
    reference: Decimal | None
    fees: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class ChildSlippage:
    key: str
    order_id: int | None
    filled: Decimal
    avg_price: Decimal | None
    reference: Decimal | None
    slippage_bps: Decimal | None
    fees: Decimal


@dataclass(frozen=True, slots=True)
class Shortfall:
    buy: bool
    target_qty: Decimal
    filled_qty: Decimal
    decision_price: Decimal
    arrival_price: Decimal
    end_price: Decimal
    avg_fill_price: Decimal | None
    delay_cost: Decimal
    execution_cost: Decimal
    opportunity_cost: Decimal
    fees: Decimal
    total: Decimal
    total_bps: Decimal
    # Execution against arrival over the filled quantity, in bps (the intent's slippage).
    slippage_bps: Decimal | None
    children: tuple[ChildSlippage, ...]

    def as_details(self) -> dict[str, object]:
        """The decomposition as JSON-safe strings (`execution_metrics.details`)."""
        return {
            "decision_price": str(self.decision_price),
            "arrival_price": str(self.arrival_price),
            "end_price": str(self.end_price),
            "target_qty": str(self.target_qty),
            "delay_cost": str(self.delay_cost),
            "execution_cost": str(self.execution_cost),
            "opportunity_cost": str(self.opportunity_cost),
            "fees": str(self.fees),
            "total": str(self.total),
            "total_bps": str(self.total_bps),
        }


def _money(value: Decimal) -> Decimal:
    return value.quantize(_MONEY)


def _bps(value: Decimal) -> Decimal:
    return value.quantize(_BPS)


def shortfall(
    *,
    buy: bool,
    target_qty: Decimal,
    arrival_price: Decimal | None,
    target_price: Decimal | None,
    end_price: Decimal | None,
    children: Sequence[ChildFill],
    multiplier: Decimal = ONE,
) -> Shortfall:
    """The intent's shortfall and its parts; `end_price` None falls back to the arrival price
    (the unfilled rest then costs only the decision-to-arrival move)."""
    if arrival_price is None or arrival_price <= 0:
        raise ShortfallError("no arrival price: the intent's children were never priced")
    if target_qty <= 0:
        raise ShortfallError(f"target quantity must be positive, got {target_qty}")
    sign = ONE if buy else -ONE
    decision = target_price if target_price is not None and target_price > 0 else arrival_price
    end = end_price if end_price is not None and end_price > 0 else arrival_price
    filled = sum((c.filled for c in children if c.avg_price is not None), ZERO)
    notional = sum((c.filled * c.avg_price for c in children if c.avg_price is not None), ZERO)
    fees = sum((c.fees for c in children), ZERO)
    avg = notional / filled if filled > 0 else None
    delay = sign * filled * (arrival_price - decision) * multiplier
    execution = sign * (notional - filled * arrival_price) * multiplier
    opportunity = sign * max(target_qty - filled, ZERO) * (end - decision) * multiplier
    total = delay + execution + opportunity + fees
    paper = target_qty * decision * multiplier
    slippages = tuple(
        ChildSlippage(
            key=c.key,
            order_id=c.order_id,
            filled=c.filled,
            avg_price=c.avg_price,
            reference=c.reference,
            slippage_bps=None
            if c.avg_price is None or c.reference is None or c.filled <= 0
            else _bps(slippage_bps(c.avg_price, c.reference, buy)),
            fees=c.fees,
        )
        for c in children
    )
    return Shortfall(
        buy=buy,
        target_qty=target_qty,
        filled_qty=filled,
        decision_price=decision,
        arrival_price=arrival_price,
        end_price=end,
        avg_fill_price=None if avg is None else avg.quantize(_MONEY),
        delay_cost=_money(delay),
        execution_cost=_money(execution),
        opportunity_cost=_money(opportunity),
        fees=_money(fees),
        total=_money(total),
        total_bps=_bps(total / paper * BPS) if paper else ZERO,
        slippage_bps=None if avg is None else _bps(slippage_bps(avg, arrival_price, buy)),
        children=slippages,
    )
