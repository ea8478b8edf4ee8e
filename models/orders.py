"""The order state machine of blueprint §5.1: an explicit transition table, applied monotonically.

States run VALIDATED → SCHEDULED → PLACED → PARTIAL_FILLED → FILLED → CLOSED, with REJECTED and
CANCEL_REQUESTED → CANCELLED on the side. `apply(order, event)` looks the pair up in
`TRANSITIONS` and returns a `Transition` holding the new frozen order and `applied`:

- IB is the venue's truth, so an IB-originated event is never illegal: at worst it is *late*
  (a `Submitted` after `Filled`) or a *duplicate*, and is recorded without moving the order.
- Our own commands in a state where they make no sense (scheduling a sent order, closing a
  working one) are bugs: `apply` raises `InvalidTransition`.
- Filled quantity is truth: whatever the state, a cumulative quantity that reaches the target
  makes the order FILLED (a fill that raced a cancel or a reject wins), and a partial fill after
  a terminal state is recorded on the order without reviving it. A fill event whose cumulative
  quantity is zero is no progress and moves no state.

Monotonicity: every transition except CANCEL_REJECTED moves up the order given by `STATE_RANK`
(V < S < P < PF < CR < C < R < F < CL), and the IB status kept on the order moves up
`IB_STATUS_RANK`. The outcome of a set of IB callbacks is therefore the same in whatever order
they arrive and however often each is repeated, which is what lets the ledger run with late acks
and redelivered tasks. CANCEL_REJECTED (IB error 161/10148: the cancel failed) is the one
deliberate step back, from CANCEL_REQUESTED to PLACED or PARTIAL_FILLED.

The guarantee holds for one target. A modification changes the target (the venue's newest
openOrder view), and "complete" is only meaningful against it: 100 filled of a target of 100
is FILLED, of 150 (the same order, upsized) it is not. So when the target changes,
`needs_rederive` tells whether the state still agrees with it, and `rederive` recomputes the
order from its recorded facts under the new target instead of keeping a FILLED latched against
the old one (or, for a downsized order, missing the completion). That is not a transition of the
table, and the only way an order leaves FILLED (CLOSED is never re-derived); IB's own orderStatus
"Filled" with remaining 0 is among the facts and keeps the order FILLED under any target. With
it, the order is a function of the set of facts (newest target, cumulative fills, IB statuses
and errors, our own commands), whatever their arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from models.ib_codes import IbCodeClass, classify

ZERO = Decimal(0)


class OrderState(StrEnum):
    """Blueprint §5.1 states, as stored in `execution_orders.state`."""

    VALIDATED = "VALIDATED"
    SCHEDULED = "SCHEDULED"
    PLACED = "PLACED"
    PARTIAL_FILLED = "PARTIAL_FILLED"
    FILLED = "FILLED"
    CLOSED = "CLOSED"
    REJECTED = "REJECTED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCELLED = "CANCELLED"


class OrderEventType(StrEnum):
    """What happened to an order; stored in `order_events.event_type`."""

    # Ours: a slice got a due time / the bridge put placeOrder on the socket / we asked to
    # cancel / post-trade work is done.
    SCHEDULED = "SCHEDULED"
    PLACED = "PLACED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CLOSED = "CLOSED"
    # IB acknowledgements (orderStatus PendingSubmit/ApiPending, PreSubmitted, Submitted).
    PENDING_SUBMIT = "PENDING_SUBMIT"
    PRE_SUBMITTED = "PRE_SUBMITTED"
    SUBMITTED = "SUBMITTED"
    # Fills, by cumulative quantity against the target (execDetails or orderStatus).
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    # Cancel lifecycle at IB: PendingCancel; Cancelled/ApiCancelled/error 202; error 161/10148.
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELLED = "CANCELLED"
    CANCEL_REJECTED = "CANCEL_REJECTED"
    # Inactive, a reject error code, or our own pre-trade risk rejection.
    REJECTED = "REJECTED"


S = OrderState
E = OrderEventType

TERMINAL_STATES = frozenset({S.FILLED, S.CLOSED, S.REJECTED, S.CANCELLED})
# Orders that may still trade at IB (and so still count against limits).
WORKING_STATES = frozenset({S.PLACED, S.PARTIAL_FILLED, S.CANCEL_REQUESTED})
# Events that only IB produces; these are never illegal.
IB_EVENTS = frozenset(
    {
        E.PENDING_SUBMIT,
        E.PRE_SUBMITTED,
        E.SUBMITTED,
        E.PARTIALLY_FILLED,
        E.FILLED,
        E.PENDING_CANCEL,
        E.CANCELLED,
        E.CANCEL_REJECTED,
        E.REJECTED,
    }
)
FILL_EVENTS = frozenset({E.PARTIALLY_FILLED, E.FILLED})
ACK_EVENTS = frozenset({E.PENDING_SUBMIT, E.PRE_SUBMITTED, E.SUBMITTED})

# Progress order used for monotonicity; a transition never lowers it (CANCEL_REJECTED aside).
STATE_RANK: dict[OrderState, int] = {
    S.VALIDATED: 0,
    S.SCHEDULED: 1,
    S.PLACED: 2,
    S.PARTIAL_FILLED: 3,
    S.CANCEL_REQUESTED: 4,
    S.CANCELLED: 5,
    # A rejection explains a cancel: IB reports a reject as error 201 plus status Cancelled,
    # in either order, and the order must end REJECTED both ways.
    S.REJECTED: 6,
    S.FILLED: 7,
    S.CLOSED: 8,
}

# Rank of the IB status kept in `last_ib_status`: a lower-ranked status arriving later is late.
IB_STATUS_RANK: dict[str, int] = {
    "ApiPending": 1,
    "PendingSubmit": 2,
    "PreSubmitted": 3,
    "Submitted": 4,
    "PendingCancel": 5,
    "ApiCancelled": 6,
    "Cancelled": 7,
    "Inactive": 8,
    "Filled": 9,
}

# orderStatus strings → events (IB's own spelling, "Cancelled" with two l's).
IB_STATUS_EVENTS: dict[str, OrderEventType] = {
    "ApiPending": E.PENDING_SUBMIT,
    "PendingSubmit": E.PENDING_SUBMIT,
    "PreSubmitted": E.PRE_SUBMITTED,
    "Submitted": E.SUBMITTED,
    "PendingCancel": E.PENDING_CANCEL,
    "ApiCancelled": E.CANCELLED,
    "Cancelled": E.CANCELLED,
    "Filled": E.FILLED,
    # Inactive: IB will not work the order (rejected, or cannot be routed); the reason arrives
    # separately as an error() code.
    "Inactive": E.REJECTED,
}

# Error-code classes that speak about an order → the event they mean.
IB_ERROR_EVENTS: dict[IbCodeClass, OrderEventType] = {
    IbCodeClass.ORDER_REJECTED: E.REJECTED,
    IbCodeClass.CANCEL_CONFIRMED: E.CANCELLED,
    IbCodeClass.CANCEL_REJECTED: E.CANCEL_REJECTED,
}


class Outcome(StrEnum):
    """How a table cell treats an event (besides naming the next state)."""

    MOVE = "MOVE"  # go to the cell's state (which may be the current one: fields update)
    LATE = "LATE"  # recorded, not applied: the order is already past this event
    BACK_TO_WORKING = "BACK_TO_WORKING"  # CANCEL_REJECTED: PLACED or PARTIAL_FILLED by quantity


@dataclass(frozen=True, slots=True)
class Rule:
    """One cell of the transition table."""

    outcome: Outcome
    to: OrderState | None = None
    note: str = ""


def _move(to: OrderState, note: str = "") -> Rule:
    return Rule(Outcome.MOVE, to, note)


def _late(note: str) -> Rule:
    return Rule(Outcome.LATE, None, note)


_ACK_ROWS: dict[OrderState, Rule] = {
    # The ack can overtake our own PLACED record (two ledger tasks on two workers): IB knowing
    # the order proves it was placed.
    S.VALIDATED: _move(S.PLACED, "IB ack overtook our PLACED record"),
    S.SCHEDULED: _move(S.PLACED, "IB ack overtook our PLACED record"),
    S.PLACED: _move(S.PLACED),
    S.PARTIAL_FILLED: _move(S.PARTIAL_FILLED),
    S.CANCEL_REQUESTED: _late("ack after a cancel was requested"),
    S.CANCELLED: _late("ack after cancel"),
    S.REJECTED: _late("ack after reject"),
    S.FILLED: _late("ack after fill"),
    S.CLOSED: _late("ack after close"),
}

# (state, event) → rule. A pair that is absent is illegal (InvalidTransition).
TRANSITIONS: dict[tuple[OrderState, OrderEventType], Rule] = {
    # SCHEDULED (ours): only an order that was never sent can be scheduled.
    (S.VALIDATED, E.SCHEDULED): _move(S.SCHEDULED),
    (S.SCHEDULED, E.SCHEDULED): _move(S.SCHEDULED, "duplicate"),
    # PLACED (ours, written when the bridge acknowledged the send).
    (S.VALIDATED, E.PLACED): _move(S.PLACED),
    (S.SCHEDULED, E.PLACED): _move(S.PLACED),
    (S.PLACED, E.PLACED): _move(S.PLACED, "duplicate"),
    # The bridge's ack of the send can arrive after IB's own callbacks for the order.
    (S.PARTIAL_FILLED, E.PLACED): _late("send ack after a fill"),
    (S.CANCEL_REQUESTED, E.PLACED): _late("send ack after a cancel request"),
    (S.CANCELLED, E.PLACED): _late("send ack after cancel"),
    (S.REJECTED, E.PLACED): _late("send ack after reject"),
    (S.FILLED, E.PLACED): _late("send ack after fill"),
    (S.CLOSED, E.PLACED): _late("send ack after close"),
    # IB acks.
    **{(state, event): rule for event in ACK_EVENTS for state, rule in _ACK_ROWS.items()},
    # Partial fill: quantity moves, state moves only up to PARTIAL_FILLED.
    (S.VALIDATED, E.PARTIALLY_FILLED): _move(S.PARTIAL_FILLED, "fill overtook our records"),
    (S.SCHEDULED, E.PARTIALLY_FILLED): _move(S.PARTIAL_FILLED, "fill overtook our records"),
    (S.PLACED, E.PARTIALLY_FILLED): _move(S.PARTIAL_FILLED),
    (S.PARTIAL_FILLED, E.PARTIALLY_FILLED): _move(S.PARTIAL_FILLED),
    # Real world: a fill raced our cancel request; the cancel is still pending.
    (S.CANCEL_REQUESTED, E.PARTIALLY_FILLED): _move(S.CANCEL_REQUESTED, "fill raced the cancel"),
    # Real world: IB reports a partial fill that happened before the cancel took effect; the
    # fill is recorded (quantity is truth), the rest stays cancelled.
    (S.CANCELLED, E.PARTIALLY_FILLED): _move(S.CANCELLED, "fill reported after cancel"),
    (S.REJECTED, E.PARTIALLY_FILLED): _move(S.REJECTED, "fill reported after reject"),
    # After FILLED a lower cumulative only comes from a correction or a late ledger view.
    (S.FILLED, E.PARTIALLY_FILLED): _move(S.FILLED, "quantity updated, stays filled"),
    (S.CLOSED, E.PARTIALLY_FILLED): _move(S.CLOSED, "quantity updated, stays closed"),
    # Complete fill: wins over everything short of CLOSED.
    (S.VALIDATED, E.FILLED): _move(S.FILLED, "fill overtook our records"),
    (S.SCHEDULED, E.FILLED): _move(S.FILLED, "fill overtook our records"),
    (S.PLACED, E.FILLED): _move(S.FILLED),
    (S.PARTIAL_FILLED, E.FILLED): _move(S.FILLED),
    (S.CANCEL_REQUESTED, E.FILLED): _move(S.FILLED, "fill raced the cancel: the fill wins"),
    (S.CANCELLED, E.FILLED): _move(S.FILLED, "fill raced the cancel: the fill wins"),
    (S.REJECTED, E.FILLED): _move(S.FILLED, "filled quantity is truth"),
    (S.FILLED, E.FILLED): _move(S.FILLED),
    (S.CLOSED, E.FILLED): _move(S.CLOSED),
    # CANCEL_REQUESTED (ours); on a finished order it is recorded and must not be sent.
    (S.VALIDATED, E.CANCEL_REQUESTED): _move(S.CANCEL_REQUESTED),
    (S.SCHEDULED, E.CANCEL_REQUESTED): _move(S.CANCEL_REQUESTED),
    (S.PLACED, E.CANCEL_REQUESTED): _move(S.CANCEL_REQUESTED),
    (S.PARTIAL_FILLED, E.CANCEL_REQUESTED): _move(S.CANCEL_REQUESTED),
    (S.CANCEL_REQUESTED, E.CANCEL_REQUESTED): _move(S.CANCEL_REQUESTED, "duplicate"),
    (S.CANCELLED, E.CANCEL_REQUESTED): _late("already cancelled"),
    (S.REJECTED, E.CANCEL_REQUESTED): _late("already rejected"),
    (S.FILLED, E.CANCEL_REQUESTED): _late("already filled"),
    (S.CLOSED, E.CANCEL_REQUESTED): _late("already closed"),
    # PENDING_CANCEL (IB): a cancel is in flight, ours or one made in TWS.
    (S.VALIDATED, E.PENDING_CANCEL): _move(S.CANCEL_REQUESTED, "cancel made outside epm"),
    (S.SCHEDULED, E.PENDING_CANCEL): _move(S.CANCEL_REQUESTED, "cancel made outside epm"),
    (S.PLACED, E.PENDING_CANCEL): _move(S.CANCEL_REQUESTED),
    (S.PARTIAL_FILLED, E.PENDING_CANCEL): _move(S.CANCEL_REQUESTED),
    (S.CANCEL_REQUESTED, E.PENDING_CANCEL): _move(S.CANCEL_REQUESTED),
    (S.CANCELLED, E.PENDING_CANCEL): _late("pending cancel after cancel"),
    (S.REJECTED, E.PENDING_CANCEL): _late("pending cancel after reject"),
    (S.FILLED, E.PENDING_CANCEL): _late("cancel lost the race to the fill"),
    (S.CLOSED, E.PENDING_CANCEL): _late("pending cancel after close"),
    # CANCELLED (IB Cancelled/ApiCancelled/202, or the bridge dropped an unsent command).
    (S.VALIDATED, E.CANCELLED): _move(S.CANCELLED),
    (S.SCHEDULED, E.CANCELLED): _move(S.CANCELLED),
    (S.PLACED, E.CANCELLED): _move(S.CANCELLED, "cancelled by IB or outside epm"),
    (S.PARTIAL_FILLED, E.CANCELLED): _move(S.CANCELLED, "remainder cancelled"),
    (S.CANCEL_REQUESTED, E.CANCELLED): _move(S.CANCELLED),
    (S.CANCELLED, E.CANCELLED): _move(S.CANCELLED, "duplicate"),
    (S.REJECTED, E.CANCELLED): _late("IB follows a reject with status Cancelled"),
    (S.FILLED, E.CANCELLED): _late("cancel lost the race to the fill"),
    (S.CLOSED, E.CANCELLED): _late("cancel after close"),
    # CANCEL_REJECTED (IB 161/10148/...): the order keeps working, or is already done.
    (S.CANCEL_REQUESTED, E.CANCEL_REJECTED): Rule(Outcome.BACK_TO_WORKING, None, "cancel failed"),
    (S.VALIDATED, E.CANCEL_REJECTED): _late("no cancel pending"),
    (S.SCHEDULED, E.CANCEL_REJECTED): _late("no cancel pending"),
    (S.PLACED, E.CANCEL_REJECTED): _late("no cancel pending"),
    (S.PARTIAL_FILLED, E.CANCEL_REJECTED): _late("no cancel pending"),
    (S.CANCELLED, E.CANCEL_REJECTED): _late("already cancelled"),
    (S.REJECTED, E.CANCEL_REJECTED): _late("already rejected"),
    (S.FILLED, E.CANCEL_REJECTED): _late("cancel failed because the order filled"),
    (S.CLOSED, E.CANCEL_REJECTED): _late("already closed"),
    # REJECTED (IB Inactive / reject code, or our pre-trade risk before sending).
    (S.VALIDATED, E.REJECTED): _move(S.REJECTED),
    (S.SCHEDULED, E.REJECTED): _move(S.REJECTED),
    (S.PLACED, E.REJECTED): _move(S.REJECTED),
    (S.PARTIAL_FILLED, E.REJECTED): _move(S.REJECTED, "remainder rejected"),
    (S.CANCEL_REQUESTED, E.REJECTED): _move(S.REJECTED),
    # IB reports a reject as error 201 and status Cancelled, in either order.
    (S.CANCELLED, E.REJECTED): _move(S.REJECTED, "the reject explains the cancel"),
    (S.REJECTED, E.REJECTED): _move(S.REJECTED, "duplicate"),
    (S.FILLED, E.REJECTED): _late("reject after fill"),
    (S.CLOSED, E.REJECTED): _late("reject after close"),
    # CLOSED (ours): post-trade work done on a filled order.
    (S.FILLED, E.CLOSED): _move(S.CLOSED),
    (S.CLOSED, E.CLOSED): _move(S.CLOSED, "duplicate"),
}


class InvalidTransition(Exception):
    """An event of ours arrived in a state where it cannot happen (a bug, not a race)."""

    code = "ILLEGAL_TRANSITION"

    def __init__(self, state: OrderState, event_type: OrderEventType) -> None:
        super().__init__(f"{event_type} is illegal in state {state}")
        self.state = state
        self.event_type = event_type


class UnknownIbStatus(ValueError):
    """An orderStatus string epm has no row for; recorded with this code, never guessed."""

    code = "UNKNOWN_IB_STATUS"


@dataclass(frozen=True, slots=True)
class Order:
    """What the FSM knows about one order; a new instance per applied event.

    `filled_qty` and `avg_fill_price` are the ledger's own figures from the effective set of
    fills (corrections applied); `ib_filled_qty` is the highest cumulative quantity IB reported
    in orderStatus, which can run ahead of the fills we have received. `quantity` (the target)
    is None for an order the ledger first learns of from an execution (placed elsewhere, or
    before a crash): then only IB's "Filled" status, or a later openOrder naming the target,
    can complete it.
    """

    client_order_id: str
    quantity: Decimal | None
    state: OrderState = OrderState.VALIDATED
    filled_qty: Decimal = ZERO
    avg_fill_price: Decimal | None = None
    ib_filled_qty: Decimal = ZERO
    last_ib_status: str | None = None
    reject_code: int | None = None
    reject_reason: str | None = None
    updated_at: datetime | None = None

    @property
    def progress_qty(self) -> Decimal:
        """The most that is known to be filled, from fills or from IB's status."""
        return max(self.filled_qty, self.ib_filled_qty)

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def complete_at(self, quantity: Decimal) -> bool:
        """True when `quantity` reaches the target (never, while the target is unknown)."""
        return self.quantity is not None and quantity >= self.quantity


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An immutable fact about an order: `ts_event` is venue time, `ts_init` is ours.

    Fill events carry the ledger's cumulative `filled_qty`/`avg_fill_price` (recomputed from
    every effective fill, so an execution delivered twice gives the same figures); IB status
    events carry IB's cumulative `ib_filled_qty`.
    """

    type: OrderEventType
    ts_init: datetime
    ts_event: datetime | None = None
    ib_status: str | None = None
    filled_qty: Decimal | None = None
    avg_fill_price: Decimal | None = None
    ib_filled_qty: Decimal | None = None
    code: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of `apply`: the order after the event and whether anything changed.

    `applied` is False for late and duplicate events; the caller still records them
    (`order_events.applied = false`). `note` names the race or reason from the table.
    """

    order: Order
    previous: Order
    event: OrderEvent
    applied: bool
    note: str

    @property
    def state_changed(self) -> bool:
        return self.order.state != self.previous.state


