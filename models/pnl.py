"""Pure P&L of the books: unrealized from a mark, net, position state, aggregation.

The ledger owns a position's quantity, average cost, realized P&L (gross, average cost) and
commissions (`models.fills.PositionState`). This module adds what a mark and the rest of the
book say about it:

- `unrealized_pl`: (mark - avg_price) x quantity x multiplier; signed quantity makes a short
  gain when the mark falls. A flat position has none (zero).
- `net`: realized + unrealized - fees - financing (`realized` and `unrealized` are gross of
  fees; financing is what `financing_charges` holds, a cost when positive).
- `position_state`: OPEN, PARTIAL, HEDGED, CLOSING, CLOSED by the rule in its docstring.
- `choose_mark`: which market figure marks a position, and when none may be used (stale).
- `aggregate`: totals per position, strategy or signal, in exact Decimal (never a float, never
  a sum in SQL).

No I/O and no clock: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from models.fills import ONE, ZERO, exact
from models.market import MarketSnapshot

# A mark older than this is stale: it is not used to compute unrealized P&L (the last fresh
# mark stays, tagged `stale_mark`, see `choose_mark`).
MARK_MAX_AGE = timedelta(seconds=30)
# reqPnL / reqPnLSingle differences above this are flagged for manual review (§9.3).
IB_DIFFERENCE_LIMIT = Decimal(10)


class PositionStatus(StrEnum):
    """Blueprint §8.1 position states, as stored in `positions_current.state`."""

    OPEN = "OPEN"
    PARTIAL = "PARTIAL"
    HEDGED = "HEDGED"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class RiskTag(StrEnum):
    """What `positions_current.risk_tags` may hold (a sorted list of these)."""

    SHORT = "short"
    OPTION = "option"
    HEDGED = "hedged"
    NO_MARK = "no_mark"
    STALE_MARK = "stale_mark"
    HALTED = "halted"


@exact
def unrealized(
    quantity: Decimal, avg_price: Decimal | None, multiplier: Decimal, mark: Decimal
) -> Decimal:
    """Unrealized P&L of `quantity` (signed) held at `avg_price`, marked at `mark`."""
    if quantity == ZERO or avg_price is None:
        return ZERO
    return (mark - avg_price) * quantity * multiplier


@exact
def net(
    realized: Decimal, unrealized_pl: Decimal | None, fees: Decimal, financing: Decimal = ZERO
) -> Decimal:
    """realized + unrealized - fees - financing; an unknown unrealized counts as nothing."""
    return realized + (unrealized_pl or ZERO) - fees - financing


@dataclass(frozen=True, slots=True)
class Mark:
    """The price a position is marked at, when it was taken, and whether it is still fresh."""

    price: Decimal
    at: datetime
    stale: bool = False


def choose_mark(
    snapshot: MarketSnapshot | None,
    previous: Mark | None,
    now: datetime,
    max_age: timedelta = MARK_MAX_AGE,
) -> Mark | None:
    """The mark for a position now: the mid of a fresh two-sided quote, else its last trade.

    A snapshot older than `max_age` (or none, or one without a usable price) is not used; the
    previous fresh mark stands instead, flagged `stale` so views say so; with no previous
    mark at all there is none (unrealized unknown, shown as null).
    """
    if snapshot is not None and not snapshot.stale(now, max_age):
        price = snapshot.mid if snapshot.mid is not None else snapshot.last
        if price is not None:
            return Mark(price, snapshot.as_of, False)
    if previous is None:
        return None
    return Mark(previous.price, previous.at, True)


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """A live order (not yet terminal) of the position's strategy in its contract."""

    buy: bool
    remaining: Decimal


def delta_sign(quantity: Decimal, sec_type: str | None, right: str | None) -> int:
    """The sign of a position's delta: long stock/future/call +, long put -, shorts reversed."""
    if quantity == ZERO:
        return 0
    sign = 1 if quantity > ZERO else -1
    if (sec_type or "").upper() in ("OPT", "FOP") and (right or "").upper().startswith("P"):
        return -sign
    return sign


def position_state(
    quantity: Decimal, working: Sequence[WorkingOrder], hedged: bool
) -> PositionStatus:
    """The state of one position. The rule, first match wins:

    1. CLOSED: the quantity is zero (whatever is still working: nothing is held).
    2. CLOSING: a live order would reduce it (sells of a long, buys of a short).
    3. PARTIAL: a live order would add to it (the entry is only partly filled).
    4. HEDGED: the strategy holds an offsetting position (opposite delta sign) in the same
       underlying (`hedged`, see `hedged_keys`).
    5. OPEN: otherwise.
    """
    if quantity == ZERO:
        return PositionStatus.CLOSED
    long = quantity > ZERO
    live = [w for w in working if w.remaining > ZERO]
    if any(w.buy != long for w in live):
        return PositionStatus.CLOSING
    if any(w.buy == long for w in live):
        return PositionStatus.PARTIAL
    if hedged:
        return PositionStatus.HEDGED
    return PositionStatus.OPEN


@dataclass(frozen=True, slots=True)
class Holding:
    """What `hedged_keys` needs of a position: its key, underlying and delta sign."""

    con_id: int
    strategy: str
    underlying: str | None
    sign: int


def hedged_keys(holdings: Iterable[Holding]) -> set[tuple[int, str]]:
    """The (con_id, strategy) keys whose strategy holds the opposite delta sign in the same
    underlying (both sides are hedged: the stock and the put that protects it)."""
    signs: dict[tuple[str, str], set[int]] = {}
    items = [h for h in holdings if h.sign != 0 and h.underlying]
    for h in items:
        signs.setdefault((h.strategy, h.underlying or ""), set()).add(h.sign)
    return {
        (h.con_id, h.strategy) for h in items if len(signs[(h.strategy, h.underlying or "")]) > 1
    }


