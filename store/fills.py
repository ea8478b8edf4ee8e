"""Repository of `fills`: one row per execution, corrections linked by `superseded_by`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.fills import ONE, FillRecord, Side
from store.dialect import upsert
from store.schema import commissions, execution_orders, fills


def insert_once(conn: Connection, values: Mapping[str, object]) -> bool:
    """Insert an execution; False when its execution_id is recorded already."""
    inserted = conn.execute(
        upsert(conn, fills).values(**values).on_conflict_do_nothing(index_elements=["execution_id"])
    )
    return bool(inserted.rowcount)


@dataclass(frozen=True, slots=True)
class Version:
    """One execution of a base, as corrections are decided on (`models.fills.supersession`)."""

    execution_id: str
    superseded_by: str | None
    con_id: int | None
    strategy: str


def of_base(conn: Connection, exec_base: str) -> list[Version]:
    """Every execution of one base (the original and its corrections)."""
    rows = conn.execute(
        sa.select(
            fills.c.execution_id, fills.c.superseded_by, fills.c.con_id, fills.c.strategy
        ).where(fills.c.exec_base == exec_base)
    ).all()
    return [Version(r.execution_id, r.superseded_by, r.con_id, r.strategy) for r in rows]


def set_superseded(conn: Connection, execution_id: str, by: str | None) -> None:
    conn.execute(
        fills.update().where(fills.c.execution_id == execution_id).values(superseded_by=by)
    )


def _records(conn: Connection, where: sa.ColumnElement[bool]) -> list[FillRecord]:
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


def records_of_order(
    conn: Connection, order_id: int, sec_type: str | None = None
) -> list[FillRecord]:
    """The order's fills (every version: `models.fills` picks the effective ones), only those
    of `sec_type` when given (a combo's own executions)."""
    where = fills.c.order_id == order_id
    if sec_type is not None:
        where = sa.and_(where, fills.c.sec_type == sec_type)
    return _records(conn, where)


def records_of_position(conn: Connection, con_id: int, strategy: str) -> list[FillRecord]:
    """The fills of one (con_id, strategy) position, with their commissions."""
    return _records(conn, sa.and_(fills.c.con_id == con_id, fills.c.strategy == strategy))


def positions_of_orders(conn: Connection, order_ids: Sequence[int]) -> list[tuple[int | None, str]]:
    """The (con_id, strategy) each fill of these orders is booked in."""
    rows = conn.execute(
        sa.select(fills.c.con_id, fills.c.strategy).where(fills.c.order_id.in_(order_ids))
    ).all()
    return [(r.con_id, r.strategy) for r in rows]


def move_to_order(
    conn: Connection, from_orders: Sequence[int], order_id: int, strategy: str
) -> None:
    """Re-attach the fills of `from_orders` to `order_id`, booked under its strategy."""
    conn.execute(
        fills.update()
        .where(fills.c.order_id.in_(from_orders))
        .values(order_id=order_id, strategy=strategy)
    )


def lock_position_of(conn: Connection, execution_id: str) -> tuple[int | None, str] | None:
    """Lock an execution and return where it is booked, or None if it is not recorded yet.

    Locked: a concurrent adoption may be moving this fill to another position; the lock makes
    this read wait for it and return the fill where it now is.
    """
    row = conn.execute(
        sa.select(fills.c.con_id, fills.c.strategy)
        .where(fills.c.execution_id == execution_id)
        .with_for_update()
    ).first()
    return None if row is None else (row.con_id, row.strategy)


def symbol_of(conn: Connection, con_id: int) -> str | None:
    """The symbol a fill of this contract carried, if any did."""
    found = conn.execute(
        sa.select(fills.c.symbol).where(fills.c.con_id == con_id, fills.c.symbol.is_not(None))
    ).first()
    return None if found is None else str(found[0])


def account_of(conn: Connection, con_id: int, strategy: str) -> str | None:
    """The account a fill of this position carried, if any did."""
    found = conn.execute(
        sa.select(fills.c.account).where(
            fills.c.con_id == con_id, fills.c.strategy == strategy, fills.c.account.is_not(None)
        )
    ).first()
    return None if found is None else str(found[0])


def order_and_state_of(conn: Connection, execution_id: str) -> tuple[int, str] | None:
    """The order an execution is booked on and that order's state, or None if not recorded."""
    row = conn.execute(
        sa.select(fills.c.order_id, execution_orders.c.state)
        .select_from(fills.join(execution_orders, execution_orders.c.id == fills.c.order_id))
        .where(fills.c.execution_id == execution_id)
    ).first()
    return None if row is None else (int(row.order_id), str(row.state))
