"""Structural replace (§5.3): which changes IB can modify in place, and when the new order may go.

IB modifies a working order in place only for its price and size: a new order type, time in
force or route is a different order, which must be cancelled and placed again under a fresh id.
The old and the new are never both working: the replacement waits until the venue confirms the
cancel, then asks for what the old one did not fill, so a fill that raced the cancel is counted
once (the larger of the executions booked and IB's own cumulative count: one may lag the other).

A side change is refused rather than replaced: a child's side is its intent's, so flipping it
would trade against the intent; the operator cancels the intent and sends a new one instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from models.orders import TERMINAL_STATES, OrderState

ZERO = Decimal(0)

# `execution_orders.parent_link` of a replacement; `parent_order_id` is the order it replaces.
REPLACES = "replaces"

# What the replace command accepts; IB's other types need fields the command does not carry.
ORDER_TYPES = frozenset({"LMT", "MKT"})
TIFS = frozenset({"DAY", "IOC", "GTC"})
# The states in which an order may still be at the venue and can be replaced.
REPLACEABLE = frozenset({OrderState.PLACED, OrderState.PARTIAL_FILLED})


@dataclass(frozen=True, slots=True)
class Terms:
    """What a working order is, as far as a replace can change it."""

    action: str
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None
    tif: str
    route: str


@dataclass(frozen=True, slots=True)
class Changes:
    """What the operator asks for; `None` keeps the order's own value."""

    order_type: str | None = None
    limit_price: Decimal | None = None
    tif: str | None = None
    route: str | None = None
    quantity: Decimal | None = None
    action: str | None = None


@dataclass(frozen=True, slots=True)
class Modify:
    """Price and/or size only: modified in place under the same IB order id."""

    terms: Terms


@dataclass(frozen=True, slots=True)
class Structural:
    """Cancel the order, then place `terms` (its quantity the total wanted) under a fresh id."""

    terms: Terms
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    """The request cannot be carried out: a code and words an operator reads."""

    code: str
    message: str


def classify(
    current: Terms, state: OrderState, filled: Decimal, changes: Changes
) -> Modify | Structural | Refused:
    """Decide how `changes` reach the venue, or why they cannot."""
    if state not in REPLACEABLE:
        return Refused("NOT_WORKING", f"the order is {state.value}, not working at the venue")
    if changes.action is not None and changes.action != current.action:
        return Refused(
            "SIDE_CHANGE",
            "a child's side is its intent's: cancel the intent and send a new one",
        )
    if changes.order_type is not None and changes.order_type not in ORDER_TYPES:
        return Refused("ORDER_TYPE", f"order type {changes.order_type!r} is not one of LMT, MKT")
    if changes.tif is not None and changes.tif not in TIFS:
        return Refused("TIF", f"time in force {changes.tif!r} is not one of DAY, IOC, GTC")
    if changes.limit_price is not None and changes.limit_price <= ZERO:
        return Refused("LIMIT_PRICE", f"limit price {changes.limit_price} is not positive")
    if changes.quantity is not None and changes.quantity <= filled:
        return Refused(
            "QUANTITY",
            f"quantity {changes.quantity} is not above the {filled} already filled",
        )
    order_type = changes.order_type or current.order_type
    limit = changes.limit_price if changes.limit_price is not None else current.limit_price
    if order_type == "MKT":
        if changes.limit_price is not None:
            return Refused("LIMIT_PRICE", "a market order takes no limit price")
        limit = None
    elif limit is None:
        return Refused("LIMIT_PRICE", "a limit order needs --limit")
    wanted = replace(
        current,
        order_type=order_type,
        limit_price=limit,
        tif=changes.tif or current.tif,
        route=changes.route or current.route,
        quantity=changes.quantity if changes.quantity is not None else current.quantity,
    )
    structural = tuple(
        name
        for name in ("order_type", "tif", "route")
        if getattr(wanted, name) != getattr(current, name)
    )
    if structural:
        return Structural(wanted, structural)
    if wanted == current:
        return Refused("NO_CHANGE", "the order already has these terms")
    return Modify(wanted)


@dataclass(frozen=True, slots=True)
class Wait:
    """The old order may still be working: the replacement is not sent yet."""

    reason: str


@dataclass(frozen=True, slots=True)
class Send:
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class Drop:
    """Nothing is left for the replacement (the old order filled before its cancel)."""

    reason: str


def replacement_gate(
    old_state: OrderState, total: Decimal, filled: Decimal, ib_filled: Decimal | None
) -> Wait | Send | Drop:
    """When and how much the replacement may ask for, given where the old order stands.

    Only a terminal old order is safe: until the venue confirms the cancel it may still fill.
    `filled` is the executions the ledger booked, `ib_filled` IB's cumulative count from
    orderStatus; the larger counts, since either may arrive first.
    """
    done = max(filled, ib_filled or ZERO)
    if old_state not in TERMINAL_STATES:
        return Wait(f"waiting for the venue to confirm the cancel ({old_state.value})")
    left = total - done
    if left <= ZERO:
        return Drop(f"the replaced order filled {done} of {total} before its cancel")
    return Send(left)
