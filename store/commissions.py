"""Repository of `commissions`: IB's commission per execution, or the estimate standing in."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.dialect import upsert
from store.schema import commissions


def insert_estimate(
    conn: Connection, execution_id: str, estimate: Decimal, currency: str | None, now: datetime
) -> None:
    """Store an estimate for an execution unless a commission (IB's or an estimate) is there."""
    conn.execute(
        upsert(conn, commissions)
        .values(
            execution_id=execution_id,
            commission=estimate,
            currency=currency,
            realized_pnl=None,
            estimated=True,
            received_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["execution_id"])
    )


def stored(conn: Connection, execution_id: str) -> dict[str, object] | None:
    """The commission stored for an execution, as a mapping of its columns."""
    row = conn.execute(
        sa.select(commissions).where(commissions.c.execution_id == execution_id)
    ).first()
    return None if row is None else dict(row._mapping)


def put(conn: Connection, execution_id: str, values: Mapping[str, object], now: datetime) -> None:
    """Insert or replace an execution's commission."""
    conn.execute(
        upsert(conn, commissions)
        .values(execution_id=execution_id, received_at=now, **values)
        .on_conflict_do_update(index_elements=["execution_id"], set_=dict(values))
    )


def of_executions(conn: Connection, execution_ids: list[str]) -> dict[str, Decimal]:
    """The commission stored (IB's or the estimate) for each of these executions that has one."""
    rows = conn.execute(
        sa.select(commissions.c.execution_id, commissions.c.commission).where(
            commissions.c.execution_id.in_(execution_ids)
        )
    ).all()
    return {r.execution_id: r.commission for r in rows}