def risk_tags(
    quantity: Decimal, sec_type: str | None, mark: Mark | None, hedged: bool, halted: bool
) -> list[str]:
    """The position's risk tags, sorted (stable JSON)."""
    tags: set[RiskTag] = set()
    if quantity < ZERO:
        tags.add(RiskTag.SHORT)
    if (sec_type or "").upper() in ("OPT", "FOP"):
        tags.add(RiskTag.OPTION)
    if hedged and quantity != ZERO:
        tags.add(RiskTag.HEDGED)
    if quantity != ZERO and mark is None:
        tags.add(RiskTag.NO_MARK)
    if quantity != ZERO and mark is not None and mark.stale:
        tags.add(RiskTag.STALE_MARK)
    if halted and quantity != ZERO:
        tags.add(RiskTag.HALTED)
    return sorted(t.value for t in tags)


@dataclass(frozen=True, slots=True)
class PnlLine:
    """One row of the books: a position (or a signal's share of one) and its figures.

    `unrealized` is None when the position has never had a usable mark; `net` then counts it as
    nothing (and the row says so through its risk tags / null).
    """

    con_id: int
    strategy: str
    symbol: str | None
    quantity: Decimal
    avg_cost: Decimal | None
    multiplier: Decimal
    realized: Decimal
    unrealized: Decimal | None
    fees: Decimal
    financing: Decimal = ZERO
    signal_id: str | None = None
    mark: Decimal | None = None

    @property
    def net(self) -> Decimal:
        return net(self.realized, self.unrealized, self.fees, self.financing)


def line_for(
    *,
    con_id: int,
    strategy: str,
    symbol: str | None,
    quantity: Decimal,
    avg_cost: Decimal | None,
    multiplier: Decimal | None,
    realized: Decimal,
    fees: Decimal,
    financing: Decimal,
    mark: Decimal | None,
    signal_id: str | None = None,
) -> PnlLine:
    """A line with its unrealized P&L computed from `mark` (none without a mark)."""
    mult = multiplier if multiplier is not None else ONE
    if quantity == ZERO:
        unreal: Decimal | None = ZERO
    elif mark is None:
        unreal = None
    else:
        unreal = unrealized(quantity, avg_cost, mult, mark)
    return PnlLine(
        con_id,
        strategy,
        symbol,
        quantity,
        avg_cost if quantity != ZERO else None,
        mult,
        realized,
        unreal,
        fees,
        financing,
        signal_id,
        mark,
    )


@dataclass(slots=True)
class Totals:
    """Sums of a group of lines; `unrealized` is None only if no line in it had one while
    holding a quantity (unknown stays unknown rather than becoming zero)."""

    key: str
    realized: Decimal = ZERO
    unrealized: Decimal | None = ZERO
    fees: Decimal = ZERO
    financing: Decimal = ZERO
    unknown_marks: int = 0
    lines: int = 0
    members: list[PnlLine] = field(default_factory=list)

    @property
    def net(self) -> Decimal:
        return net(self.realized, self.unrealized, self.fees, self.financing)


@exact
def aggregate(lines: Iterable[PnlLine], key: Callable[[PnlLine], str]) -> list[Totals]:
    """Totals per `key(line)` (strategy, signal id, position), sorted by key.

    An unknown unrealized in a group counts as nothing in its sum and is counted in
    `unknown_marks`, so a strategy total never hides that part of it is unmarked.
    """
    groups: dict[str, Totals] = {}
    for line in lines:
        name = key(line)
        total = groups.get(name)
        if total is None:
            total = groups[name] = Totals(name)
        total.realized += line.realized
        total.fees += line.fees
        total.financing += line.financing
        if line.unrealized is None:
            total.unknown_marks += 1
        else:
            total.unrealized = (total.unrealized or ZERO) + line.unrealized
        total.lines += 1
        total.members.append(line)
    return [groups[k] for k in sorted(groups)]


def by_strategy(line: PnlLine) -> str:
    return line.strategy


def by_position(line: PnlLine) -> str:
    return f"{line.con_id}:{line.strategy}"


UNATTRIBUTED_SIGNAL = "UNATTRIBUTED"


def by_signal(line: PnlLine) -> str:
    return line.signal_id or UNATTRIBUTED_SIGNAL


@dataclass(frozen=True, slots=True)
class IbComparison:
    """Our figure beside IB's for one contract (summed over strategies) and the verdict."""

    con_id: int
    ours: Decimal
    theirs: Decimal

    @property
    @exact
    def difference(self) -> Decimal:
        return self.ours - self.theirs

    @property
    def flagged(self) -> bool:
        return abs(self.difference) > IB_DIFFERENCE_LIMIT


@exact
def compare_with_ib(
    ours: Iterable[tuple[int, Decimal | None]], theirs: dict[int, Decimal]
) -> list[IbComparison]:
    """Our unrealized P&L per contract (summed over strategies) beside reqPnLSingle's; only
    contracts both sides know, and only where ours is known.

    IB folds commissions into its average cost, so its unrealized is lower than ours by the
    commissions of the open lots: a few dollars, well under the $10 limit for ordinary sizes.
    """
    sums: dict[int, Decimal] = {}
    unknown: set[int] = set()
    for con_id, value in ours:
        if value is None:
            unknown.add(con_id)
            continue
        sums[con_id] = sums.get(con_id, ZERO) + value
    return [
        IbComparison(con_id, sums[con_id], theirs[con_id])
        for con_id in sorted(sums)
        if con_id in theirs and con_id not in unknown
    ]