def _effective_type(order: Order, event: OrderEvent, progress: Decimal) -> OrderEventType:
    """Fill events are classified by cumulative quantity against the target."""
    if event.type in FILL_EVENTS or (event.type in ACK_EVENTS and progress > order.progress_qty):
        if event.type == E.FILLED and event.ib_status == "Filled":
            # orderStatus Filled (remaining 0) is IB's word that the order is done, even when
            # our fills or a modified target say otherwise.
            return E.FILLED
        return E.FILLED if order.complete_at(progress) else E.PARTIALLY_FILLED
    return event.type


def _keep_status(current: str | None, incoming: str | None) -> str | None:
    if incoming is None:
        return current
    if current is None:
        return incoming
    if IB_STATUS_RANK.get(incoming, 0) >= IB_STATUS_RANK.get(current, 0):
        return incoming
    return current


def _reject_fields(order: Order, event: OrderEvent) -> tuple[int | None, str | None]:
    if event.code is None and event.reason is None:
        return order.reject_code, order.reject_reason
    if order.reject_code is None and order.reject_reason is None:
        return event.code, event.reason
    # Several reasons for one reject: keep the smallest, so arrival order does not matter.
    mine = (order.reject_code if order.reject_code is not None else 1 << 62, order.reject_reason)
    theirs = (event.code if event.code is not None else 1 << 62, event.reason)
    return min(mine, theirs, key=lambda pair: (pair[0], pair[1] or ""))


