"""The ledger's decisions, apart from the rows they are taken on.

The ledger write path (`services/ledger/`) loads rows, asks these functions what follows from
them, and saves the answer. Everything here is pure: which IB ids a callback proves are ours,
when a callback opens a stand-in order and when one is folded into ours, which of two openOrder
views is newer, which positions a fill touches, what an order's recorded facts make of it. So
the same set of callbacks gives the same decisions whatever order they arrive in, and each rule
is tested without a database (`tests/unit/models/test_ledger_rules.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from models.fills import ZERO
from models.ledger_reports import OpenOrderReport, OrderErrorReport, OrderStatusReport
from models.orders import (
    Order,
    OrderEvent,
    OrderEventType,
    OrderState,
    UnknownIbStatus,
    apply,
    event_from_ib_error,
    event_from_ib_status,
    fill_event,
)

# Key in an order's `details` of the newest openOrder view applied (`view_stamp`).
OPEN_ORDER_VIEW = "open_order_view"
# Key in an order's `details` listing the stand-ins it adopted.
ADOPTED = "adopted"
# Key in an order's `details` listing the IB order ids it left for a higher one (a 103
# replacement, or a callback naming our ref under the new id).
PREVIOUS_IB_ORDER_IDS = "previous_ib_order_ids"
# Origins the ledger writes on an order it opens from a callback.
CALLBACK_ORIGINS = frozenset({"execution", "order_status", "open_order", "order_error"})
# Dedupe-key prefixes of the events the ledger records for IB callbacks.
IB_CALLBACK_KEYS = ("status:", "open:", "error:", "exec:")
# Our own events (`apply_order_event`) as the ledger records them: facts to re-derive from.
OWN_EVENTS = frozenset(
    {
        OrderEventType.SCHEDULED,
        OrderEventType.PLACED,
        OrderEventType.CANCEL_REQUESTED,
        OrderEventType.CLOSED,
        OrderEventType.REJECTED,
        OrderEventType.CANCELLED,
    }
)


# A combo's own executions (IB reports them under this sec_type, conId 28812380, beside one
# execution per leg): they count the combo units filled, and hold no position of their own.
COMBO_SEC_TYPE = "BAG"


def counts_toward_order(order_sec_type: str | None, fill_sec_type: str | None) -> bool:
    """Whether a fill counts in its order's cumulative quantity: a combo order counts its BAG
    executions (combo units), not its legs' (leg shares or contracts); any other order every
    fill."""
    if order_sec_type == COMBO_SEC_TYPE:
        return fill_sec_type == COMBO_SEC_TYPE
    return True


def holds_position(fill_sec_type: str | None) -> bool:
    """Whether a fill books a position: a combo's own execution does not (its legs do)."""
    return fill_sec_type != COMBO_SEC_TYPE


def positive(value: int | None) -> int | None:
    """IB's ids, or None where IB sends 0 / -1 for "no id"."""
    return value if value is not None and value > 0 else None


def synthetic_client_order_id(
    client_id: int | None, ib_order_id: int | None, perm_id: int | None, fallback: str
) -> str:
    """The key of an order first seen in a callback; the same for every callback of it."""
    if positive(ib_order_id) is not None:
        return f"ib:{client_id if client_id is not None else 0}:{ib_order_id}"
    if positive(perm_id) is not None:
        return f"ib:perm:{perm_id}"
    return f"ib:{fallback}"


def is_stand_in(
    client_order_id: str,
    details: Mapping[str, object] | None,
    strategy: str | None,
    intent_id: object,
) -> bool:
    """An order the ledger opened from a callback, not one epm placed (no strategy, no intent)."""
    origin = (details or {}).get("origin")
    return (
        client_order_id.startswith("ib:")
        and origin in CALLBACK_ORIGINS
        and strategy is None
        and intent_id is None
    )


def column_changes(
    current: Mapping[str, object], values: Mapping[str, object], *, overwrite: bool
) -> dict[str, object]:
    """The order columns a callback sets: empty ones only, or every one it knows (`overwrite`).

    Only empty columns are set unless the caller knows its callback is the newest view of the
    venue (which of two callbacks is older is not known from the callback alone).
    """
    changes: dict[str, object] = {}
    for name, value in values.items():
        if value is None:
            continue
        now_set = current.get(name)
        if now_set == value or (now_set is not None and not overwrite):
            continue
        changes[name] = value
    return changes


