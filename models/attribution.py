"""P&L attributed to signals (blueprint §9.3): who gets each part of a position's figures.

Within one position (contract and strategy) the fills are replayed in the ledger's order (the
effective fills, corrections applied, by time and execId). Each opening fill adds to its
signal's open lots; a reducing fill closes open lots by the strategy's method (`Method`):

- FIFO (the default): oldest lot first, across as many signals as it takes;
- LIFO: newest lot first;
- pro-rata: every signal holding the position gives up a part in proportion to what it holds,
  in whole units (shares, contracts; the finest decimal place of the quantities involved when
  they are fractional), the units left over by the rounding going to the largest remainders
  (ties: the signal that opened first). Each signal holds one lot here.

A fill that flips the position closes every lot (whatever the method) and opens one for its
own signal.

How much each closed piece earns is the average-cost figure the ledger uses, (price - average
cost) x quantity x multiplier, not the lot's own entry price: so the signals' realized P&L adds
up exactly to the position's (`models.fills.position_from_fills`) under every method, and the
method only decides *who* it belongs to. Because the quantity is split in whole units and each
unit earns the same exact figure, nothing needs rounding to the cent and no cent is lost or
made. Fees go to the signal of the fill that paid them; the open quantity each signal still
holds carries its share of the unrealized P&L at the position's average cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from models.fills import ZERO, FillRecord, PositionState, apply_fill, effective_fills, exact
from models.pnl import UNATTRIBUTED_SIGNAL


class Method(StrEnum):
    """How a reducing fill's quantity is taken from the signals holding the position."""

    FIFO = "fifo"
    LIFO = "lifo"
    PRO_RATA = "pro_rata"


class MethodConfigError(ValueError):
    """An attribution setting that names no method, or names a strategy twice."""


