"""Option expiry at the session's close (blueprint §8): what each expiring position books.

At the close of its expiry day an option position settles against the underlying's closing
price the way OCC's exercise by exception does (and as the simulator does): in the money by a
cent or more, a long option is exercised and a short one assigned, the underlying bought or
sold at the strike (contracts x multiplier shares); otherwise it expires worthless.

The booking follows IB's own convention: the option leaves at price 0 and the underlying comes
in at the strike. The value of the exercise therefore sits in the stock position (bought at the
strike, worth the close), and the option's realized P&L is exactly the premium: -premium paid
for a long, +premium received for a short, whether it was exercised or expired. Closing the
option at its intrinsic value *and* taking the stock at the strike would count the intrinsic
value twice; closing it at intrinsic would need the stock at the close price, which IB's
positions (and the reconciliation against them) never show.

The entries are synthetic fills: the ledger's positions are recomputed from their fills
(`models.fills.position_from_fills`), so only a fill survives the next recompute. Their
execution ids are `EXERCISE-…`, `ASSIGN-…` or `EXPIRY-…` (the venue never reports them as
executions: the reconciliation leaves them out), and they carry no commission (IB charges
none on expiry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from models.fills import ZERO, Side, exact

CENT = Decimal("0.01")
# A quote of the underlying is its closing price only if it was taken around the close: from
# shortly before (the last print may precede the bell) to a while after (a late run); outside
# this window the position waits, named, for an operator's price (`epm books settle-expiries`).
CLOSE_QUOTE_BEFORE = timedelta(minutes=5)
CLOSE_QUOTE_AFTER = timedelta(hours=2)
# Every synthetic settlement execution id starts with one of these.
SETTLEMENT_PREFIXES = ("EXERCISE-", "ASSIGN-", "EXPIRY-")


class SettlementKind(StrEnum):
    EXERCISE = "EXERCISE"
    ASSIGN = "ASSIGN"
    EXPIRY = "EXPIRY"


class ExpiryError(ValueError):
    """An option position that cannot be settled as described (bad right, strike, expiry)."""


@dataclass(frozen=True, slots=True)
class OptionPosition:
    """An open option position of one strategy, with the terms settlement needs."""

    con_id: int
    strategy: str
    quantity: Decimal  # signed contracts
    multiplier: Decimal
    right: str  # "C" or "P"
    strike: Decimal
    expiry: date
    underlying_con_id: int | None


@dataclass(frozen=True, slots=True)
class SettlementFill:
    """One synthetic fill the settlement books (in the option or in the underlying)."""

    execution_id: str
    con_id: int
    strategy: str
    side: Side
    shares: Decimal
    price: Decimal
    multiplier: Decimal


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one option position's expiry books: its kind, intrinsic value and fills."""

    key: str
    kind: SettlementKind
    intrinsic: Decimal
    fills: tuple[SettlementFill, ...]


def settlement_key(con_id: int, strategy: str, expiry: date) -> str:
    """The idempotency key of one position's settlement: whatever the close price, a second
    run for the same (contract, strategy, expiry) finds this key and books nothing."""
    return f"SETTLE-{con_id}-{strategy}-{expiry:%Y%m%d}"


def parse_expiry(text: str | None) -> date | None:
    """IB's lastTradeDateOrContractMonth ("20261204") as a date; None for a month-only or
    missing expiry (nothing to settle on a day)."""
    if text is None:
        return None
    digits = text.strip()[:8]
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def is_due(expiry: date, day: date, now: datetime, close_of_day: datetime | None) -> bool:
    """Whether an option expiring on `expiry` settles at `now`, on trading day `day` whose
    regular close is `close_of_day` (None: not a session): an expiry before today settles
    at once (a run was missed), today's only once the close has passed."""
    if expiry < day:
        return True
    if expiry > day or close_of_day is None:
        return False
    return now >= close_of_day


def is_closing_quote(as_of: datetime, close: datetime) -> bool:
    """Whether a quote taken at `as_of` can stand for the closing price of `close`'s session."""
    return close - CLOSE_QUOTE_BEFORE <= as_of <= close + CLOSE_QUOTE_AFTER


def _exec_id(kind: SettlementKind, con_id: int, strategy: str, expiry: date, leg: str) -> str:
    # The trailing ".01" keeps the id out of the correction scheme (`models.fills.parse_exec_id`
    # would otherwise read a hex-looking date as a correction number of a shorter base).
    return f"{kind.value}-{con_id}-{strategy}-{expiry:%Y%m%d}-{leg}.01"


@exact
def settle(position: OptionPosition, underlying_close: Decimal) -> Settlement:
    """The booking of one expiring option position at the underlying's closing price.

    Raises
    ------
    ExpiryError
        For a flat position, a right other than C/P, a negative strike, a non-positive
        multiplier or close price, or an in-the-money option without an underlying.
    """
    right = position.right.upper()[:1]
    if right not in ("C", "P"):
        raise ExpiryError(f"option {position.con_id}: right {position.right!r} is not C or P")
    if position.quantity == ZERO:
        raise ExpiryError(f"option {position.con_id}: the position is flat")
    if position.strike < ZERO or position.multiplier <= ZERO:
        raise ExpiryError(f"option {position.con_id}: strike or multiplier out of range")
    if not underlying_close.is_finite() or underlying_close <= ZERO:
        raise ExpiryError(f"option {position.con_id}: closing price {underlying_close} unusable")
    call = right == "C"
    intrinsic = underlying_close - position.strike if call else position.strike - underlying_close
    long = position.quantity > ZERO
    contracts = abs(position.quantity)
    itm = intrinsic >= CENT
    if itm:
        kind = SettlementKind.EXERCISE if long else SettlementKind.ASSIGN
    else:
        kind = SettlementKind.EXPIRY
    leg_option = SettlementFill(
        execution_id=_exec_id(kind, position.con_id, position.strategy, position.expiry, "OPT"),
        con_id=position.con_id,
        strategy=position.strategy,
        side=Side.SELL if long else Side.BUY,
        shares=contracts,
        price=ZERO,
        multiplier=position.multiplier,
    )
    fills: tuple[SettlementFill, ...] = (leg_option,)
    if itm:
        if position.underlying_con_id is None:
            raise ExpiryError(
                f"option {position.con_id} is in the money but its underlying is unknown"
            )
        # A long call or a short put buys the underlying; a long put or a short call sells it.
        buys = call == long
        fills += (
            SettlementFill(
                execution_id=_exec_id(
                    kind, position.con_id, position.strategy, position.expiry, "UND"
                ),
                con_id=position.underlying_con_id,
                strategy=position.strategy,
                side=Side.BUY if buys else Side.SELL,
                shares=contracts * position.multiplier,
                price=position.strike,
                multiplier=Decimal(1),
            ),
        )
    return Settlement(
        key=settlement_key(position.con_id, position.strategy, position.expiry),
        kind=kind,
        intrinsic=max(intrinsic, ZERO),
        fills=fills,
    )


def is_settlement(execution_id: str) -> bool:
    """Whether an execution id is one of the synthetic settlement fills."""
    return execution_id.startswith(SETTLEMENT_PREFIXES)
