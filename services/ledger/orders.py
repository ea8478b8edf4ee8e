"""Which order a callback speaks about: find it, open a stand-in, follow IB's ids, adopt.

An order the ledger does not know (placed in TWS, or by a previous run whose row is gone) is
created from whatever the callback says, keyed `ib:{client_id}:{order_id}` (or
`ib:perm:{perm_id}`), so no execution is ever dropped. When such a stand-in was opened only
because ref-less callbacks (orderStatus, error) beat our order's IB id to the ledger, the first
callback naming our orderRef with those ids folds it into our order (`adopt_stand_ins`). Order
ids only grow: a callback naming our ref under a higher id moves the order onto it
(`follow_ib_order_id`). The rules are `models.ledger_rules`; this module loads and saves.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Connection

from models.fills import ZERO, FillRecord, cumulative
from models.ledger_rules import (
    ADOPTED,
    COMBO_SEC_TYPE,
    adopted_names,
    adopted_order,
    column_changes,
    details_leaving_id,
    follows_to,
    is_stand_in,
    merged_details,
    order_facts,
    positions_touched,
    positive,
    synthetic_client_order_id,
)
from models.orders import OrderState, needs_rederive, rederive, same_facts
from services.ledger.positions import refresh_positions
from store import fills as fills_repo
from store import order_events
from store import orders as orders_repo
from store.orders import OrderRow, StaleOrderError
from store.schema import UNATTRIBUTED_STRATEGY


def order_fills(conn: Connection, row: OrderRow) -> list[FillRecord]:
    """The fills that make up the order's cumulative quantity (`counts_toward_order`)."""
    if row.sec_type == COMBO_SEC_TYPE:
        return fills_repo.records_of_order(conn, row.id, COMBO_SEC_TYPE)
    return fills_repo.records_of_order(conn, row.id)


def backfill(
    conn: Connection,
    row: OrderRow,
    values: Mapping[str, object],
    *,
    overwrite: bool,
    now: datetime,
    details: Mapping[str, object] | None = None,
) -> OrderRow:
    """Set order columns the callback knows: only empty ones, or all of them (`overwrite`).

    `details` keys are merged into the order's `details` JSON in the same update. An IB id that
    another order holds is not taken (the unique keys would refuse it).
    """
    changes = column_changes(dict(row._mapping), values, overwrite=overwrite)
    merged = merged_details(row.details, details)
    if merged is not None:
        changes["details"] = merged
    ib_order_id = changes.get("ib_order_id")
    if isinstance(ib_order_id, int) and orders_repo.ib_order_id_taken(
        conn, row.client_id, ib_order_id, but=row.id
    ):
        changes.pop("ib_order_id")
    perm_id = changes.get("perm_id")
    if isinstance(perm_id, int) and orders_repo.perm_id_taken(conn, perm_id, but=row.id):
        changes.pop("perm_id")
    return orders_repo.update_columns(conn, row, changes, now)


def ensure_order(
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
) -> OrderRow:
    """Find the order a callback speaks about, or create it; then fill in what it tells.

    Only empty columns are set here: which of two callbacks is older is not known at this level
    (`record_open_order` lets the newest view of the venue overwrite).
    """
    ids = {"ib_order_id": positive(ib_order_id), "perm_id": positive(perm_id)}
    row = orders_repo.find_order(
        conn, order_ref=order_ref, client_id=client_id, ib_order_id=ib_order_id, perm_id=perm_id
    )
    if row is not None and order_ref and row.client_order_id == order_ref:
        row = adopt_stand_ins(
            conn, row, client_id=client_id, ib_order_id=ib_order_id, perm_id=perm_id, now=now
        )
        row = follow_ib_order_id(conn, row, client_id=client_id, ib_order_id=ib_order_id, now=now)
    if row is None:
        key = synthetic_client_order_id(client_id, ib_order_id, perm_id, fallback_key)
        # Another worker may be creating the same order right now: the unique keys decide, and
        # whichever callback created it, this one's facts are added below.
        orders_repo.insert_if_absent(
            conn,
            {
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
            },
        )
        row = orders_repo.lock_by_ref(conn, key)
        if row is None:
            row = orders_repo.find_order(
                conn, client_id=client_id, ib_order_id=ib_order_id, perm_id=perm_id
            )
        if row is None:
            raise StaleOrderError(f"order {key} could not be created or found")
    return backfill(conn, row, {**ids, **describe}, overwrite=False, now=now)


def move_ib_order_id(conn: Connection, row: OrderRow, new_id: int, now: datetime) -> OrderRow:
    """Put `row` on IB order id `new_id`, keeping the id it leaves in its details."""
    details = details_leaving_id(row.details, row.ib_order_id, new_id)
    return orders_repo.update_columns(conn, row, {"ib_order_id": new_id, "details": details}, now)