def apply(order: Order, event: OrderEvent) -> Transition:
    """Apply `event` to `order` and return the transition (never mutates `order`).

    Raises
    ------
    InvalidTransition
        For one of our own events in a state where it cannot happen.
    """
    filled = event.filled_qty if event.filled_qty is not None else order.filled_qty
    avg = event.avg_fill_price if event.filled_qty is not None else order.avg_fill_price
    ib_filled = max(order.ib_filled_qty, event.ib_filled_qty or ZERO)
    progress = max(filled, ib_filled)
    event_type = _effective_type(order, event, progress)
    rule = TRANSITIONS.get((order.state, event_type))
    if rule is None:
        raise InvalidTransition(order.state, event_type)

    if event_type is E.PARTIALLY_FILLED and progress <= ZERO:
        # Nothing has filled (a fill event rebuilt from no executions, as after adopting a
        # stand-in that had none): no progress, so no move to PARTIAL_FILLED.
        rule = Rule(Outcome.LATE, None, "nothing filled")
    if rule.outcome is Outcome.BACK_TO_WORKING:
        to = S.PARTIAL_FILLED if progress > ZERO else S.PLACED
    elif rule.outcome is Outcome.LATE or rule.to is None:
        # Late: the state stays, but the quantities IB reported still merge (maximum), so the
        # result does not depend on which of two callbacks came first.
        to = order.state
    else:
        to = rule.to
    # Quantity is truth: whatever the table says, a complete fill is FILLED.
    if order.complete_at(progress) and STATE_RANK[to] < STATE_RANK[S.FILLED]:
        to = S.FILLED

    reject_code, reject_reason = order.reject_code, order.reject_reason
    if to in (S.FILLED, S.CLOSED):
        # Nothing of a filled order was rejected; a reject seen before the fill is void.
        reject_code, reject_reason = None, None
    elif event_type is E.REJECTED and rule.outcome is Outcome.MOVE:
        reject_code, reject_reason = _reject_fields(order, event)
    new = replace(
        order,
        state=to,
        filled_qty=filled,
        avg_fill_price=avg,
        ib_filled_qty=ib_filled,
        last_ib_status=_keep_status(order.last_ib_status, event.ib_status),
        reject_code=reject_code,
        reject_reason=reject_reason,
    )
    changed = new != order
    new = replace(new, updated_at=event.ts_init) if changed else order
    if rule.outcome is Outcome.LATE:
        note = rule.note or "late"
    else:
        note = rule.note if changed else (rule.note or "duplicate")
    return Transition(new, order, event, applied=changed, note=note)


