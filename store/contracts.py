"""Repository of `contracts`: the cache of IB's contractDetails answers, one row per conId."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.dialect import upsert
from store.schema import contracts


def fetched_at(conn: Connection, con_id: int) -> datetime | None:
    """When the stored answer for this contract was received, or None."""
    row = conn.execute(
        sa.select(contracts.c.fetched_at).where(contracts.c.con_id == con_id)
    ).first()
    return None if row is None else row.fetched_at


def put(conn: Connection, con_id: int, values: Mapping[str, object]) -> None:
    """Insert or replace the stored answer for a contract."""
    conn.execute(
        upsert(conn, contracts)
        .values(con_id=con_id, **values)
        .on_conflict_do_update(index_elements=["con_id"], set_=dict(values))
    )


def find_con_id(
    conn: Connection,
    *,
    symbol: str,
    sec_type: str,
    expiry: str | None = None,
    strike: object = None,
    right: str | None = None,
) -> int | None:
    """The conId of a cached contract matching these terms, or None (several: the lowest)."""
    query = sa.select(contracts.c.con_id).where(
        contracts.c.symbol == symbol, contracts.c.sec_type == sec_type
    )
    if expiry is not None:
        query = query.where(contracts.c.expiry == expiry)
    if right is not None:
        query = query.where(contracts.c.right == right)
    rows = [r.con_id for r in conn.execute(query.order_by(contracts.c.con_id)).all()]
    if strike is not None:
        # Money is text on SQLite: compare strikes as numbers here, not in SQL.
        full = conn.execute(
            sa.select(contracts.c.con_id, contracts.c.strike).where(contracts.c.con_id.in_(rows))
        ).all()
        rows = sorted(r.con_id for r in full if r.strike is not None and r.strike == strike)
    return rows[0] if rows else None


def min_tick(conn: Connection, con_id: int) -> Decimal | None:
    """The contract's minimum price increment, if the venue described it."""
    row = conn.execute(sa.select(contracts.c.min_tick).where(contracts.c.con_id == con_id)).first()
    return None if row is None or row.min_tick is None else Decimal(str(row.min_tick))


def multiplier(conn: Connection, con_id: int) -> Decimal | None:
    """The contract's multiplier, if the venue described it."""
    row = conn.execute(
        sa.select(contracts.c.multiplier).where(contracts.c.con_id == con_id)
    ).first()
    return None if row is None or row.multiplier is None else Decimal(str(row.multiplier))


def described(conn: Connection, con_id: int) -> Mapping[str, object] | None:
    """The cached answer for a contract (its columns), or None."""
    row = conn.execute(sa.select(contracts).where(contracts.c.con_id == con_id)).first()
    return None if row is None else dict(row._mapping)
