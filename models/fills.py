"""Pure fill math: execution identity and corrections, cumulative quantity, positions, fees.

IB identifies an execution by `execId`, e.g. `0000e0d5.6581b1f5.01.01`. A correction arrives as
a new execId with the same base and a higher last suffix (`….01.02`) and *replaces* the earlier
execution; it never adds to it (NOTES.md). Everything here works on the *effective* set of fills
(the highest suffix per base), sorted by (executed_at, execution_id), so the same set of
executions always gives the same figures, whatever order they arrived in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from enum import StrEnum
from functools import wraps
from typing import ParamSpec, TypeVar

ZERO = Decimal(0)
ONE = Decimal(1)
# Average prices are quantized to 10 places (the scale of the ledger's price figures); sums and
# products stay exact.
PRICE_QUANTUM = Decimal("1E-10")
CENT = Decimal("0.01")

# Python's default context keeps 28 significant digits and rounds silently past that (19-digit
# quantity x 13-digit price difference already does). Every figure here is computed in this
# wider context instead, so sums and products are exact for any quantity and price a ledger
# can hold; the only rounding is the explicit quantization of averages and fees.
EXACT_CONTEXT = Context(
    prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def exact(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run `fn` in `EXACT_CONTEXT` (a decorator for every function doing money arithmetic)."""

    @wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with localcontext(EXACT_CONTEXT):
            return fn(*args, **kwargs)

    return run


class Side(StrEnum):
    """The one wire direction: of a fill (IB's BOT/SLD are translated on entry), of an order's
    action, of a child order (`models.child_orders.Action` is this enum). An intent's side
    (`models.intent.Side`: BUY_TO_COVER, SELL_SHORT too) says what the producer means, and maps
    onto this with `wire_action`."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def buy(self) -> bool:
        return self is Side.BUY

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


IB_SIDES: dict[str, Side] = {"BOT": Side.BUY, "SLD": Side.SELL, "BUY": Side.BUY, "SELL": Side.SELL}


class ExecIdError(ValueError):
    """An execId that cannot identify an execution (empty, or blank)."""

    code = "BAD_EXEC_ID"


@dataclass(frozen=True, slots=True, order=True)
class ExecKey:
    """The identity of an execution across corrections: `base` and correction `seq`."""

    base: str
    seq: int


def parse_exec_id(exec_id: str) -> ExecKey:
    """Split an execId into its base and correction number.

    The base is everything up to the last `.`; the suffix after it is the correction number (hex
    digits in IB's format). An execId without a hex suffix is its own base with number 0.

    Raises
    ------
    ExecIdError
        For an empty or blank execId.
    """
    text = exec_id.strip()
    if not text:
        raise ExecIdError("empty execId")
    base, dot, suffix = text.rpartition(".")
    if dot and base and suffix and all(c in "0123456789abcdefABCDEF" for c in suffix):
        return ExecKey(base, int(suffix, 16))
    return ExecKey(text, 0)


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One execution as the ledger keeps it (price per unit; `multiplier` per contract)."""

    execution_id: str
    side: Side
    shares: Decimal
    price: Decimal
    executed_at: datetime
    multiplier: Decimal = ONE
    commission: Decimal | None = None

    @property
    def key(self) -> ExecKey:
        return parse_exec_id(self.execution_id)

    @property
    @exact
    def signed_shares(self) -> Decimal:
        return self.shares if self.side is Side.BUY else -self.shares


def _sort_key(fill: FillRecord) -> tuple[datetime, str]:
    return (fill.executed_at, fill.execution_id)


def effective_fills(fills: Iterable[FillRecord]) -> list[FillRecord]:
    """Keep the latest correction of each execution; sorted by (executed_at, execution_id)."""
    latest: dict[str, FillRecord] = {}
    for fill in fills:
        key = fill.key
        current = latest.get(key.base)
        if current is None or current.key.seq < key.seq:
            latest[key.base] = fill
    return sorted(latest.values(), key=_sort_key)


def supersession(execution_ids: Iterable[str]) -> dict[str, str | None]:
    """Map each execution id to the id that replaces it (None for the effective one)."""
    ids = set(execution_ids)
    winner: dict[str, ExecKey] = {}
    for exec_id in ids:
        key = parse_exec_id(exec_id)
        best = winner.get(key.base)
        if best is None or best.seq < key.seq:
            winner[key.base] = key
    by_key = {parse_exec_id(exec_id): exec_id for exec_id in ids}
    result: dict[str, str | None] = {}
    for exec_id in ids:
        key = parse_exec_id(exec_id)
        effective = by_key[winner[key.base]]
        result[exec_id] = None if effective == exec_id else effective
    return result


@exact
def average(total_value: Decimal, quantity: Decimal) -> Decimal | None:
    """Average price, quantized to `PRICE_QUANTUM` (None for a zero quantity)."""
    if quantity == ZERO:
        return None
    return (total_value / quantity).quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)


