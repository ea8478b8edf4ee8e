"""The paper account: positions with average cost, cash, realized P&L, margin-like summary values.

Realized P&L uses the *average cost* method, as IB reports it through the API (commissionReport's
realizedPNL, reqPnL): a closing fill realizes (fill price - average cost) x closed quantity, and the
average cost of what remains does not change. Average cost includes commissions, like IB's
position avgCost (and is per contract including the multiplier, e.g. 150.0 for a $1.50 option).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)
# Pro-rata shares of a cost basis or a commission are rounded here, so that every other step is an
# exact Decimal addition and cash + cost basis moves by exactly the realized P&L.
_PRORATA = Decimal("1e-12")


@dataclass(slots=True)
class Position:
    """One con_id's position; `cost` is the signed total cost basis (qty x avg cost)."""

    con_id: int
    multiplier: int
    qty: Decimal = ZERO
    cost: Decimal = ZERO
    realized: Decimal = ZERO

    @property
    def avg_cost(self) -> Decimal:
        return self.cost / self.qty if self.qty else ZERO


@dataclass(slots=True)
class Account:
    """Cash, positions and realized P&L, changed only by `apply_fill`."""

    starting_cash: Decimal
    cash: Decimal = ZERO
    realized: Decimal = ZERO
    commissions: Decimal = ZERO
    positions: dict[int, Position] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.cash:
            self.cash = self.starting_cash

    def apply_fill(
        self,
        con_id: int,
        multiplier: int,
        buy: bool,
        shares: Decimal,
        price: Decimal,
        commission: Decimal,
    ) -> Decimal | None:
        """Book one execution; return the realized P&L it produced (None when it only opened)."""
        pos = self.positions.get(con_id)
        if pos is None:
            pos = self.positions[con_id] = Position(con_id, multiplier)
        signed = shares if buy else -shares
        unit = price * multiplier
        self.cash -= signed * unit + commission
        self.commissions += commission
        if pos.qty == 0 or (pos.qty > 0) == buy:
            pos.cost += signed * unit + commission
            pos.qty += signed
            return None
        closing = min(shares, abs(pos.qty))
        opening = shares - closing
        close_comm = (
            commission if not opening else (commission * closing / shares).quantize(_PRORATA)
        )
        removed = (
            pos.cost
            if closing == abs(pos.qty)
            else (pos.cost * closing / abs(pos.qty)).quantize(_PRORATA)
        )
        pos_sign = 1 if pos.qty > 0 else -1
        realized = pos_sign * unit * closing - removed - close_comm
        pos.cost -= removed
        pos.qty += closing if buy else -closing
        if pos.qty == 0:
            pos.cost = ZERO
        if opening:
            pos.qty += opening if buy else -opening
            pos.cost = (opening if buy else -opening) * unit + (commission - close_comm)
        pos.realized += realized
        self.realized += realized
        return realized

    def unrealized(self, marks: dict[int, Decimal]) -> Decimal:
        """Unrealized P&L at `marks` (con_id -> price per unit, before multiplier)."""
        total = ZERO
        for con_id, pos in self.positions.items():
            if pos.qty:
                mark = marks.get(con_id)
                if mark is not None:
                    total += mark * pos.multiplier * pos.qty - pos.cost
        return total
