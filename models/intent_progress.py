"""Where an intent stands from its children: how much is filled, in flight, and whether it is done.

Pure, from the children's ledger state (`execution_orders`): the orders path sizes each new
child on this (`models.child_orders.Progress`), so a slice never asks for what a working child
may still fill, and decides here when the intent's life ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from models.child_orders import Progress
from models.combos import units_by_legs
from models.intent import IntentStatus
from models.market import slippage_bps
from models.orders import TERMINAL_STATES, WORKING_STATES, OrderState

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class ChildState:
    """One child as the intent's progress needs it."""

    state: OrderState
    quantity: Decimal | None  # None while scheduled (sized when it is sent)
    filled: Decimal
    sent: bool  # it holds an IB order id: it may be at the venue
    avg_price: Decimal | None = None  # of its fills
    reference: Decimal | None = None  # the price its slippage is measured against
    key: str = ""
    # A bracket's exit (stop, profit target): it protects the position, it is not progress
    # toward the intent's quantity, and it keeps working after the intent completes.
    exit: bool = False
    # A combo leg of the legged fallback: its ratio per combo unit (its fills count in units).
    ratio: int | None = None


def entries(children: Iterable[ChildState]) -> list[ChildState]:
    """The children that work toward the intent's quantity (not a bracket's exits)."""
    return [c for c in children if not c.exit]


def filled_of(children: Iterable[ChildState]) -> Decimal:
    """What the intent's entry children filled, together, in the intent's units: a combo's legs
    count the whole combo units they make up together (`models.combos.units_by_legs`)."""
    listed = entries(children)
    whole = sum((c.filled for c in listed if c.ratio is None), ZERO)
    legs = [c for c in listed if c.ratio is not None]
    if not legs:
        return whole
    return whole + units_by_legs([c.filled for c in legs], [c.ratio or 1 for c in legs])


def in_flight_of(children: Iterable[ChildState]) -> Decimal:
    """What sent children may still fill: working, or sent and not yet acknowledged."""
    total = ZERO
    for child in entries(children):
        if child.quantity is None or child.ratio is not None:
            continue
        may_work = child.state in WORKING_STATES or (
            child.sent and child.state in (OrderState.VALIDATED, OrderState.SCHEDULED)
        )
        if may_work:
            total += max(child.quantity - child.filled, ZERO)
    return total


def progress_of(
    children: Iterable[ChildState],
    target: Decimal,
    max_slippage_bps: Decimal,
    reference: Decimal | None = None,
) -> Progress:
    """The progress a new child is sized on: fills plus what is in flight count as done."""
    listed = list(children)
    return Progress(
        filled=filled_of(listed) + in_flight_of(listed),
        target=target,
        reference=reference,
        max_slippage_bps=max_slippage_bps,
    )


def waiting_on(children: Iterable[ChildState], target: Decimal) -> str | None:
    """Why the next child must wait, or None: what is in flight may still fill what is left.

    A sweep's next step, or a TWAP slice, is not sent while an earlier child could still
    complete the intent (an IOC step not yet answered); once that child is done, the next one
    takes whatever it left.
    """
    listed = list(children)
    filled = filled_of(listed)
    in_flight = in_flight_of(listed)
    if filled < target <= filled + in_flight:
        return f"{in_flight} in flight may still fill the {target - filled} left"
    return None


@dataclass(frozen=True, slots=True)
class Ending:
    """How an intent's life ends, and why, in words an operator reads."""

    status: IntentStatus
    reason: str


def outcome_of(children: Iterable[ChildState], target: Decimal) -> Ending | None:
    """COMPLETED when filled to the target; EXPIRED when every child is finished short of it
    (the plan ran out: a sweep's last step, a TWAP's last slice); None while it still works."""
    listed = entries(children)
    filled = filled_of(listed)
    if filled >= target:
        return Ending(IntentStatus.COMPLETED, f"filled {filled} of {target}")
    if listed and all(c.state in TERMINAL_STATES for c in listed):
        return Ending(IntentStatus.EXPIRED, f"plan ended with {filled} of {target} filled")
    return None


def past_good_till(good_till: datetime | None, now: datetime) -> bool:
    """A GTD intent whose time is up (what is left is cancelled, the intent EXPIRED)."""
    return good_till is not None and now >= good_till


def time_up(
    *,
    time_in_force: str | None,
    good_till: datetime | None,
    day_close: datetime | None,
    now: datetime,
) -> str | None:
    """Why an intent's time is up at `now` (session clock), or None while it may still work.

    A GTD intent ends at its `good_till`; a DAY intent at the close of the session it was
    received for (`day_close`: the first regular close after it arrived, early closes included),
    as IB cancels a DAY order then. Other time-in-force values end by their plan, not the clock.
    """
    if past_good_till(good_till, now):
        assert good_till is not None
        return f"good_till {good_till.isoformat()} passed"
    if time_in_force == "DAY" and day_close is not None and now >= day_close:
        return f"DAY intent: the session closed at {day_close.isoformat()}"
    return None


@dataclass(frozen=True, slots=True)
class SlippageBreach:
    """A child filled worse than the intent allows: the rest of the plan is aborted."""

    key: str
    avg_price: Decimal
    reference: Decimal
    slippage_bps: Decimal
    max_slippage_bps: Decimal

    @property
    def reason(self) -> str:
        return (
            f"{self.key} filled at {self.avg_price} vs reference {self.reference}: "
            f"{self.slippage_bps:.2f} bps > {self.max_slippage_bps} bps"
        )


def slippage_breach(
    children: Iterable[ChildState], buy: bool, max_slippage_bps: Decimal | None
) -> SlippageBreach | None:
    """The first filled child whose average price is beyond the intent's slippage limit."""
    if max_slippage_bps is None:
        return None
    for child in entries(children):
        if child.filled <= 0 or child.avg_price is None or child.reference is None:
            continue
        bps = slippage_bps(child.avg_price, child.reference, buy)
        if bps > max_slippage_bps:
            return SlippageBreach(
                child.key, child.avg_price, child.reference, bps, max_slippage_bps
            )
    return None


def average_fill(children: Iterable[ChildState]) -> Decimal | None:
    """The intent's average fill price: its children's averages weighted by what each filled."""
    value = ZERO
    quantity = ZERO
    for child in entries(children):
        if child.filled > 0 and child.avg_price is not None:
            value += child.avg_price * child.filled
            quantity += child.filled
    return None if quantity == 0 else value / quantity