def follow_ib_order_id(
    conn: Connection,
    row: OrderRow,
    *,
    client_id: int | None,
    ib_order_id: int | None,
    now: datetime,
) -> OrderRow:
    """Move our order onto a higher IB order id that a callback naming our ref gives it.

    Without the move every later ref-less callback for the new id would open a stand-in (rule:
    `models.ledger_rules.follows_to`). An id held by another order of ours is left to it.
    Recorded as event `ORDER_ID_FOLLOWED`, the old id in `details["previous_ib_order_ids"]`.
    """
    new_id = follows_to(row.client_id, row.ib_order_id, client_id, ib_order_id)
    if new_id is None or orders_repo.ib_order_id_taken(conn, row.client_id, new_id, but=row.id):
        return row
    old_id = row.ib_order_id
    row = move_ib_order_id(conn, row, new_id, now)
    order_events.append(
        conn,
        row.id,
        event_type="ORDER_ID_FOLLOWED",
        applied=True,
        from_state=row.state,
        to_state=row.state,
        now=now,
        reason=f"ib order id {old_id} -> {new_id}: a callback names our ref with it",
        payload={"old_ib_order_id": old_id, "new_ib_order_id": new_id, "client_id": row.client_id},
    )
    return row


def adopt_stand_ins(
    conn: Connection,
    row: OrderRow,
    *,
    client_id: int | None,
    ib_order_id: int | None,
    perm_id: int | None,
    now: datetime,
) -> OrderRow:
    """Fold into `row` the orders opened from callbacks that beat its IB ids to the ledger.

    orderStatus and error() carry no orderRef. When one is recorded before our order row knows
    its IB order id (two workers, or an orders path that records the id late), the ledger opens
    a stand-in keyed `ib:{client_id}:{order_id}`. The first callback naming both our ref and
    those ids proves they are one order: the stand-in's fills and events move to `row`, its
    recorded IB events are replayed on `row`'s FSM (`models.ledger_rules.adopted_order`), the
    stand-in is deleted and its ids pass to `row`. Without this every later status (the cancel
    confirmation) would keep landing on the stand-in and our order would never move.
    """
    holders = orders_repo.lock_holders(
        conn, client_id=client_id, ib_order_id=ib_order_id, perm_id=perm_id, but=row.id
    )
    stand_ins = [
        h for h in holders if is_stand_in(h.client_order_id, h.details, h.strategy, h.intent_id)
    ]
    if not stand_ins:
        return row
    ids = [h.id for h in stand_ins]
    names = [h.client_order_id for h in stand_ins]
    strategy = row.strategy or UNATTRIBUTED_STRATEGY
    touched = positions_touched(fills_repo.positions_of_orders(conn, ids), strategy)
    fills_repo.move_to_order(conn, ids, row.id, strategy)
    events = order_events.of_orders(conn, ids)
    order_events.move(conn, ids, row.id)
    orders_repo.delete(conn, ids)
    # The stand-ins' ids are ours now; a replacement link (no permId) takes the stand-in's.
    held_perm = next((h.perm_id for h in stand_ins if positive(h.perm_id) is not None), None)
    row = backfill(
        conn,
        row,
        {"ib_order_id": positive(ib_order_id), "perm_id": positive(perm_id) or held_perm},
        overwrite=False,
        now=now,
        details={ADOPTED: adopted_names((row.details or {}).get(ADOPTED), names)},
    )
    before = orders_repo.to_fsm(row)
    filled = cumulative(order_fills(conn, row))
    fsm = adopted_order(before, events, filled, now)
    if fsm != before:
        orders_repo.store_fsm(conn, row, fsm, now)
    order_events.append(
        conn,
        row.id,
        event_type="STAND_IN_ADOPTED",
        applied=fsm != before,
        from_state=before.state.value,
        to_state=fsm.state.value,
        now=now,
        reason=f"adopted {', '.join(names)}",
        payload={"adopted": names},
    )
    refresh_positions(conn, touched, f"adopt:{row.client_order_id}", now)
    return orders_repo.reload(conn, row)


def agree_with_target(
    conn: Connection, row: OrderRow, *, previous: Decimal | None, now: datetime
) -> OrderRow:
    """Re-derive the order from its facts when its state disagrees with its (new) target.

    The newest openOrder view sets the target. A FILLED reached against an earlier target (100
    filled of 100, before the view of the modify to 150 was recorded) must not stick, nor may
    a downsized order miss its completion: the order becomes what its facts make it under the
    target it has now (`models.orders.rederive`), as if the view had been recorded first.
    Recorded as event `TARGET_CHANGED` when that changes the order.
    """
    fsm = orders_repo.to_fsm(row)
    if not needs_rederive(fsm):
        return row
    filled = cumulative(order_fills(conn, row))
    start, facts = order_facts(fsm, order_events.of_orders(conn, [row.id]), filled, now)
    derived = rederive(fsm, start, facts)
    if same_facts(derived, fsm):
        return row
    orders_repo.store_fsm(conn, row, derived, now)
    order_events.append(
        conn,
        row.id,
        event_type="TARGET_CHANGED",
        applied=True,
        from_state=fsm.state.value,
        to_state=derived.state.value,
        now=now,
        reason=f"target now {row.quantity} (was {previous}): re-derived from the order's facts",
        payload={"previous_quantity": previous, "quantity": row.quantity},
    )
    return orders_repo.reload(conn, row)
