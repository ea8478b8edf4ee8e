"""Where an intent stands from its children: how much is filled, in flight, and whether it is done.

Pure, from the children's ledger state (`execution_orders`): the orders path sizes each new
child on this (`models.child_orders.Progress`), so a slice never asks for what a working child
may still fill, and decides here when the intent's life ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from models.child_orders import Progress
from models.intent import IntentStatus
from models.orders import TERMINAL_STATES, WORKING_STATES, OrderState

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class ChildState:
    """One child as the intent's progress needs it."""

    state: OrderState
    quantity: Decimal | None  # None while scheduled (sized when it is sent)
    filled: Decimal
    sent: bool  # it holds an IB order id: it may be at the venue


def filled_of(children: Iterable[ChildState]) -> Decimal:
    """What the intent's children filled, together."""
    return sum((c.filled for c in children), ZERO)


def in_flight_of(children: Iterable[ChildState]) -> Decimal:
    """What sent children may still fill: working, or sent and not yet acknowledged."""
    total = ZERO
    for child in children:
        if child.quantity is None:
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


def outcome_of(children: Iterable[ChildState], target: Decimal) -> IntentStatus | None:
    """DONE when filled to the target, or when every child is finished (nothing left to try);
    None while it is still working."""
    listed = list(children)
    if filled_of(listed) >= target:
        return IntentStatus.DONE
    if listed and all(c.state in TERMINAL_STATES for c in listed):
        return IntentStatus.DONE
    return None
