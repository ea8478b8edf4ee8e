"""P&L attributed to signals (blueprint §9.3): who gets each part of a position's figures.

Within one position (contract and strategy) the fills are replayed in the ledger's order (the
effective fills, corrections applied, by time and execId). Each opening fill adds a lot to its
signal; a reducing fill closes lots FIFO (oldest signal first), across as many signals as it
takes, and a fill that flips the position closes every lot and opens one for its own signal.

How much each closed piece earns is the average-cost figure the ledger uses, (price - average
cost) x quantity x multiplier, not the lot's own entry price: so the signals' realized P&L adds
up exactly to the position's (`models.fills.position_from_fills`), and FIFO only decides *who*
it belongs to. Fees go to the signal of the fill that paid them; the open quantity each signal
still holds carries its share of the unrealized P&L at the position's average cost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from models.fills import ZERO, FillRecord, PositionState, apply_fill, effective_fills, exact
from models.pnl import UNATTRIBUTED_SIGNAL


@dataclass(frozen=True, slots=True)
class SignalFill:
    """A fill of a position with the signal (intent) whose order it filled, if any."""

    fill: FillRecord
    signal_id: str | None


@dataclass(slots=True)
class SignalShare:
    """One signal's part of one position: realized P&L, fees and the quantity it still holds."""

    signal_id: str
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    open_quantity: Decimal = ZERO


@dataclass(slots=True)
class Attribution:
    """A position's figures split by signal, with the position they add up to."""

    position: PositionState = field(default_factory=PositionState)
    shares: dict[str, SignalShare] = field(default_factory=dict)

    def share(self, signal_id: str) -> SignalShare:
        found = self.shares.get(signal_id)
        if found is None:
            found = self.shares[signal_id] = SignalShare(signal_id)
        return found


@dataclass(slots=True)
class _Lot:
    signal_id: str
    quantity: Decimal  # signed


@exact
def attribute(fills: Iterable[SignalFill]) -> Attribution:
    """Split one position's P&L between the signals of its fills (FIFO within the position)."""
    given = list(fills)
    signal_of = {f.fill.execution_id: f.signal_id or UNATTRIBUTED_SIGNAL for f in given}
    result = Attribution()
    lots: deque[_Lot] = deque()  # open lots, oldest first
    for record in effective_fills(f.fill for f in given):
        signal = signal_of[record.execution_id]
        before = result.position
        after = apply_fill(before, record)
        share = result.share(signal)
        share.fees += record.commission or ZERO
        delta = record.signed_shares
        if delta == ZERO:
            result.position = after
            continue
        qty = before.quantity
        if qty == ZERO or (qty > ZERO) == (delta > ZERO):
            lots.append(_Lot(signal, delta))
        else:
            closing = min(abs(delta), abs(qty))
            direction = Decimal(1) if qty > ZERO else Decimal(-1)
            per_unit = (record.price - (before.avg_price or ZERO)) * direction * record.multiplier
            left = closing
            while left > ZERO and lots:
                lot = lots[0]
                take = min(abs(lot.quantity), left)
                result.share(lot.signal_id).realized += take * per_unit
                left -= take
                remaining = abs(lot.quantity) - take
                if remaining == ZERO:
                    lots.popleft()
                else:
                    lot.quantity = remaining * direction
            rest = abs(delta) - closing
            if rest > ZERO:
                lots.append(_Lot(signal, rest if delta > ZERO else -rest))
        result.position = after
    for lot in lots:
        result.share(lot.signal_id).open_quantity += lot.quantity
    return result
