"""The order FSM: every (state, event) pair against an independent expected matrix, plus races."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models.ib_codes import IB_CODES, IbCodeClass, classify
from models.orders import (
    IB_STATUS_EVENTS,
    TRANSITIONS,
    InvalidTransition,
    Order,
    OrderEvent,
    OrderEventType,
    OrderState,
    UnknownIbStatus,
    apply,
    event_from_ib_error,
    event_from_ib_status,
    fill_event,
    needs_rederive,
    rederive,
)

T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
QTY = Decimal("100")
S = OrderState
E = OrderEventType

# Expected behaviour, written out by hand from blueprint §5.1 and NOTES.md (not derived from the
# module's table): a state abbreviation = moves there, "-" = recorded but not applied (late),
# "X" = illegal, "W" = back to working (PLACED, or PARTIAL_FILLED when something filled).
_COLUMNS = (
    E.SCHEDULED,
    E.PLACED,
    E.PENDING_SUBMIT,
    E.PRE_SUBMITTED,
    E.SUBMITTED,
    E.PARTIALLY_FILLED,
    E.FILLED,
    E.CANCEL_REQUESTED,
    E.PENDING_CANCEL,
    E.CANCELLED,
    E.CANCEL_REJECTED,
    E.REJECTED,
    E.CLOSED,
)
_MATRIX = """
V   S  P  P  P  P  PF F  CR CR C  -  R  X
S   S  P  P  P  P  PF F  CR CR C  -  R  X
P   X  P  P  P  P  PF F  CR CR C  -  R  X
PF  X  -  PF PF PF PF F  CR CR C  -  R  X
F   X  -  -  -  -  F  F  -  -  -  -  -  CL
CL  X  -  -  -  -  CL CL -  -  -  -  -  CL
R   X  -  -  -  -  R  F  -  -  -  -  R  X
CR  X  -  -  -  -  CR F  CR CR C  W  R  X
C   X  -  -  -  -  C  F  -  -  C  -  R  X
"""
_ABBREV = {
    "V": S.VALIDATED,
    "S": S.SCHEDULED,
    "P": S.PLACED,
    "PF": S.PARTIAL_FILLED,
    "F": S.FILLED,
    "CL": S.CLOSED,
    "R": S.REJECTED,
    "CR": S.CANCEL_REQUESTED,
    "C": S.CANCELLED,
}


def _expected() -> dict[tuple[OrderState, OrderEventType], str]:
    cells: dict[tuple[OrderState, OrderEventType], str] = {}
    for line in _MATRIX.strip().splitlines():
        row, *values = line.split()
        assert len(values) == len(_COLUMNS)
        for event, value in zip(_COLUMNS, values, strict=True):
            cells[(_ABBREV[row], event)] = value
    return cells


EXPECTED = _expected()


def _order_in(state: OrderState) -> Order:
    """An order that reached `state` the usual way (quantities consistent with the state)."""
    filled = {S.PARTIAL_FILLED: Decimal("40"), S.FILLED: QTY, S.CLOSED: QTY}.get(state, Decimal(0))
    return Order(client_order_id="o-1", quantity=QTY, state=state, filled_qty=filled)


def _event(kind: OrderEventType) -> OrderEvent:
    if kind is E.PARTIALLY_FILLED:
        return OrderEvent(kind, ts_init=T0, filled_qty=Decimal("40"), avg_fill_price=Decimal("1"))
    if kind is E.FILLED:
        return OrderEvent(kind, ts_init=T0, filled_qty=QTY, avg_fill_price=Decimal("1"))
    return OrderEvent(kind, ts_init=T0)


def test_expected_matrix_covers_every_state_and_event() -> None:
    assert set(EXPECTED) == {(s, e) for s in OrderState for e in OrderEventType}


@pytest.mark.parametrize(("state", "event"), sorted(EXPECTED), ids=lambda v: str(v))
def test_transition_table_matches_expected_matrix(state: OrderState, event: OrderEventType) -> None:
    expected = EXPECTED[(state, event)]
    order = _order_in(state)
    if expected == "X":
        assert (state, event) not in TRANSITIONS
        with pytest.raises(InvalidTransition) as info:
            apply(order, _event(event))
        assert info.value.state is state
        assert info.value.event_type is event
        assert info.value.code == "ILLEGAL_TRANSITION"
        return
    result = apply(order, _event(event))
    if expected == "-":
        assert result.order.state is state
        assert result.applied is False
        assert result.order == order
    elif expected == "W":
        assert result.order.state is S.PLACED
        assert result.applied is True
    else:
        assert result.order.state is _ABBREV[expected]


def test_illegal_pairs_are_only_our_own_misplaced_commands() -> None:
    illegal = {pair for pair, value in EXPECTED.items() if value == "X"}
    assert {event for _, event in illegal} == {E.SCHEDULED, E.CLOSED}


def test_apply_never_mutates_the_input_order() -> None:
    order = _order_in(S.PLACED)
    apply(order, _event(E.FILLED))
    assert order.state is S.PLACED
    assert order.filled_qty == 0


def test_happy_path_validated_to_closed() -> None:
    order = Order("o-1", QTY)
    steps = [
        OrderEvent(E.SCHEDULED, ts_init=T0),
        OrderEvent(E.PLACED, ts_init=T0),
        event_from_ib_status("PreSubmitted", Decimal(0), QTY, T0),
        event_from_ib_status("Submitted", Decimal(0), QTY, T0),
        fill_event(order, Decimal("30"), Decimal("10.5"), T0),
        fill_event(order, QTY, Decimal("10.6"), T0),
        OrderEvent(E.CLOSED, ts_init=T0),
    ]
    states = []
    for event in steps:
        result = apply(order, event)
        assert result.applied
        order = result.order
        states.append(order.state)
    assert states == [
        S.SCHEDULED,
        S.PLACED,
        S.PLACED,
        S.PLACED,
        S.PARTIAL_FILLED,
        S.FILLED,
        S.CLOSED,
    ]
    assert order.filled_qty == QTY
    assert order.avg_fill_price == Decimal("10.6")
    assert order.last_ib_status == "Submitted"


def test_late_submitted_after_filled_is_recorded_not_applied() -> None:
    order = apply(_order_in(S.PLACED), event_from_ib_status("Filled", QTY, Decimal(0), T0)).order
    assert order.state is S.FILLED
    late = apply(order, event_from_ib_status("Submitted", Decimal(0), QTY, T0 + timedelta(1)))
    assert late.applied is False
    assert late.order is order
    assert late.note == "ack after fill"


def test_duplicate_status_is_a_noop() -> None:
    event = event_from_ib_status("Submitted", Decimal(0), QTY, T0)
    first = apply(_order_in(S.PLACED), event)
    second = apply(first.order, event)
    assert first.applied is True
    assert second.applied is False
    assert second.order == first.order


def test_lower_ranked_ib_status_after_higher_is_late() -> None:
    order = apply(_order_in(S.PLACED), event_from_ib_status("Submitted", 0, QTY, T0)).order
    result = apply(order, event_from_ib_status("PreSubmitted", Decimal(0), QTY, T0))
    assert result.applied is False
    assert result.order.last_ib_status == "Submitted"


def test_fill_after_cancel_requested_keeps_cancel_pending() -> None:
    order = _order_in(S.CANCEL_REQUESTED)
    result = apply(order, fill_event(order, Decimal("40"), Decimal("2"), T0))
    assert result.order.state is S.CANCEL_REQUESTED
    assert result.order.filled_qty == Decimal("40")
    assert result.note == "fill raced the cancel"


def test_complete_fill_after_cancelled_wins() -> None:
    order = _order_in(S.CANCELLED)
    result = apply(order, fill_event(order, QTY, Decimal("2"), T0))
    assert result.order.state is S.FILLED
    assert result.note == "fill raced the cancel: the fill wins"


def test_partial_fill_after_cancelled_is_recorded_and_stays_cancelled() -> None:
    order = _order_in(S.CANCELLED)
    result = apply(order, fill_event(order, Decimal("40"), Decimal("2"), T0))
    assert result.applied is True
    assert result.order.state is S.CANCELLED
    assert result.order.filled_qty == Decimal("40")


def test_reject_and_cancelled_status_end_rejected_in_either_order() -> None:
    reject = event_from_ib_error(201, "Order rejected - reason: margin", T0)
    cancelled = event_from_ib_status("Cancelled", Decimal(0), QTY, T0)
    assert reject is not None
    start = _order_in(S.PLACED)
    one = apply(apply(start, reject).order, cancelled).order
    two = apply(apply(start, cancelled).order, reject).order
    assert one.state is two.state is S.REJECTED
    assert one.reject_code == two.reject_code == 201
    assert one.last_ib_status == two.last_ib_status == "Cancelled"


def test_cancel_rejected_returns_to_partial_filled_when_something_filled() -> None:
    order = replace(_order_in(S.CANCEL_REQUESTED), filled_qty=Decimal("40"))
    event = event_from_ib_error(
        161, "Cancel attempted when order is not in a cancellable state", T0
    )
    assert event is not None
    result = apply(order, event)
    assert result.order.state is S.PARTIAL_FILLED


def test_status_filled_overrides_target_when_ib_says_done() -> None:
    # IB reports Filled with remaining 0 for 90 of our 100 (a modification we did not see).
    order = _order_in(S.PLACED)
    result = apply(order, event_from_ib_status("Filled", Decimal("90"), Decimal(0), T0))
    assert result.order.state is S.FILLED
    assert result.order.ib_filled_qty == Decimal("90")
    assert result.order.filled_qty == 0


def test_submitted_with_filled_quantity_is_a_partial_fill() -> None:
    event = event_from_ib_status("Submitted", Decimal("10"), Decimal("90"), T0)
    assert event.type is E.PARTIALLY_FILLED
    assert apply(_order_in(S.PLACED), event).order.state is S.PARTIAL_FILLED


def test_filled_status_with_remaining_is_partial() -> None:
    event = event_from_ib_status("Filled", Decimal("10"), Decimal("90"), T0)
    assert event.type is E.PARTIALLY_FILLED


def test_ack_overtaking_our_placed_record_moves_to_placed() -> None:
    result = apply(_order_in(S.SCHEDULED), event_from_ib_status("PreSubmitted", 0, QTY, T0))
    assert result.order.state is S.PLACED
    assert result.note == "IB ack overtook our PLACED record"


def test_cancel_request_on_filled_order_is_not_applied() -> None:
    result = apply(_order_in(S.FILLED), OrderEvent(E.CANCEL_REQUESTED, ts_init=T0))
    assert result.applied is False
    assert result.note == "already filled"


def test_applied_transition_stamps_updated_at() -> None:
    later = T0 + timedelta(minutes=1)
    result = apply(_order_in(S.PLACED), OrderEvent(E.CANCEL_REQUESTED, ts_init=later))
    assert result.order.updated_at == later
    assert result.state_changed


@pytest.mark.parametrize("status", sorted(IB_STATUS_EVENTS))
def test_every_ib_status_maps_to_an_event(status: str) -> None:
    filled, remaining = (QTY, Decimal(0)) if status == "Filled" else (Decimal(0), QTY)
    event = event_from_ib_status(status, filled, remaining, T0)
    assert event.ib_status == status
    assert event.type is IB_STATUS_EVENTS[status]


def test_ib_status_table_covers_the_documented_strings() -> None:
    documented = {
        "PendingSubmit",
        "PendingCancel",
        "PreSubmitted",
        "Submitted",
        "ApiCancelled",
        "Cancelled",
        "Filled",
        "Inactive",
    }
    assert documented <= set(IB_STATUS_EVENTS)
    assert IB_STATUS_EVENTS["Inactive"] is E.REJECTED
    assert IB_STATUS_EVENTS["ApiCancelled"] is E.CANCELLED


def test_unknown_ib_status_raises_specific_error() -> None:
    with pytest.raises(UnknownIbStatus) as info:
        event_from_ib_status("Sumbitted", Decimal(0), QTY, T0)
    assert info.value.code == "UNKNOWN_IB_STATUS"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (110, E.REJECTED),
        (154, E.REJECTED),
        (200, E.REJECTED),
        (201, E.REJECTED),
        (203, E.REJECTED),
        (321, E.REJECTED),
        (202, E.CANCELLED),
        (161, E.CANCEL_REJECTED),
        (10148, E.CANCEL_REJECTED),
        (399, None),
        (2104, None),
        (1100, None),
        (103, None),
        (326, None),
        (100, None),
    ],
)
def test_error_codes_map_to_order_events(code: int, expected: OrderEventType | None) -> None:
    event = event_from_ib_error(code, "message", T0)
    assert (event.type if event else None) is expected
    if event is not None:
        assert event.code == code
        assert event.reason == "message"


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (103, IbCodeClass.DUPLICATE_ORDER_ID),
        (326, IbCodeClass.CLIENT_ID_IN_USE),
        (100, IbCodeClass.PACING_VIOLATION),
        (1100, IbCodeClass.CONNECTIVITY_LOST),
        (1101, IbCodeClass.CONNECTIVITY_RESTORED_DATA_LOST),
        (1102, IbCodeClass.CONNECTIVITY_RESTORED),
        (2103, IbCodeClass.FARM_BROKEN),
        (2104, IbCodeClass.FARM_OK),
        (2105, IbCodeClass.FARM_BROKEN),
        (2106, IbCodeClass.FARM_OK),
        (2107, IbCodeClass.FARM_INACTIVE),
        (2108, IbCodeClass.FARM_INACTIVE),
        (2158, IbCodeClass.FARM_OK),
        (399, IbCodeClass.WARNING),
        (2150, IbCodeClass.WARNING),  # unlisted, in the 2100-2199 notice range
        (2199, IbCodeClass.WARNING),
        (10999, IbCodeClass.UNKNOWN),
        (-1, IbCodeClass.UNKNOWN),
    ],
)
def test_ib_code_classification(code: int, kind: IbCodeClass) -> None:
    assert classify(code).kind is kind


def test_ib_code_table_has_no_reject_in_the_warning_range() -> None:
    for code, row in IB_CODES.items():
        if 2100 <= code <= 2199:
            assert row.kind is not IbCodeClass.ORDER_REJECTED


def test_unknown_target_is_completed_only_by_ib_filled_status() -> None:
    order = Order("ib:1:7", quantity=None, state=S.PLACED)
    partial = apply(order, fill_event(order, Decimal("500"), Decimal("3"), T0)).order
    assert partial.state is S.PARTIAL_FILLED
    done = apply(partial, event_from_ib_status("Filled", Decimal("500"), Decimal(0), T0)).order
    assert done.state is S.FILLED


def test_learning_the_target_later_completes_a_filled_order() -> None:
    order = Order("ib:1:8", quantity=None, state=S.PARTIAL_FILLED, filled_qty=Decimal("50"))
    known = replace(order, quantity=Decimal("50"))
    result = apply(known, event_from_ib_status("Submitted", Decimal(0), Decimal("50"), T0))
    assert result.order.state is S.FILLED


@pytest.mark.parametrize("state", [S.VALIDATED, S.SCHEDULED, S.PLACED])
def test_fill_event_at_zero_is_no_progress(state: OrderState) -> None:
    # Issue 9 item 8: adopting a stand-in that had no fills replays a fill event for the
    # cumulative of no executions; nothing filled, so the order must not become PARTIAL_FILLED.
    order = _order_in(state)
    result = apply(order, fill_event(order, Decimal(0), None, T0))
    assert result.order.state is state
    assert result.applied is False
    assert result.note == "nothing filled"


def _upsized_facts(ending: list[OrderEvent]) -> list[OrderEvent]:
    """100 filled of an order modified from 100 to 150, then `ending`, then the fill total."""
    return [
        event_from_ib_status("Submitted", Decimal(0), QTY, T0),
        event_from_ib_status("Submitted", QTY, Decimal(50), T0),
        *ending,
        OrderEvent(E.FILLED, ts_init=T0, filled_qty=QTY, avg_fill_price=Decimal("2")),
    ]


def test_needs_rederive_when_the_state_disagrees_with_the_target() -> None:
    filled = replace(_order_in(S.FILLED), ib_filled_qty=QTY)
    assert needs_rederive(filled) is False
    assert needs_rederive(replace(filled, quantity=Decimal(150))) is True
    partial = _order_in(S.PARTIAL_FILLED)
    assert needs_rederive(partial) is False
    assert needs_rederive(replace(partial, quantity=Decimal(40))) is True
    assert needs_rederive(replace(_order_in(S.CLOSED), quantity=Decimal(150))) is False


def test_rederive_undoes_a_fill_against_a_stale_target() -> None:
    # Issue 9 item 7: 100 filled of the old target 100 latched FILLED; the cancel that followed
    # was "late". Under the new target 150 the same facts make the order CANCELLED.
    cancelled = event_from_ib_status("Cancelled", QTY, Decimal(50), T0)
    latched = Order("o-1", QTY, S.PLACED)
    for event in _upsized_facts([cancelled]):
        latched = apply(latched, event).order
    assert latched.state is S.FILLED
    upsized = replace(latched, quantity=Decimal(150))
    derived = rederive(upsized, S.PLACED, _upsized_facts([cancelled]))
    assert derived.state is S.CANCELLED
    assert (derived.filled_qty, derived.ib_filled_qty) == (QTY, QTY)
    assert derived.last_ib_status == "Cancelled"
    assert derived.quantity == Decimal(150)
    working = rederive(upsized, S.PLACED, _upsized_facts([]))
    assert working.state is S.PARTIAL_FILLED


def test_rederive_keeps_ib_filled_with_nothing_remaining_final() -> None:
    done = event_from_ib_status("Filled", Decimal(150), Decimal(0), T0)
    order = Order("o-1", Decimal(200), S.FILLED, filled_qty=QTY, ib_filled_qty=Decimal(150))
    assert rederive(order, S.PLACED, _upsized_facts([done])).state is S.FILLED


def test_rederive_skips_our_own_events_the_derived_state_cannot_take() -> None:
    facts = [OrderEvent(E.PLACED, ts_init=T0), OrderEvent(E.SCHEDULED, ts_init=T0)]
    assert rederive(Order("o-1", QTY), S.VALIDATED, facts).state is S.PLACED