def needs_rederive(order: Order) -> bool:
    """True when the state disagrees with the order's (new) target: re-derive it (`rederive`).

    That is a FILLED order whose progress falls short of the target (FILLED was reached against
    an earlier, smaller target, or IB said Filled: the facts decide which), or an order short
    of FILLED whose progress now reaches it (a downsized target). CLOSED is ours and final.
    """
    if order.state is S.CLOSED:
        return False
    return (order.state is S.FILLED) != order.complete_at(order.progress_qty)


def rederive(order: Order, start: OrderState, facts: Iterable[OrderEvent]) -> Order:
    """The order as its recorded `facts` make it under its current target.

    `facts` are every event recorded for the order, in recording order (IB's callbacks rebuilt
    from their payloads, our own commands), ending with a fill event for the cumulative of its
    effective fills; `start` is the state the order had before the first of them. They are
    applied from scratch to `order`'s target, so the result is what the order would be had the
    target been known before any of them. An event of ours that cannot happen in a re-derived
    state is left out (the venue's facts decide, and ours were legal when they were recorded).
    """
    derived = Order(client_order_id=order.client_order_id, quantity=order.quantity, state=start)
    for event in facts:
        try:
            derived = apply(derived, event).order
        except InvalidTransition:
            continue
    return replace(derived, updated_at=order.updated_at)