@exact
def cumulative(fills: Iterable[FillRecord]) -> tuple[Decimal, Decimal | None]:
    """Cumulative quantity and volume-weighted average price of the effective fills."""
    effective = effective_fills(fills)
    quantity = sum((f.shares for f in effective), ZERO)
    value = sum((f.shares * f.price for f in effective), ZERO)
    return quantity, average(value, quantity)


@dataclass(frozen=True, slots=True)
class PositionState:
    """A position by average cost: signed quantity, cost per unit, realized P&L, fees.

    `realized_pl` is gross (price moves only, times the multiplier); fees are kept apart in
    `commissions`, so net = realized + unrealized - commissions.
    """

    quantity: Decimal = ZERO
    avg_price: Decimal | None = None
    realized_pl: Decimal = ZERO
    commissions: Decimal = ZERO
    multiplier: Decimal = ONE

    @exact
    def unrealized_at(self, mark: Decimal) -> Decimal:
        """Unrealized P&L of the open quantity at `mark`."""
        if self.avg_price is None or self.quantity == ZERO:
            return ZERO
        return (mark - self.avg_price) * self.quantity * self.multiplier


@exact
def apply_fill(position: PositionState, fill: FillRecord) -> PositionState:
    """Fold one fill into a position by the average-cost method."""
    qty = position.quantity
    avg = position.avg_price
    realized = position.realized_pl
    delta = fill.signed_shares
    multiplier = fill.multiplier
    fees = position.commissions + (fill.commission or ZERO)
    if delta == ZERO:
        return PositionState(qty, avg, realized, fees, multiplier)
    if qty == ZERO or (qty > ZERO) == (delta > ZERO):
        # Opening or adding: the average cost moves toward the fill price.
        new_qty = qty + delta
        cost = abs(qty) * (avg or ZERO) + abs(delta) * fill.price
        return PositionState(new_qty, average(cost, abs(new_qty)), realized, fees, multiplier)
    # Reducing, closing or flipping: realize against the average cost.
    closing = min(abs(delta), abs(qty))
    direction = ONE if qty > ZERO else -ONE
    realized += closing * (fill.price - (avg or ZERO)) * direction * multiplier
    new_qty = qty + delta
    if new_qty == ZERO:
        return PositionState(ZERO, None, realized, fees, multiplier)
    if (new_qty > ZERO) == (qty > ZERO):
        return PositionState(new_qty, avg, realized, fees, multiplier)
    # Flipped: the rest opens a new position at the fill price.
    return PositionState(new_qty, fill.price, realized, fees, multiplier)


@exact
def position_from_fills(fills: Iterable[FillRecord]) -> PositionState:
    """The position implied by a set of fills (corrections applied, time order)."""
    position = PositionState()
    for fill in effective_fills(fills):
        position = apply_fill(position, fill)
    return position


# IB Pro fixed-rate schedule, used only until the commissionReport arrives (NOTES.md).
STOCK_PER_SHARE = Decimal("0.005")
STOCK_MINIMUM = Decimal("1.00")
STOCK_MAX_PCT = Decimal("0.01")
OPTION_PER_CONTRACT = Decimal("0.65")
OPTION_MINIMUM = Decimal("1.00")


