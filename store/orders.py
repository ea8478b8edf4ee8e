"""Repository of `execution_orders`: find, lock, create and update order rows.

Every reader here that a writer acts on locks the row (`FOR UPDATE`; SQLite's BEGIN IMMEDIATE
already serializes writers), in the order the ledger's use cases rely on: the order row first,
then any stand-in it adopts, then positions (`store.positions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from models.fills import ZERO
from models.ledger_rules import positive
from models.orders import Order, OrderState
from store.dialect import upsert
from store.schema import execution_orders as orders_t

OrderRow = Row[Any]

# The columns of the Redis mirror `exec:order:{client_order_id}` (`order_mirror`).
MIRROR_COLUMNS = (
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


class StaleOrderError(RuntimeError):
    """The order row changed under us (version mismatch); the task retries."""

    code = "STALE_ORDER_VERSION"


def to_fsm(row: OrderRow) -> Order:
    """The order state machine's view of a row."""
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


def order_mirror(row: OrderRow) -> dict[str, str]:
    """The order row as flat strings, for the Redis hash `exec:order:{client_order_id}`."""
    mirror = {k: "" if getattr(row, k) is None else str(getattr(row, k)) for k in MIRROR_COLUMNS}
    mirror["updated_at"] = row.updated_at.isoformat()
    return mirror


def _lock(conn: Connection, where: sa.ColumnElement[bool]) -> OrderRow | None:
    return conn.execute(sa.select(orders_t).where(where).with_for_update()).first()


def reload(conn: Connection, row: OrderRow) -> OrderRow:
    """The row as it is now (after this transaction's writes to it)."""
    return conn.execute(sa.select(orders_t).where(orders_t.c.id == row.id)).one()


def by_id(conn: Connection, row_id: int) -> OrderRow:
    """The order row with this id (it must exist)."""
    return conn.execute(sa.select(orders_t).where(orders_t.c.id == row_id)).one()


def lock_by_ref(conn: Connection, client_order_id: str) -> OrderRow | None:
    """Lock the order with this key (our ref, or a stand-in's synthetic key)."""
    return _lock(conn, orders_t.c.client_order_id == client_order_id)


def find_order(
    conn: Connection,
    *,
    order_ref: str | None = None,
    client_id: int | None = None,
    ib_order_id: int | None = None,
    perm_id: int | None = None,
) -> OrderRow | None:
    """Find (and lock) an order by our ref, then (client_id, IB order id), then permId."""
    if order_ref:
        row = lock_by_ref(conn, order_ref)
        if row is not None:
            return row
    if positive(ib_order_id) is not None and client_id is not None:
        row = _lock(
            conn,
            sa.and_(orders_t.c.client_id == client_id, orders_t.c.ib_order_id == ib_order_id),
        )
        if row is not None:
            return row
    if positive(perm_id) is not None:
        return _lock(conn, orders_t.c.perm_id == perm_id)
    return None


def ib_order_id_taken(conn: Connection, client_id: int, ib_order_id: int, but: int) -> bool:
    """Whether an order other than row `but` holds (client_id, IB order id)."""
    where = sa.and_(orders_t.c.client_id == client_id, orders_t.c.ib_order_id == ib_order_id)
    return _taken(conn, where, but)


def perm_id_taken(conn: Connection, perm_id: int, but: int) -> bool:
    """Whether an order other than row `but` holds this permId."""
    return _taken(conn, orders_t.c.perm_id == perm_id, but)


def _taken(conn: Connection, where: sa.ColumnElement[bool], but: int) -> bool:
    found = conn.execute(sa.select(orders_t.c.id).where(where, orders_t.c.id != but)).first()
    return found is not None


def lock_holders(
    conn: Connection,
    *,
    client_id: int | None,
    ib_order_id: int | None,
    perm_id: int | None,
    but: int,
) -> Sequence[OrderRow]:
    """Lock, in row order, the orders other than `but` holding any of these IB ids."""
    clauses: list[sa.ColumnElement[bool]] = []
    if positive(ib_order_id) is not None and client_id is not None:
        clauses.append(
            sa.and_(orders_t.c.client_id == client_id, orders_t.c.ib_order_id == ib_order_id)
        )
    if positive(perm_id) is not None:
        clauses.append(orders_t.c.perm_id == perm_id)
    if not clauses:
        return []
    return conn.execute(
        sa.select(orders_t)
        .where(sa.or_(*clauses), orders_t.c.id != but)
        .order_by(orders_t.c.id)
        .with_for_update()
    ).all()


def insert_if_absent(conn: Connection, values: Mapping[str, object]) -> None:
    """Insert an order unless one of its unique keys exists (a concurrent creator won)."""
    conn.execute(upsert(conn, orders_t).values(**values).on_conflict_do_nothing())


def update_columns(
    conn: Connection, row: OrderRow, changes: Mapping[str, object], now: datetime
) -> OrderRow:
    """Set columns of the order, bumping its version; returns the row as it now is."""
    if not changes:
        return row
    conn.execute(
        orders_t.update()
        .where(orders_t.c.id == row.id)
        .values(**changes, updated_at=now, version=orders_t.c.version + 1)
    )
    return reload(conn, row)


def store_fsm(conn: Connection, row: OrderRow, new: Order, now: datetime) -> None:
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


def delete(conn: Connection, ids: Sequence[int]) -> None:
    """Delete order rows (stand-ins whose fills and events moved to the order adopting them)."""
    conn.execute(orders_t.delete().where(orders_t.c.id.in_(ids)))


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
    return None if row is None else to_fsm(row)


def claim_due(
    conn: Connection, now: datetime, limit: int, intent_id: int | None = None
) -> Sequence[OrderRow]:
    """Lock up to `limit` scheduled children due by `now`, oldest due first.

    `FOR UPDATE SKIP LOCKED` on PostgreSQL: any number of schedulers (several `orders` workers,
    a second beat started by mistake) each claim different rows and never wait on each other.
    SQLite has no row locks; its BEGIN IMMEDIATE already lets one writer in at a time.
    """
    query = (
        sa.select(orders_t)
        .where(
            orders_t.c.state == OrderState.SCHEDULED.value,
            orders_t.c.due_at.is_not(None),
            orders_t.c.due_at <= now,
        )
        .order_by(orders_t.c.due_at, orders_t.c.id)
        .limit(limit)
    )
    if intent_id is not None:
        query = query.where(orders_t.c.intent_id == intent_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return conn.execute(query).all()


def of_intent(conn: Connection, intent_id: int) -> Sequence[OrderRow]:
    """The intent's child orders, in creation order."""
    return conn.execute(
        sa.select(orders_t).where(orders_t.c.intent_id == intent_id).order_by(orders_t.c.id)
    ).all()


def claim_working_children(conn: Connection, limit: int) -> Sequence[OrderRow]:
    """Lock working child orders of intents (PLACED / PARTIAL_FILLED), skipping locked ones."""
    query = (
        sa.select(orders_t)
        .where(
            orders_t.c.intent_id.is_not(None),
            orders_t.c.ib_order_id.is_not(None),
            orders_t.c.state.in_([OrderState.PLACED.value, OrderState.PARTIAL_FILLED.value]),
        )
        .order_by(orders_t.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return conn.execute(query).all()