def merged_details(
    current: Mapping[str, object] | None, extra: Mapping[str, object] | None
) -> dict[str, object] | None:
    """The order's `details` with `extra` merged in, or None when nothing changes."""
    if not extra:
        return None
    merged = {**(current or {}), **extra}
    return None if merged == (current or {}) and current is not None else merged


def details_leaving_id(
    details: Mapping[str, object] | None, old_id: int | None, new_id: int
) -> dict[str, object]:
    """The order's `details` after it moves from IB order id `old_id` to `new_id`."""
    moved = dict(details or {})
    if old_id is not None and old_id != new_id:
        earlier = moved.get(PREVIOUS_IB_ORDER_IDS)
        moved[PREVIOUS_IB_ORDER_IDS] = sorted(
            {*(earlier if isinstance(earlier, list) else []), old_id}
        )
    return moved


def follows_to(
    order_client_id: int | None, order_ib_id: int | None, client_id: int | None, new_id: int | None
) -> int | None:
    """The higher IB order id a callback naming our ref moves our order to, or None.

    IB order ids only grow, and after error 103 the bridge re-places our order (same orderRef)
    under a fresh one: a callback with our ref and that id proves the new id is ours even when
    the bridge's replacement link has not been recorded yet (or never is). A lower id (a late
    callback of the old one) moves nothing; so does an id of another client. Whether another of
    our orders holds the id is the caller's to check.
    """
    new = positive(new_id)
    if new is None or order_ib_id is None or client_id != order_client_id or new <= order_ib_id:
        return None
    return new


def replacement_refusal(current_id: int | None, new_id: int) -> str | None:
    """Why a 103 replacement link to `new_id` is recorded but not applied, or None.

    Of several replacements recorded in any order the highest id stands (ids only grow).
    """
    if current_id == new_id:
        return f"order already on id {current_id}"
    if current_id is not None and new_id < current_id:
        return f"order already on id {current_id}, not older id {new_id}"
    return None


def view_stamp(received_at: datetime, dedupe_key: str) -> str:
    """Sortable stamp of one openOrder view: fixed-width UTC receive time, then its digest."""
    return f"{received_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')} {dedupe_key}"


def is_newest_view(stamp: str, shown: object) -> bool:
    """Whether a view stamped `stamp` is newer than the one the order shows (`OPEN_ORDER_VIEW`).

    Two workers may record two views of a modified order in either order; a stale target must
    never stand (100 of a target modified to 150 would make 120 filled look complete).
    """
    return not isinstance(shown, str) or stamp > shown