def parse_method(text: str) -> Method:
    """A method from its name; case, surrounding blanks and `-` for `_` do not matter.

    Raises
    ------
    MethodConfigError
        When the name is none of fifo, lifo, pro_rata.
    """
    name = text.strip().lower().replace("-", "_")
    try:
        return Method(name)
    except ValueError:
        allowed = ", ".join(m.value for m in Method)
        raise MethodConfigError(f"attribution method {text!r} is not one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class AttributionMethods:
    """The method of each strategy: the named ones, and `default` for every other."""

    default: Method = Method.FIFO
    by_strategy: Mapping[str, Method] = field(default_factory=dict)

    def for_strategy(self, strategy: str) -> Method:
        return self.by_strategy.get(strategy, self.default)


def parse_methods(default: str, per_strategy: str) -> AttributionMethods:
    """The configuration from its text: a default method and `Strategy=method,Other=method`
    (blank entries ignored; strategy names exact, case included).

    Raises
    ------
    MethodConfigError
        For an unknown method, an entry without `=` or a strategy, or a strategy named twice.
    """
    chosen: dict[str, Method] = {}
    for entry in per_strategy.split(","):
        if not entry.strip():
            continue
        strategy, eq, method = entry.partition("=")
        strategy = strategy.strip()
        if not eq or not strategy:
            raise MethodConfigError(f"attribution entry {entry.strip()!r} is not STRATEGY=METHOD")
        if strategy in chosen:
            raise MethodConfigError(f"strategy {strategy!r} is given an attribution twice")
        chosen[strategy] = parse_method(method)
    return AttributionMethods(parse_method(default), chosen)


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


@dataclass(frozen=True, slots=True)
class Lot:
    """Quantity a signal opened and still holds; signed, always on the position's side."""

    signal_id: str
    quantity: Decimal


@dataclass(slots=True)
class Attribution:
    """A position's figures split by signal, with the position they add up to, the method
    that split them and the lots still open (oldest first)."""

    position: PositionState = field(default_factory=PositionState)
    shares: dict[str, SignalShare] = field(default_factory=dict)
    method: Method = Method.FIFO
    lots: list[Lot] = field(default_factory=list)

    def share(self, signal_id: str) -> SignalShare:
        found = self.shares.get(signal_id)
        if found is None:
            found = self.shares[signal_id] = SignalShare(signal_id)
        return found


def _quantum_exponent(values: Iterable[Decimal]) -> int:
    # The finest decimal place among the quantities, never coarser than a whole unit.
    exponent = 0
    for value in values:
        e = value.as_tuple().exponent
        assert isinstance(e, int)  # quantities are finite
        exponent = min(exponent, e)
    return exponent


@exact
def pro_rata_takes(held: Sequence[Decimal], closing: Decimal) -> list[Decimal]:
    """What each holding (unsigned, in order of opening) gives up so that they give up
    `closing` in all, each in proportion to its size: largest remainder in whole units (the
    finest decimal place involved), ties to the earliest. Each take is within one unit of its
    exact proportion and never more than the holding.

    Raises
    ------
    ValueError
        When `closing` is negative or more than the holdings, or a holding is negative.
    """
    if closing < ZERO or any(h < ZERO for h in held):
        raise ValueError("holdings and the quantity closed cannot be negative")
    total = sum(held, ZERO)
    if closing > total:
        raise ValueError(f"cannot close {closing} of {total}")
    if closing == ZERO:
        return [ZERO for _ in held]
    exponent = _quantum_exponent([closing, *held])
    scale = Decimal(10) ** -exponent
    units = [int(h * scale) for h in held]  # exact: every holding is a multiple of the unit
    to_close = int(closing * scale)
    whole = sum(units)
    base = [to_close * u // whole for u in units]
    remainders = [to_close * u % whole for u in units]
    left = to_close - sum(base)
    # The units lost to flooring go to the largest remainders; a remainder is > 0 for at least
    # `left` holdings (they add up to left x whole, each below whole), and floor + 1 of a
    # non-whole proportion never exceeds the holding.
    for i in sorted(range(len(units)), key=lambda i: (-remainders[i], i))[:left]:
        base[i] += 1
    unit = Decimal(1).scaleb(exponent)
    return [Decimal(b) * unit for b in base]


@exact
def close_lots(lots: Sequence[Lot], closing: Decimal, method: Method) -> list[Decimal]:
    """How much (unsigned) each open lot gives up when the position is reduced by `closing`
    (at most the lots' total), by `method`; in the lots' order."""
    held = [abs(lot.quantity) for lot in lots]
    if method is Method.PRO_RATA:
        return pro_rata_takes(held, closing)
    takes = [ZERO for _ in held]
    order = range(len(held)) if method is Method.FIFO else range(len(held) - 1, -1, -1)
    left = closing
    for i in order:
        if left == ZERO:
            break
        takes[i] = min(held[i], left)
        left -= takes[i]
    return takes


def _open(lots: list[Lot], signal: str, delta: Decimal, method: Method) -> None:
    if method is Method.PRO_RATA:
        for i, lot in enumerate(lots):
            if lot.signal_id == signal:
                lots[i] = Lot(signal, lot.quantity + delta)
                return
    lots.append(Lot(signal, delta))


@exact
def attribute(fills: Iterable[SignalFill], method: Method = Method.FIFO) -> Attribution:
    """Split one position's P&L between the signals of its fills by `method`."""
    given = list(fills)
    signal_of = {f.fill.execution_id: f.signal_id or UNATTRIBUTED_SIGNAL for f in given}
    result = Attribution(method=method)
    lots: list[Lot] = []  # open lots, oldest first
    for record in effective_fills(f.fill for f in given):
        signal = signal_of[record.execution_id]
        before = result.position
        after = apply_fill(before, record)
        result.share(signal).fees += record.commission or ZERO
        result.position = after
        delta = record.signed_shares
        if delta == ZERO:
            continue
        qty = before.quantity
        if qty == ZERO or (qty > ZERO) == (delta > ZERO):
            _open(lots, signal, delta, method)
            continue
        closing = min(abs(delta), abs(qty))
        direction = Decimal(1) if qty > ZERO else Decimal(-1)
        per_unit = (record.price - (before.avg_price or ZERO)) * direction * record.multiplier
        takes = close_lots(lots, closing, method)
        kept: list[Lot] = []
        for lot, take in zip(lots, takes, strict=True):
            if take != ZERO:
                result.share(lot.signal_id).realized += take * per_unit
            remaining = abs(lot.quantity) - take
            if remaining != ZERO:
                kept.append(Lot(lot.signal_id, remaining * direction))
        lots = kept
        rest = abs(delta) - closing
        if rest > ZERO:
            lots.append(Lot(signal, rest if delta > ZERO else -rest))
    for lot in lots:
        result.share(lot.signal_id).open_quantity += lot.quantity
    result.lots = lots
    return result