def same_facts(one: Order, other: Order) -> bool:
    """True when two views of an order agree on everything but `updated_at`."""
    return replace(one, updated_at=None) == replace(other, updated_at=None)


def fill_event(
    order: Order,
    filled_qty: Decimal,
    avg_fill_price: Decimal | None,
    ts_init: datetime,
    ts_event: datetime | None = None,
) -> OrderEvent:
    """Build the fill event for the ledger's cumulative `filled_qty` of `order`."""
    kind = E.FILLED if order.complete_at(filled_qty) else E.PARTIALLY_FILLED
    return OrderEvent(
        type=kind,
        ts_init=ts_init,
        ts_event=ts_event,
        filled_qty=filled_qty,
        avg_fill_price=avg_fill_price,
    )


def event_from_ib_status(
    status: str,
    filled: Decimal,
    remaining: Decimal,
    ts_init: datetime,
    ts_event: datetime | None = None,
) -> OrderEvent:
    """Translate an orderStatus callback into an event.

    A working status (PreSubmitted, Submitted) that reports a filled quantity is a partial fill;
    "Filled" with a remaining quantity (IB does send it mid-way) is a partial fill too.

    Raises
    ------
    UnknownIbStatus
        For a status string not in `IB_STATUS_EVENTS`.
    """
    base = IB_STATUS_EVENTS.get(status)
    if base is None:
        raise UnknownIbStatus(f"unknown IB order status {status!r}")
    kind = base
    working_with_fills = base in ACK_EVENTS and filled > ZERO
    if working_with_fills or (base is E.FILLED and remaining > ZERO):
        kind = E.PARTIALLY_FILLED
    return OrderEvent(
        type=kind,
        ts_init=ts_init,
        ts_event=ts_event,
        ib_status=status,
        ib_filled_qty=filled,
    )


def event_from_ib_error(
    code: int,
    message: str,
    ts_init: datetime,
    ts_event: datetime | None = None,
) -> OrderEvent | None:
    """Translate an error() for an order id into an event; None when it does not move orders."""
    kind = IB_ERROR_EVENTS.get(classify(code).kind)
    if kind is None:
        return None
    return OrderEvent(type=kind, ts_init=ts_init, ts_event=ts_event, code=code, reason=message)