def open_order_progress(report: OpenOrderReport) -> tuple[Decimal, Decimal]:
    """Filled and remaining quantity as an openOrder implies them (it has no `remaining`)."""
    filled = report.filled_quantity or ZERO
    total = report.total_quantity
    remaining = ZERO if report.ib_status == "Filled" else max((total or filled) - filled, ZERO)
    return filled, remaining


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One `order_events` row as the decisions here need it."""

    event_type: str
    dedupe_key: str | None
    payload: Mapping[str, object] | None
    from_state: str | None
    ts_init: datetime
    ts_event: datetime | None


def recorded_ib_event(recorded: RecordedEvent) -> OrderEvent | None:
    """The IB event a recorded callback carried, rebuilt from its stored payload.

    None for callbacks that are not order events (executions are re-read as fills instead).
    """
    key = recorded.dedupe_key or ""
    payload = recorded.payload or {}
    at = recorded.ts_init
    try:
        if key.startswith("status:"):
            status = OrderStatusReport.model_validate(payload)
            return event_from_ib_status(status.ib_status, status.filled, status.remaining, at)
        if key.startswith("open:"):
            view = OpenOrderReport.model_validate(payload)
            if view.ib_status is None:
                return None
            return event_from_ib_status(view.ib_status, *open_order_progress(view), at)
        if key.startswith("error:"):
            error = OrderErrorReport.model_validate(payload)
            return event_from_ib_error(error.code, error.message, at, ts_event=error.error_time)
    except UnknownIbStatus:
        return None
    return None


def order_facts(
    order: Order,
    recorded: Sequence[RecordedEvent],
    filled: tuple[Decimal, Decimal | None],
    now: datetime,
) -> tuple[OrderState, list[OrderEvent]]:
    """Every fact recorded for an order, as FSM events in recording order, and its first state.

    IB callbacks are rebuilt from their stored payloads, our own commands from their type;
    executions are not replayed one by one but as one final fill event for `filled`, the
    cumulative of the order's effective fills.
    """
    facts: list[OrderEvent] = []
    for event_row in recorded:
        key = event_row.dedupe_key or ""
        event: OrderEvent | None = None
        if key.startswith(IB_CALLBACK_KEYS):
            event = recorded_ib_event(event_row)
        elif event_row.event_type in OWN_EVENTS:
            event = OrderEvent(
                type=OrderEventType(event_row.event_type),
                ts_init=event_row.ts_init,
                ts_event=event_row.ts_event,
            )
        if event is not None:
            facts.append(event)
    quantity, avg = filled
    facts.append(fill_event(order, quantity, avg, ts_init=now))
    first = next((r.from_state for r in recorded if r.from_state is not None), order.state.value)
    return OrderState(first), facts


def adopted_order(
    order: Order,
    stand_in_events: Iterable[RecordedEvent],
    filled: tuple[Decimal, Decimal | None],
    now: datetime,
) -> Order:
    """What `order` becomes when it adopts stand-ins: their IB events replayed, then its fills.

    The FSM is monotone, so the order the events are replayed in does not matter; `filled` is
    the cumulative of every fill now on the order (zero when the stand-ins had none: a fill
    event at zero is no progress and leaves a PLACED order PLACED).
    """
    fsm = order
    for recorded in stand_in_events:
        event = recorded_ib_event(recorded)
        if event is not None:
            fsm = apply(fsm, event).order
    quantity, avg = filled
    return apply(fsm, fill_event(fsm, quantity, avg, ts_init=now)).order


def adopted_names(earlier: object, stand_ins: Iterable[str]) -> list[str]:
    """The `ADOPTED` list after adopting `stand_ins` (earlier adoptions kept, sorted)."""
    return sorted({*(earlier if isinstance(earlier, list) else []), *stand_ins})


def positions_touched(
    moved_fills: Iterable[tuple[int | None, str]], strategy: str
) -> set[tuple[int | None, str]]:
    """The (con_id, strategy) positions that change when fills move to an order of `strategy`.

    Each moved fill leaves the position it was booked in and joins its instrument's position
    under the adopter's strategy; both must be recomputed.
    """
    moved = list(moved_fills)
    return {(con_id, was) for con_id, was in moved} | {(con_id, strategy) for con_id, _ in moved}


def positions_to_refresh(keys: Iterable[tuple[int | None, str]]) -> list[tuple[int, str]]:
    """The positions to recompute, once each, in key order (the lock order that avoids cycles)."""
    return sorted({(con_id, strategy) for con_id, strategy in keys if con_id is not None})


def batch_lock_order(ids: Sequence[tuple[int | None, int | None]]) -> list[int]:
    """The order to write a batch's callbacks in, as indexes into `ids` ((client_id, order id)
    each names, None when it names no order): by order, those naming none last.

    Two workers writing two batches that name the same orders then lock those order rows in
    the same order, so they wait for each other instead of deadlocking; the ledger does not
    depend on the order callbacks are written in, so sorting them changes no figure.
    """

    def key(i: int) -> tuple[int, int, int, int]:
        client_id, order_id = ids[i]
        if order_id is None:
            return (1, 0, 0, i)
        return (0, client_id or 0, order_id, i)

    return sorted(range(len(ids)), key=key)


def commission_unchanged(
    stored: Mapping[str, object] | None,
    commission: Decimal,
    realized_pnl: Decimal | None,
    currency: str | None,
) -> bool:
    """True when IB's report repeats what is stored (and the stored figure is not an estimate)."""
    return (
        stored is not None
        and not stored["estimated"]
        and stored["commission"] == commission
        and stored["realized_pnl"] == realized_pnl
        and stored["currency"] == currency
    )