@exact
def estimate_commission(
    sec_type: str | None,
    shares: Decimal,
    price: Decimal,
    multiplier: Decimal = ONE,
) -> Decimal:
    """Estimate IB's commission for one execution (fixed-rate schedule), to the cent.

    Stocks: 0.005 per share, at least 1.00, at most 1% of the trade value. Options (and
    anything else with contracts): 0.65 per contract, at least 1.00.
    """
    if shares == ZERO:
        return ZERO
    if (sec_type or "STK").upper() == "STK":
        fee = max(shares * STOCK_PER_SHARE, STOCK_MINIMUM)
        cap = shares * price * multiplier * STOCK_MAX_PCT
        if cap > ZERO:
            fee = min(fee, max(cap, CENT))
    else:
        fee = max(shares * OPTION_PER_CONTRACT, OPTION_MINIMUM)
    return fee.quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class TieredSchedule:
    """IBKR Pro tiered commissions (the broker's own charge), the estimate's schedule.

    Stocks pay `stock_rate` per share (the rate of the month's volume tier; 0.0035 below
    300,000 shares), at least `stock_minimum`, at most `stock_max_pct` of the trade value (the
    cap wins). Options pay by premium per share: below 0.05 `option_rate_cheap`, below 0.10
    `option_rate_mid`, else `option_rate`, at least `option_minimum`. IB applies the minimum
    once per order; the estimate applies it per execution, since which execution of an order
    arrived first would otherwise change the ledger (the estimate error is recorded when IB's
    report replaces it).
    """

    stock_rate: Decimal = Decimal("0.0035")
    stock_minimum: Decimal = Decimal("0.35")
    stock_max_pct: Decimal = Decimal("0.01")
    option_rate_cheap: Decimal = Decimal("0.25")
    option_rate_mid: Decimal = Decimal("0.50")
    option_rate: Decimal = Decimal("0.65")
    option_minimum: Decimal = Decimal("1.00")


# The month's share volume at which each stock tier starts (IBKR's published US schedule).
STOCK_TIERS: tuple[tuple[int, Decimal], ...] = (
    (0, Decimal("0.0035")),
    (300_000, Decimal("0.0020")),
    (3_000_000, Decimal("0.0015")),
    (20_000_000, Decimal("0.0010")),
    (100_000_000, Decimal("0.0005")),
)


def tiered_schedule(monthly_shares: int = 0) -> TieredSchedule:
    """The tiered schedule for a month's stock volume so far (options keep their first tier)."""
    rate = STOCK_TIERS[0][1]
    for start, tier_rate in STOCK_TIERS:
        if monthly_shares >= start:
            rate = tier_rate
    return TieredSchedule(stock_rate=rate)


@exact
def estimate_tiered(
    schedule: TieredSchedule,
    sec_type: str | None,
    shares: Decimal,
    price: Decimal,
    multiplier: Decimal = ONE,
) -> Decimal:
    """Estimate IB's commission for one execution on the tiered `schedule`, to the cent."""
    qty = abs(shares)
    if qty == ZERO:
        return ZERO
    if (sec_type or "STK").upper() == "STK":
        fee = max(qty * schedule.stock_rate, schedule.stock_minimum)
        cap = qty * price * multiplier * schedule.stock_max_pct
        if cap > ZERO:
            fee = min(fee, max(cap, CENT))
    else:
        premium = abs(price)
        if premium < Decimal("0.05"):
            rate = schedule.option_rate_cheap
        elif premium < Decimal("0.10"):
            rate = schedule.option_rate_mid
        else:
            rate = schedule.option_rate
        fee = max(qty * rate, schedule.option_minimum)
    return fee.quantize(CENT, rounding=ROUND_HALF_EVEN)


def carried_commission(
    execution_id: str, siblings: Iterable[tuple[str, Decimal | None]]
) -> Decimal | None:
    """What a correction is charged until its own report arrives: the commission of the
    execution it replaces (the latest earlier version that has one), as the venue carries it
    over; None for an original, or when no earlier version has a commission yet."""
    seq = parse_exec_id(execution_id).seq
    best: tuple[int, Decimal] | None = None
    for sibling_id, commission in siblings:
        sibling_seq = parse_exec_id(sibling_id).seq
        if commission is None or sibling_seq >= seq:
            continue
        if best is None or sibling_seq > best[0]:
            best = (sibling_seq, commission)
    return None if best is None else best[1]
