"""The ledger write path: IB callbacks → fills, commissions, orders, order events, positions.

Every function here runs inside the caller's write transaction (`store.db.write_transaction`) and
is idempotent on its callback's key, so a redelivered or duplicated task changes nothing:

- executions on `fills.execution_id` (a duplicate is a no-op; a correction, same base with a
  higher suffix, supersedes the earlier fill instead of adding to it);
- commissions on `commissions.execution_id` (before or after the fill; an estimate stands in
  until IB's report arrives);
- order status / open order / error callbacks on a hash of the callback (`order_events.dedupe_key`);
  IB's own repeats (same status, later receive time) are recorded with `applied = false`.

The order's cumulative quantity is recomputed from its effective fills and the FSM
(`models.orders.apply`) is advanced monotonically; the position of every (con_id, strategy)
touched is recomputed from its effective fills in the same transaction. Because every figure is
a function of the *set* of callbacks seen, any arrival order gives the same ledger.

Order details from openOrder (target, prices) are the venue's view and overwrite ours, but only
the newest view by the bridge's receive time does, so a late view of a modified order never
shrinks its target back; when the new target no longer agrees with the state (a FILLED reached
against the old one), the order is re-derived from its recorded facts (`_agree_with_target`).
Order ids only grow: a 103 replacement, or a callback naming our ref under a higher id, moves
the order onto it (`record_order_replaced`, `_follow_ib_order_id`), adopting a stand-in that
holds it.

Locking (PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers): the order row is
locked first (`FOR UPDATE`), then any stand-in it adopts, then position rows in key order, so
two tasks never wait on each other in a cycle (a rare cycle between two position refreshes of
one task is a deadlock PostgreSQL breaks, and the task retries). Reads of fills happen after the
locks, so under READ COMMITTED they see every fill committed by a task that held the lock before.

An order the ledger does not know (placed in TWS, or by a previous run whose row is gone) is
created from whatever the callback says, keyed `ib:{client_id}:{order_id}` (or `ib:perm:{perm_id}`
when IB gives no order id), so no execution is ever dropped. When such a stand-in was opened only
because ref-less callbacks (orderStatus, error) beat our order's IB id to the ledger, the first
callback naming our orderRef with those ids folds it into our order (`_adopt_stand_ins`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from models.fills import (
    ONE,
    ZERO,
    ExecIdError,
    FillRecord,
    PositionState,
    Side,
    cumulative,
    estimate_commission,
    parse_exec_id,
    position_from_fills,
    supersession,
)
from models.ib_codes import classify
from models.ledger_reports import (
    CommissionReport,
    ContractReport,
    ExecutionReport,
    OpenOrderReport,
    OrderErrorReport,
    OrderReplacedReport,
    OrderStatusReport,
    ReportError,
)
from models.orders import (
    Order,
    OrderEvent,
    OrderEventType,
    OrderState,
    Transition,
    UnknownIbStatus,
    apply,
    event_from_ib_error,
    event_from_ib_status,
    fill_event,
    needs_rederive,
    rederive,
    same_facts,
)
from store.schema import (
    UNATTRIBUTED_STRATEGY,
    commissions,
    contracts,
    execution_orders,
    fills,
    order_events,
    positions_current,
    positions_history,
)

orders_t = execution_orders

# Key in `execution_orders.details` of the newest openOrder view applied (`_view_stamp`).
OPEN_ORDER_VIEW = "open_order_view"
# Key in `execution_orders.details` listing the stand-ins an order adopted (`_adopt_stand_ins`).
ADOPTED = "adopted"
# Key in `execution_orders.details` listing the IB order ids an order left for a higher one
# (a 103 replacement, or a callback naming our ref under the new id: `_follow_ib_order_id`).
PREVIOUS_IB_ORDER_IDS = "previous_ib_order_ids"


class StaleOrderError(RuntimeError):
    """The order row changed under us (version mismatch); the task retries."""

    code = "STALE_ORDER_VERSION"


class OrderNotFoundError(LookupError):
    """An event of ours names an order the ledger does not have."""

    code = "ORDER_NOT_FOUND"


@dataclass(frozen=True)
class LedgerResult:
    """What one ledger write did; `order` is the mirror of the order row after it."""

    outcome: str
    applied: bool = False
    client_order_id: str | None = None
    state: str | None = None
    note: str | None = None
    order: dict[str, str] = field(default_factory=dict)
    # Stand-ins this order adopted (`_adopt_stand_ins`): their rows are gone, so are their mirrors.
    retired: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "applied": self.applied,
            "client_order_id": self.client_order_id,
            "state": self.state,
            "note": self.note,
        }


# ----------------------------------------------------------------------------- helpers


def _insert(conn: Connection, table: sa.Table) -> Any:
    """A dialect INSERT that supports ON CONFLICT (PostgreSQL and SQLite both do)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _digest(prefix: str, payload: Mapping[str, object]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return f"{prefix}:{hashlib.sha256(blob.encode()).hexdigest()[:32]}"


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def synthetic_client_order_id(
    client_id: int | None, ib_order_id: int | None, perm_id: int | None, fallback: str
) -> str:
    """The key of an order first seen in a callback; the same for every callback of it."""
    if _positive(ib_order_id) is not None:
        return f"ib:{client_id if client_id is not None else 0}:{ib_order_id}"
    if _positive(perm_id) is not None:
        return f"ib:perm:{perm_id}"
    return f"ib:{fallback}"


def _fsm_order(row: Row[Any]) -> Order:
    return Order(
        client_order_id=row.client_order_id,
        quantity=row.quantity,
        state=OrderState(row.state),
        filled_qty=row.filled_qty,
        avg_fill_price=row.avg_fill_price,
        ib_filled_qty=row.ib_filled_qty if row.ib_filled_qty is not None else ZERO,
        last_ib_status=row.last_ib_status,
        reject_code=row.reject_code,
        reject_reason=row.reject_reason,
        updated_at=row.updated_at,
    )


def order_mirror(row: Row[Any]) -> dict[str, str]:
    """The order row as flat strings, for the Redis hash `exec:order:{client_order_id}`."""
    keys = (
        "client_order_id",
        "client_id",
        "ib_order_id",
        "perm_id",
        "strategy",
        "con_id",
        "symbol",
        "action",
        "quantity",
        "state",
        "filled_qty",
        "avg_fill_price",
        "ib_filled_qty",
        "last_ib_status",
        "reject_code",
        "reject_reason",
        "version",
    )
    mirror = {k: "" if getattr(row, k) is None else str(getattr(row, k)) for k in keys}
    mirror["updated_at"] = row.updated_at.isoformat()
    return mirror


def _select_order(conn: Connection, where: sa.ColumnElement[bool]) -> Row[Any] | None:
    return conn.execute(sa.select(orders_t).where(where).with_for_update()).first()


def find_order(
    conn: Connection,
    *,
    order_ref: str | None = None,
    client_id: int | None = None,
    ib_order_id: int | None = None,
    perm_id: int | None = None,
) -> Row[Any] | None:
    """Find (and lock) an order by our ref, then (client_id, IB order id), then permId."""
    if order_ref:
        row = _select_order(conn, orders_t.c.client_order_id == order_ref)
        if row is not None:
            return row
    if _positive(ib_order_id) is not None and client_id is not None:
        row = _select_order(
            conn,
            sa.and_(orders_t.c.client_id == client_id, orders_t.c.ib_order_id == ib_order_id),
        )
        if row is not None:
            return row
    if _positive(perm_id) is not None:
        return _select_order(conn, orders_t.c.perm_id == perm_id)
    return None


def _id_taken(conn: Connection, where: sa.ColumnElement[bool], order_id: int) -> bool:
    taken = conn.execute(sa.select(orders_t.c.id).where(where, orders_t.c.id != order_id)).first()
    return taken is not None


def _backfill(
    conn: Connection,
    row: Row[Any],
    values: Mapping[str, object],
    *,
    overwrite: bool,
    now: datetime,
    details: Mapping[str, object] | None = None,
) -> Row[Any]:
    """Set order columns the callback knows: only empty ones, or all of them (`overwrite`).

    `details` keys are merged into the order's `details` JSON in the same update.
    """
    changes: dict[str, object] = {}
    if details:
        merged = {**(row.details or {}), **details}
        if merged != row.details:
            changes["details"] = merged
    for name, value in values.items():
        if value is None:
            continue
        current = getattr(row, name)
        if current == value or (current is not None and not overwrite):
            continue
        changes[name] = value
    ib_order_id = changes.get("ib_order_id")
    if isinstance(ib_order_id, int) and _id_taken(
        conn,
        sa.and_(orders_t.c.client_id == row.client_id, orders_t.c.ib_order_id == ib_order_id),
        row.id,
    ):
        changes.pop("ib_order_id")
    perm_id = changes.get("perm_id")
    if isinstance(perm_id, int) and _id_taken(conn, orders_t.c.perm_id == perm_id, row.id):
        changes.pop("perm_id")
    if not changes:
        return row
    conn.execute(
        orders_t.update()
        .where(orders_t.c.id == row.id)
        .values(**changes, updated_at=now, version=orders_t.c.version + 1)
    )
    refreshed = conn.execute(sa.select(orders_t).where(orders_t.c.id == row.id)).one()
    return refreshed


def _ensure_order(
    conn: Connection,
    *,
    order_ref: str | None,
    client_id: int | None,
    ib_order_id: int | None,
    perm_id: int | None,
    fallback_key: str,
    describe: Mapping[str, object],
    origin: str,
    now: datetime,
) -> Row[Any]:
    """Find the order a callback speaks about, or create it; then fill in what it tells.

    Only empty columns are set here: which of two callbacks is older is not known at this level
    (`record_open_order` lets the newest view of the venue overwrite).
    """
    ids = {"ib_order_id": _positive(ib_order_id), "perm_id": _positive(perm_id)}
    row = find_order(
        conn, order_ref=order_ref, client_id=client_id, ib_order_id=ib_order_id, perm_id=perm_id
    )
    if row is not None and order_ref and row.client_order_id == order_ref:
        row = _adopt_stand_ins(
            conn, row, client_id=client_id, ib_order_id=ib_order_id, perm_id=perm_id, now=now
        )
        row = _follow_ib_order_id(conn, row, client_id=client_id, ib_order_id=ib_order_id, now=now)
    if row is None:
        key = synthetic_client_order_id(client_id, ib_order_id, perm_id, fallback_key)
        values = {
            "client_order_id": key,
            "client_id": client_id if client_id is not None else 0,
            **ids,
            **{k: v for k, v in describe.items() if v is not None},
            "state": OrderState.PLACED.value,
            "filled_qty": ZERO,
            "details": {"origin": origin, "order_ref": order_ref},
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        # Another worker may be creating the same order right now: the unique keys decide, and
        # whichever callback created it, this one's facts are added below.
        conn.execute(_insert(conn, orders_t).values(**values).on_conflict_do_nothing())
        row = _select_order(conn, orders_t.c.client_order_id == key)
        if row is None:
            row = find_order(conn, client_id=client_id, ib_order_id=ib_order_id, perm_id=perm_id)
        if row is None:
            raise StaleOrderError(f"order {key} could not be created or found")
    return _backfill(conn, row, {**ids, **describe}, overwrite=False, now=now)


def _move_ib_order_id(conn: Connection, row: Row[Any], new_id: int, now: datetime) -> Row[Any]:
    """Put `row` on IB order id `new_id`, keeping the id it leaves in its details."""
    details = dict(row.details or {})
    if row.ib_order_id is not None and row.ib_order_id != new_id:
        earlier = details.get(PREVIOUS_IB_ORDER_IDS)
        details[PREVIOUS_IB_ORDER_IDS] = sorted(
            {*(earlier if isinstance(earlier, list) else []), row.ib_order_id}
        )
    conn.execute(
        orders_t.update()
        .where(orders_t.c.id == row.id)
        .values(ib_order_id=new_id, details=details, updated_at=now, version=row.version + 1)
    )
    return conn.execute(sa.select(orders_t).where(orders_t.c.id == row.id)).one()


def _follow_ib_order_id(
    conn: Connection,
    row: Row[Any],
    *,
    client_id: int | None,
    ib_order_id: int | None,
    now: datetime,
) -> Row[Any]:
    """Move our order onto a higher IB order id that a callback naming our ref gives it.

    IB order ids only grow, and after error 103 the bridge re-places our order (same orderRef)
    under a fresh one. A callback carrying our ref and that id proves the new id is ours even
    when the bridge's replacement link (`record_order_replaced`) has not been recorded yet (or
    never is); without the move every later ref-less callback for the new id would open a
    stand-in. A lower id (a late callback of the old one) moves nothing; an id held by another
    order of ours is left to it. Recorded as event `ORDER_ID_FOLLOWED`, the old id in
    `details["previous_ib_order_ids"]`.
    """
    new_id = _positive(ib_order_id)
    old_id = row.ib_order_id
    if new_id is None or old_id is None or client_id != row.client_id or new_id <= old_id:
        return row
    holder = sa.and_(orders_t.c.client_id == row.client_id, orders_t.c.ib_order_id == new_id)
    if _id_taken(conn, holder, row.id):
        return row
    row = _move_ib_order_id(conn, row, new_id, now)
    _record_event(
        conn,
        row,
        event_type="ORDER_ID_FOLLOWED",
        applied=True,
        from_state=row.state,
        to_state=row.state,
        now=now,
        reason=f"ib order id {old_id} -> {new_id}: a callback names our ref with it",
        payload={"old_order_id": old_id, "new_order_id": new_id, "client_id": row.client_id},
    )
    return row


def _event_recorded(conn: Connection, dedupe_key: str) -> bool:
    found = conn.execute(
        sa.select(order_events.c.id).where(order_events.c.dedupe_key == dedupe_key)
    ).first()
    return found is not None


def _record_event(
    conn: Connection,
    row: Row[Any],
    *,
    event_type: str,
    applied: bool,
    from_state: str | None,
    to_state: str | None,
    now: datetime,
    ib_status: str | None = None,
    reason: str | None = None,
    payload: Mapping[str, object] | None = None,
    dedupe_key: str | None = None,
    ts_event: datetime | None = None,
) -> None:
    stmt = _insert(conn, order_events).values(
        order_id=row.id,
        event_type=event_type,
        ib_status=ib_status,
        from_state=from_state,
        to_state=to_state,
        applied=applied,
        reason=reason,
        payload=dict(payload) if payload is not None else None,
        dedupe_key=dedupe_key,
        ts_event=ts_event,
        ts_init=now,
    )
    conn.execute(stmt.on_conflict_do_nothing())


def _store_fsm(conn: Connection, row: Row[Any], new: Order, now: datetime) -> None:
    """Write the FSM's view of the order, if the row is still the version it was read at."""
    result = conn.execute(
        orders_t.update()
        .where(orders_t.c.id == row.id, orders_t.c.version == row.version)
        .values(
            state=new.state.value,
            filled_qty=new.filled_qty,
            avg_fill_price=new.avg_fill_price,
            ib_filled_qty=new.ib_filled_qty,
            last_ib_status=new.last_ib_status,
            reject_code=new.reject_code,
            reject_reason=new.reject_reason,
            updated_at=now,
            version=row.version + 1,
        )
    )
    if result.rowcount != 1:
        raise StaleOrderError(f"order {row.client_order_id} changed concurrently")


def _save_transition(
    conn: Connection,
    row: Row[Any],
    transition: Transition,
    *,
    now: datetime,
    payload: Mapping[str, object] | None,
    dedupe_key: str | None,
) -> Row[Any]:
    new = transition.order
    if transition.applied:
        _store_fsm(conn, row, new, now)
    event = transition.event
    _record_event(
        conn,
        row,
        event_type=event.type.value,
        applied=transition.applied,
        from_state=transition.previous.state.value,
        to_state=new.state.value,
        now=now,
        ib_status=event.ib_status,
        reason=transition.note or None,
        payload=payload,
        dedupe_key=dedupe_key,
        ts_event=event.ts_event,
    )
    return conn.execute(sa.select(orders_t).where(orders_t.c.id == row.id)).one()


def _result(outcome: str, row: Row[Any], applied: bool, note: str | None) -> LedgerResult:
    adopted = (row.details or {}).get(ADOPTED)
    return LedgerResult(
        outcome=outcome,
        applied=applied,
        client_order_id=row.client_order_id,
        state=row.state,
        note=note,
        order=order_mirror(row),
        retired=tuple(adopted) if isinstance(adopted, list) else (),
    )


# ----------------------------------------------------------------------------- positions


def _fill_records(conn: Connection, where: sa.ColumnElement[bool]) -> list[FillRecord]:
    rows = conn.execute(
        sa.select(
            fills.c.execution_id,
            fills.c.side,
            fills.c.shares,
            fills.c.price,
            fills.c.executed_at,
            fills.c.multiplier,
            commissions.c.commission,
        )
        .select_from(
            fills.outerjoin(commissions, commissions.c.execution_id == fills.c.execution_id)
        )
        .where(where)
    ).all()
    return [
        FillRecord(
            execution_id=r.execution_id,
            side=Side(r.side),
            shares=r.shares,
            price=r.price,
            executed_at=r.executed_at,
            multiplier=r.multiplier if r.multiplier is not None else ONE,
            commission=r.commission,
        )
        for r in rows
    ]


def _refresh_position(
    conn: Connection, con_id: int, strategy: str, cause: str, now: datetime
) -> None:
    """Recompute one position from its fills (and their commissions) and store it."""
    key = {"con_id": con_id, "strategy_id": strategy}
    conn.execute(
        _insert(conn, positions_current)
        .values(
            **key,
            quantity=ZERO,
            realized_pl=ZERO,
            commissions=ZERO,
            updated_at=now,
            version=0,
        )
        .on_conflict_do_nothing(index_elements=["con_id", "strategy_id"])
    )
    current = conn.execute(
        sa.select(positions_current)
        .where(positions_current.c.con_id == con_id, positions_current.c.strategy_id == strategy)
        .with_for_update()
    ).one()
    records = _fill_records(conn, sa.and_(fills.c.con_id == con_id, fills.c.strategy == strategy))
    state = position_from_fills(records)
    symbol = conn.execute(
        sa.select(fills.c.symbol).where(fills.c.con_id == con_id, fills.c.symbol.is_not(None))
    ).first()
    account = conn.execute(
        sa.select(fills.c.account).where(
            fills.c.con_id == con_id, fills.c.strategy == strategy, fills.c.account.is_not(None)
        )
    ).first()
    before = PositionState(
        current.quantity,
        current.avg_price,
        current.realized_pl,
        current.commissions,
        current.multiplier if current.multiplier is not None else ONE,
    )
    if before == state and current.version > 0:
        return
    conn.execute(
        positions_current.update()
        .where(positions_current.c.con_id == con_id, positions_current.c.strategy_id == strategy)
        .values(
            quantity=state.quantity,
            avg_price=state.avg_price,
            multiplier=state.multiplier,
            realized_pl=state.realized_pl,
            commissions=state.commissions,
            symbol=symbol[0] if symbol else None,
            account=account[0] if account else None,
            updated_at=now,
            version=current.version + 1,
        )
    )
    conn.execute(
        positions_history.insert().values(
            **key,
            quantity=state.quantity,
            avg_price=state.avg_price,
            realized_pl=state.realized_pl,
            commissions=state.commissions,
            cause=cause,
            recorded_at=now,
        )
    )


def _refresh_positions(
    conn: Connection, keys: Iterable[tuple[int | None, str]], cause: str, now: datetime
) -> None:
    for con_id, strategy in sorted({k for k in keys if k[0] is not None}):
        if con_id is not None:
            _refresh_position(conn, con_id, strategy, cause, now)


# ----------------------------------------------------------------------------- stand-ins

# Origins `_ensure_order` writes on an order it opens from a callback.
_CALLBACK_ORIGINS = frozenset({"execution", "order_status", "open_order", "order_error"})


def _is_stand_in(row: Row[Any]) -> bool:
    """An order the ledger opened from a callback, not one epm placed (no strategy, no intent)."""
    origin = (row.details or {}).get("origin")
    return (
        row.client_order_id.startswith("ib:")
        and origin in _CALLBACK_ORIGINS
        and row.strategy is None
        and row.intent_id is None
    )


def _recorded_ib_event(event_row: Row[Any]) -> OrderEvent | None:
    """The IB event a recorded callback carried, rebuilt from its stored payload.

    None for callbacks that are not order events (executions are re-read as fills instead).
    """
    key = event_row.dedupe_key or ""
    payload = event_row.payload or {}
    at = event_row.ts_init
    try:
        if key.startswith("status:"):
            status = OrderStatusReport.model_validate(payload)
            return event_from_ib_status(status.ib_status, status.filled, status.remaining, at)
        if key.startswith("open:"):
            view = OpenOrderReport.model_validate(payload)
            if view.ib_status is None:
                return None
            return event_from_ib_status(view.ib_status, *_open_order_progress(view), at)
        if key.startswith("error:"):
            error = OrderErrorReport.model_validate(payload)
            return event_from_ib_error(error.code, error.message, at, ts_event=error.error_time)
    except UnknownIbStatus:
        return None
    return None


# Our own events (`apply_order_event`) as `order_events` records them: facts to re-derive from.
_OWN_EVENTS = frozenset(
    {
        OrderEventType.SCHEDULED,
        OrderEventType.PLACED,
        OrderEventType.CANCEL_REQUESTED,
        OrderEventType.CLOSED,
        OrderEventType.REJECTED,
        OrderEventType.CANCELLED,
    }
)
# Dedupe-key prefixes of the events the ledger records for IB callbacks.
_IB_CALLBACK_KEYS = ("status:", "open:", "error:", "exec:")


def _order_facts(
    conn: Connection, row: Row[Any], now: datetime
) -> tuple[OrderState, list[OrderEvent]]:
    """Every fact recorded for an order, as FSM events in recording order, and its first state.

    IB callbacks are rebuilt from their stored payloads, our own commands from their type;
    executions are not replayed one by one but as one final fill event for the cumulative of
    the order's effective fills (as the ledger computes it for every execution).
    """
    recorded = conn.execute(
        sa.select(order_events).where(order_events.c.order_id == row.id).order_by(order_events.c.id)
    ).all()
    facts: list[OrderEvent] = []
    for event_row in recorded:
        key = event_row.dedupe_key or ""
        event: OrderEvent | None = None
        if key.startswith(_IB_CALLBACK_KEYS):
            event = _recorded_ib_event(event_row)
        elif event_row.event_type in _OWN_EVENTS:
            event = OrderEvent(
                type=OrderEventType(event_row.event_type),
                ts_init=event_row.ts_init,
                ts_event=event_row.ts_event,
            )
        if event is not None:
            facts.append(event)
    quantity, avg = cumulative(_fill_records(conn, fills.c.order_id == row.id))
    facts.append(fill_event(_fsm_order(row), quantity, avg, ts_init=now))
    first = next((r.from_state for r in recorded if r.from_state is not None), row.state)
    return OrderState(first), facts


def _agree_with_target(
    conn: Connection, row: Row[Any], *, previous: Decimal | None, now: datetime
) -> Row[Any]:
    """Re-derive the order from its facts when its state disagrees with its (new) target.

    The newest openOrder view sets the target. A FILLED reached against an earlier target (100
    filled of 100, before the view of the modify to 150 was recorded) must not stick, nor may
    a downsized order miss its completion: the order becomes what its facts make it under the
    target it has now (`models.orders.rederive`), as if the view had been recorded first.
    Recorded as event `TARGET_CHANGED` when that changes the order.
    """
    fsm = _fsm_order(row)
    if not needs_rederive(fsm):
        return row
    start, facts = _order_facts(conn, row, now)
    derived = rederive(fsm, start, facts)
    if same_facts(derived, fsm):
        return row
    _store_fsm(conn, row, derived, now)
    _record_event(
        conn,
        row,
        event_type="TARGET_CHANGED",
        applied=True,
        from_state=fsm.state.value,
        to_state=derived.state.value,
        now=now,
        reason=f"target now {row.quantity} (was {previous}): re-derived from the order's facts",
        payload={"previous_quantity": previous, "quantity": row.quantity},
    )
    return conn.execute(sa.select(orders_t).where(orders_t.c.id == row.id)).one()


def _adopt_stand_ins(
    conn: Connection,
    row: Row[Any],
    *,
    client_id: int | None,
    ib_order_id: int | None,
    perm_id: int | None,
    now: datetime,
) -> Row[Any]:
    """Fold into `row` the orders opened from callbacks that beat its IB ids to the ledger.

    orderStatus and error() carry no orderRef. When one is recorded before our order row knows
    its IB order id (two workers, or an orders path that records the id late), the ledger opens
    a stand-in keyed `ib:{client_id}:{order_id}`. The first callback naming both our ref and
    those ids proves they are one order: the stand-in's fills and events move to `row`, its
    recorded IB events are replayed on `row`'s FSM (monotone, so their order does not matter),
    the stand-in is deleted and its ids pass to `row`. Without this every later status (the
    cancel confirmation) would keep landing on the stand-in and our order would never move.
    """
    clauses: list[sa.ColumnElement[bool]] = []
    if _positive(ib_order_id) is not None and client_id is not None:
        clauses.append(
            sa.and_(orders_t.c.client_id == client_id, orders_t.c.ib_order_id == ib_order_id)
        )
    if _positive(perm_id) is not None:
        clauses.append(orders_t.c.perm_id == perm_id)
    if not clauses:
        return row
    holders = conn.execute(
        sa.select(orders_t)
        .where(sa.or_(*clauses), orders_t.c.id != row.id)
        .order_by(orders_t.c.id)
        .with_for_update()
    ).all()
    stand_ins = [h for h in holders if _is_stand_in(h)]
    if not stand_ins:
        return row
    ids = [h.id for h in stand_ins]
    strategy = row.strategy or UNATTRIBUTED_STRATEGY
    moved = conn.execute(
        sa.select(fills.c.con_id, fills.c.strategy).where(fills.c.order_id.in_(ids))
    ).all()
    touched = {(f.con_id, f.strategy) for f in moved} | {(f.con_id, strategy) for f in moved}
    conn.execute(
        fills.update().where(fills.c.order_id.in_(ids)).values(order_id=row.id, strategy=strategy)
    )
    events = conn.execute(
        sa.select(order_events).where(order_events.c.order_id.in_(ids)).order_by(order_events.c.id)
    ).all()
    conn.execute(
        order_events.update().where(order_events.c.order_id.in_(ids)).values(order_id=row.id)
    )
    conn.execute(orders_t.delete().where(orders_t.c.id.in_(ids)))
    earlier = (row.details or {}).get(ADOPTED)
    adopted = sorted(
        {*(earlier if isinstance(earlier, list) else []), *(h.client_order_id for h in stand_ins)}
    )
    # The stand-ins' ids are ours now; a replacement link (no permId) takes the stand-in's.
    held_perm = next((h.perm_id for h in stand_ins if _positive(h.perm_id) is not None), None)
    row = _backfill(
        conn,
        row,
        {"ib_order_id": _positive(ib_order_id), "perm_id": _positive(perm_id) or held_perm},
        overwrite=False,
        now=now,
        details={ADOPTED: adopted},
    )
    before = _fsm_order(row)
    fsm = before
    for event_row in events:
        event = _recorded_ib_event(event_row)
        if event is not None:
            fsm = apply(fsm, event).order
    # The cumulative of every fill now on the order (zero when the stand-ins had none: a fill
    # event at zero is no progress and leaves a PLACED order PLACED).
    quantity, avg = cumulative(_fill_records(conn, fills.c.order_id == row.id))
    fsm = apply(fsm, fill_event(fsm, quantity, avg, ts_init=now)).order
    if fsm != before:
        _store_fsm(conn, row, fsm, now)
    _record_event(
        conn,
        row,
        event_type="STAND_IN_ADOPTED",
        applied=fsm != before,
        from_state=before.state.value,
        to_state=fsm.state.value,
        now=now,
        reason=f"adopted {', '.join(h.client_order_id for h in stand_ins)}",
        payload={"adopted": [h.client_order_id for h in stand_ins]},
    )
    _refresh_positions(conn, touched, f"adopt:{row.client_order_id}", now)
    return conn.execute(sa.select(orders_t).where(orders_t.c.id == row.id)).one()


# ----------------------------------------------------------------------------- executions


def record_execution(conn: Connection, report: ExecutionReport, now: datetime) -> LedgerResult:
    """Record one execution exactly once and bring its order and position up to date.

    Raises
    ------
    ReportError
        `BAD_EXEC_ID` for an execId that identifies nothing.
    """
    try:
        key = parse_exec_id(report.exec_id)
    except ExecIdError as e:
        raise ReportError(e.code, str(e)) from e
    row = _ensure_order(
        conn,
        order_ref=report.order_ref,
        client_id=report.client_id,
        ib_order_id=report.order_id,
        perm_id=report.perm_id,
        fallback_key=f"exec:{key.base}",
        describe={
            "con_id": report.con_id,
            "symbol": report.symbol,
            "sec_type": report.sec_type,
            "action": report.side.value,
            "account": report.account,
        },
        origin="execution",
        now=now,
    )
    strategy = row.strategy or UNATTRIBUTED_STRATEGY
    con_id = report.con_id if report.con_id is not None else row.con_id
    inserted = conn.execute(
        _insert(conn, fills)
        .values(
            execution_id=report.exec_id,
            exec_base=key.base,
            exec_seq=key.seq,
            order_id=row.id,
            order_ref=report.order_ref,
            ib_order_id=_positive(report.order_id),
            client_id=report.client_id,
            perm_id=_positive(report.perm_id),
            con_id=con_id,
            symbol=report.symbol,
            sec_type=report.sec_type,
            strategy=strategy,
            side=report.side.value,
            shares=report.shares,
            price=report.price,
            multiplier=report.multiplier,
            cum_qty=report.cum_qty,
            avg_price=report.avg_price,
            exchange=report.exec_exchange,
            account=report.account,
            executed_at=report.time or report.received_at,
            received_at=report.received_at,
        )
        .on_conflict_do_nothing(index_elements=["execution_id"])
    )
    if inserted.rowcount == 0:
        return _result("duplicate", row, applied=False, note="execution already recorded")

    # Corrections: the highest suffix of a base replaces every earlier one.
    siblings = conn.execute(
        sa.select(
            fills.c.execution_id, fills.c.superseded_by, fills.c.con_id, fills.c.strategy
        ).where(fills.c.exec_base == key.base)
    ).all()
    replaced_by = supersession(r.execution_id for r in siblings)
    touched: set[tuple[int | None, str]] = {(con_id, strategy)}
    for sibling in siblings:
        touched.add((sibling.con_id, sibling.strategy))
        target = replaced_by[sibling.execution_id]
        if sibling.superseded_by != target:
            conn.execute(
                fills.update()
                .where(fills.c.execution_id == sibling.execution_id)
                .values(superseded_by=target)
            )

    # Until IB's commissionReport arrives, an estimate stands (NOTES.md).
    estimate = estimate_commission(
        report.sec_type, report.shares, report.price, report.multiplier or ONE
    )
    conn.execute(
        _insert(conn, commissions)
        .values(
            execution_id=report.exec_id,
            commission=estimate,
            currency=report.currency,
            realized_pnl=None,
            estimated=True,
            received_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["execution_id"])
    )

    quantity, avg = cumulative(_fill_records(conn, fills.c.order_id == row.id))
    fsm = _fsm_order(row)
    event = fill_event(fsm, quantity, avg, ts_init=now, ts_event=report.time)
    transition = apply(fsm, event)
    correction = len(siblings) > 1
    row = _save_transition(
        conn,
        row,
        transition,
        now=now,
        payload=report.model_dump(mode="json"),
        dedupe_key=f"exec:{report.exec_id}",
    )
    _refresh_positions(conn, touched, f"exec:{report.exec_id}", now)
    outcome = "corrected" if correction else "recorded"
    return _result(outcome, row, applied=True, note=transition.note or None)


# ----------------------------------------------------------------------------- commissions


def record_commission(conn: Connection, report: CommissionReport, now: datetime) -> LedgerResult:
    """Record IB's commission for an execution (replacing the estimate), fill or no fill yet."""
    existing = conn.execute(
        sa.select(commissions).where(commissions.c.execution_id == report.exec_id)
    ).first()
    if (
        existing is not None
        and not existing.estimated
        and existing.commission == report.commission
        and existing.realized_pnl == report.realized_pnl
        and existing.currency == report.currency
    ):
        return LedgerResult(outcome="duplicate", note="commission already recorded")
    values = {
        "commission": report.commission,
        "currency": report.currency,
        "realized_pnl": report.realized_pnl,
        "estimated": False,
        "updated_at": now,
    }
    conn.execute(
        _insert(conn, commissions)
        .values(execution_id=report.exec_id, received_at=now, **values)
        .on_conflict_do_update(index_elements=["execution_id"], set_=values)
    )
    # Locked: a concurrent adoption (`_adopt_stand_ins`) may be moving this fill to another
    # position; the lock makes this read wait for it and return the fill where it now is, so the
    # commission lands in the position that holds the fill.
    fill = conn.execute(
        sa.select(fills.c.con_id, fills.c.strategy)
        .where(fills.c.execution_id == report.exec_id)
        .with_for_update()
    ).first()
    if fill is None:
        return LedgerResult(outcome="recorded", note="commission before its execution")
    _refresh_positions(conn, [(fill.con_id, fill.strategy)], f"commission:{report.exec_id}", now)
    return LedgerResult(outcome="recorded", applied=True)


# ----------------------------------------------------------------------------- order callbacks


def _apply_ib_event(
    conn: Connection,
    row: Row[Any],
    event: OrderEvent,
    *,
    now: datetime,
    payload: Mapping[str, object],
    dedupe_key: str,
) -> LedgerResult:
    transition = apply(_fsm_order(row), event)
    row = _save_transition(conn, row, transition, now=now, payload=payload, dedupe_key=dedupe_key)
    outcome = "applied" if transition.applied else "recorded"
    return _result(outcome, row, transition.applied, transition.note or None)


def _record_unapplied(
    conn: Connection,
    row: Row[Any],
    *,
    event_type: str,
    reason: str,
    now: datetime,
    payload: Mapping[str, object],
    dedupe_key: str,
    ib_status: str | None = None,
) -> LedgerResult:
    _record_event(
        conn,
        row,
        event_type=event_type,
        applied=False,
        from_state=row.state,
        to_state=row.state,
        now=now,
        ib_status=ib_status,
        reason=reason,
        payload=payload,
        dedupe_key=dedupe_key,
    )
    return _result("recorded", row, applied=False, note=reason)


def _callback_order(
    conn: Connection,
    prefix: str,
    report: OrderStatusReport | OpenOrderReport | OrderErrorReport,
    *,
    perm_id: int | None,
    origin: str,
    now: datetime,
    order_ref: str | None = None,
    describe: Mapping[str, object] | None = None,
) -> tuple[dict[str, Any], str, Row[Any]]:
    """The payload, dedupe key (a hash of the whole callback) and locked order of a callback."""
    payload = report.model_dump(mode="json")
    row = _ensure_order(
        conn,
        order_ref=order_ref,
        client_id=report.client_id,
        ib_order_id=report.order_id,
        perm_id=perm_id,
        fallback_key=f"{prefix}:{report.order_id}",
        describe=describe or {},
        origin=origin,
        now=now,
    )
    return payload, _digest(prefix, payload), row


def _duplicate(row: Row[Any]) -> LedgerResult:
    return _result("duplicate", row, applied=False, note="callback already recorded")


def _apply_ib_status(
    conn: Connection,
    row: Row[Any],
    ib_status: str,
    filled: Decimal,
    remaining: Decimal,
    *,
    now: datetime,
    payload: Mapping[str, object],
    dedupe_key: str,
) -> LedgerResult:
    """Apply an IB order status (orderStatus, or the one an openOrder carries) to the order."""
    try:
        event = event_from_ib_status(ib_status, filled, remaining, now)
    except UnknownIbStatus as e:
        return _record_unapplied(
            conn,
            row,
            event_type=e.code,
            reason=str(e),
            now=now,
            payload=payload,
            dedupe_key=dedupe_key,
            ib_status=ib_status,
        )
    return _apply_ib_event(conn, row, event, now=now, payload=payload, dedupe_key=dedupe_key)


def record_order_status(conn: Connection, report: OrderStatusReport, now: datetime) -> LedgerResult:
    """Advance an order from an orderStatus callback (late and repeated ones are recorded only)."""
    payload, dedupe_key, row = _callback_order(
        conn, "status", report, perm_id=report.perm_id, origin="order_status", now=now
    )
    if _event_recorded(conn, dedupe_key):
        return _duplicate(row)
    return _apply_ib_status(
        conn,
        row,
        report.ib_status,
        report.filled,
        report.remaining,
        now=now,
        payload=payload,
        dedupe_key=dedupe_key,
    )


def _view_stamp(received_at: datetime, dedupe_key: str) -> str:
    """Sortable stamp of one openOrder view: fixed-width UTC receive time, then its digest."""
    return f"{received_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')} {dedupe_key}"


def _open_order_progress(report: OpenOrderReport) -> tuple[Decimal, Decimal]:
    """Filled and remaining quantity as an openOrder implies them (it has no `remaining`)."""
    filled = report.filled_quantity or ZERO
    total = report.total_quantity
    remaining = ZERO if report.ib_status == "Filled" else max((total or filled) - filled, ZERO)
    return filled, remaining


def record_open_order(conn: Connection, report: OpenOrderReport, now: datetime) -> LedgerResult:
    """Take IB's view of an order (target, prices, status); creates orders placed elsewhere.

    A modification changes the target and prices, so the venue's view overwrites ours, but
    only the *newest* view does (by the bridge's receive time, stamped in the order's
    `details["open_order_view"]`): two workers may record two views in either order, and a
    stale target must never stand (100 of a target modified to 150 would make 120 filled
    look complete while IB still works the order).
    """
    describe = {
        "con_id": report.con_id,
        "symbol": report.symbol,
        "sec_type": report.sec_type,
        "action": report.action,
        "quantity": report.total_quantity,
        "order_type": report.order_type,
        "limit_price": report.lmt_price,
        "aux_price": report.aux_price,
        "tif": report.tif,
        "account": report.account,
        "exchange": report.exchange,
    }
    payload, dedupe_key, row = _callback_order(
        conn,
        "open",
        report,
        perm_id=report.perm_id,
        origin="open_order",
        now=now,
        order_ref=report.order_ref,
        describe=describe,
    )
    if _event_recorded(conn, dedupe_key):
        return _duplicate(row)
    stamp = _view_stamp(report.received_at, dedupe_key)
    shown = (row.details or {}).get(OPEN_ORDER_VIEW)
    previous = row.quantity
    if not isinstance(shown, str) or stamp > shown:
        row = _backfill(
            conn, row, describe, overwrite=True, now=now, details={OPEN_ORDER_VIEW: stamp}
        )
    # The view may have changed the target (here, or by naming one the order lacked).
    row = _agree_with_target(conn, row, previous=previous, now=now)
    if report.ib_status is None:
        return _record_unapplied(
            conn,
            row,
            event_type="OPEN_ORDER",
            reason="no order status",
            now=now,
            payload=payload,
            dedupe_key=dedupe_key,
        )
    filled, remaining = _open_order_progress(report)
    return _apply_ib_status(
        conn,
        row,
        report.ib_status,
        filled,
        remaining,
        now=now,
        payload=payload,
        dedupe_key=dedupe_key,
    )


def record_order_error(conn: Connection, report: OrderErrorReport, now: datetime) -> LedgerResult:
    """Apply an error() about an order: rejects, cancel confirmations, failed cancels."""
    payload, dedupe_key, row = _callback_order(
        conn, "error", report, perm_id=None, origin="order_error", now=now
    )
    if _event_recorded(conn, dedupe_key):
        return _duplicate(row)
    event = event_from_ib_error(report.code, report.message, now, ts_event=report.error_time)
    if event is None:
        kind = classify(report.code).kind
        return _record_unapplied(
            conn,
            row,
            event_type=f"IB_{kind.value}",
            reason=f"{report.code}: {report.message}",
            now=now,
            payload=payload,
            dedupe_key=dedupe_key,
        )
    return _apply_ib_event(conn, row, event, now=now, payload=payload, dedupe_key=dedupe_key)


def record_order_replaced(
    conn: Connection, report: OrderReplacedReport, now: datetime
) -> LedgerResult:
    """After IB error 103 the bridge re-placed the order under a new id: follow it.

    Order ids only grow (DESIGN invariant), so of several replacements recorded in any order
    the highest id stands; a link to a lower id than the order's is recorded, not applied. The
    link wins over a stand-in: when a ref-less callback for the new id reached the ledger first
    and opened `ib:{client_id}:{new id}`, that stand-in is adopted here (its fills, events and
    ids pass to our order), so the order ends on the new id whatever the arrival order.
    """
    payload = report.model_dump(mode="json")
    dedupe_key = f"replaced:{report.client_id}:{report.old_order_id}:{report.new_order_id}"
    row = find_order(conn, order_ref=report.client_order_id)
    if row is None:
        raise OrderNotFoundError(f"no order {report.client_order_id}")
    if _event_recorded(conn, dedupe_key):
        return _result("duplicate", row, applied=False, note="replacement already recorded")
    refused: str | None = None
    if row.ib_order_id == report.new_order_id:
        # A callback naming our ref under the new id got here first (`_follow_ib_order_id`).
        refused = f"order already on id {row.ib_order_id}"
    elif row.ib_order_id is not None and report.new_order_id < row.ib_order_id:
        refused = f"order already on id {row.ib_order_id}, not older id {report.new_order_id}"
    else:
        # The link proves the new id is ours: a stand-in that a ref-less callback for it opened
        # before this link was recorded is folded into our order, not allowed to keep the id.
        row = _adopt_stand_ins(
            conn,
            row,
            client_id=report.client_id,
            ib_order_id=report.new_order_id,
            perm_id=None,
            now=now,
        )
        if row.ib_order_id != report.new_order_id and _id_taken(
            conn,
            sa.and_(
                orders_t.c.client_id == report.client_id,
                orders_t.c.ib_order_id == report.new_order_id,
            ),
            row.id,
        ):
            refused = f"id {report.new_order_id} already belongs to another order"
    if refused is not None:
        return _record_unapplied(
            conn,
            row,
            event_type="ORDER_ID_REPLACED",
            reason=refused,
            now=now,
            payload=payload,
            dedupe_key=dedupe_key,
        )
    if row.ib_order_id != report.new_order_id:
        row = _move_ib_order_id(conn, row, report.new_order_id, now)
    _record_event(
        conn,
        row,
        event_type="ORDER_ID_REPLACED",
        applied=True,
        from_state=row.state,
        to_state=row.state,
        now=now,
        reason=report.reason or None,
        payload=payload,
        dedupe_key=dedupe_key,
        ts_event=report.at,
    )
    row = conn.execute(sa.select(orders_t).where(orders_t.c.id == row.id)).one()
    return _result("applied", row, applied=True, note=f"ib order id {report.new_order_id}")


# ----------------------------------------------------------------------------- our own events


def apply_order_event(
    conn: Connection,
    client_order_id: str,
    event: OrderEvent,
    *,
    payload: Mapping[str, object] | None = None,
    dedupe_key: str | None = None,
) -> Transition:
    """Apply one of our own events (SCHEDULED, PLACED, CANCEL_REQUESTED, CLOSED, a risk reject).

    The order row is locked, the transition persisted and the event appended in the caller's
    transaction. A `dedupe_key` makes a retried call a no-op.

    Raises
    ------
    OrderNotFoundError
        No order with this client_order_id.
    InvalidTransition
        The event cannot happen in the order's state (a bug in the caller).
    """
    row = find_order(conn, order_ref=client_order_id)
    if row is None:
        raise OrderNotFoundError(f"no order {client_order_id}")
    fsm = _fsm_order(row)
    if dedupe_key is not None and _event_recorded(conn, dedupe_key):
        return Transition(fsm, fsm, event, applied=False, note="duplicate")
    transition = apply(fsm, event)
    _save_transition(
        conn, row, transition, now=event.ts_init, payload=payload, dedupe_key=dedupe_key
    )
    return transition


def create_order(conn: Connection, values: Mapping[str, object], now: datetime) -> int:
    """Insert a new order of ours (state VALIDATED unless given); returns its row id.

    `values` must hold `client_order_id` and `client_id`; `filled_qty`, `version` and the
    timestamps get their defaults here so every writer creates rows the same way.
    """
    row: dict[str, object] = {
        "state": OrderState.VALIDATED.value,
        "filled_qty": ZERO,
        "created_at": now,
        "updated_at": now,
        "version": 1,
        **values,
    }
    key = conn.execute(orders_t.insert().values(**row)).inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no id for the new order")
    return int(key[0])


def load_order(conn: Connection, client_order_id: str) -> Order | None:
    """The FSM view of an order, or None."""
    row = conn.execute(
        sa.select(orders_t).where(orders_t.c.client_order_id == client_order_id)
    ).first()
    return None if row is None else _fsm_order(row)


# ----------------------------------------------------------------------------- contracts


def record_contract(conn: Connection, report: ContractReport, now: datetime) -> LedgerResult:
    """Upsert the contract cache row for a contractDetails answer (newest answer wins)."""
    details = report.model_dump(mode="json", exclude={"received_at"})
    values: dict[str, object] = {
        "symbol": report.symbol,
        "sec_type": report.sec_type,
        "expiry": report.expiry,
        "strike": report.strike,
        "right": report.right,
        "multiplier": report.multiplier,
        "exchange": report.exchange,
        "primary_exchange": report.primary_exchange,
        "currency": report.currency,
        "local_symbol": report.local_symbol,
        "trading_class": report.trading_class,
        "min_tick": report.min_tick,
        "trading_hours": report.trading_hours,
        "liquid_hours": report.liquid_hours,
        "time_zone_id": report.time_zone_id,
        "details": details,
        "fetched_at": report.received_at,
    }
    current = conn.execute(
        sa.select(contracts.c.fetched_at).where(contracts.c.con_id == report.con_id)
    ).first()
    if current is not None and current.fetched_at >= report.received_at:
        return LedgerResult(outcome="duplicate", note="a newer or equal answer is stored")
    conn.execute(
        _insert(conn, contracts)
        .values(con_id=report.con_id, **values)
        .on_conflict_do_update(index_elements=["con_id"], set_=values)
    )
    return LedgerResult(outcome="recorded", applied=True)


# ----------------------------------------------------------------------------- dispatch

Writer = Callable[[Connection, Any, datetime], LedgerResult]

# Each callback kind the bridge sends (`ibgateway_bridge/payloads.py`): the model its payload
# must validate as, and the function that records it.
WRITERS: dict[str, tuple[type[Any], Writer]] = {
    "execution": (ExecutionReport, record_execution),
    "commission": (CommissionReport, record_commission),
    "order_status": (OrderStatusReport, record_order_status),
    "open_order": (OpenOrderReport, record_open_order),
    "order_error": (OrderErrorReport, record_order_error),
    "order_replaced": (OrderReplacedReport, record_order_replaced),
    "contract": (ContractReport, record_contract),
}
