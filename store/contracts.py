"""Repository of `contracts`: the cache of IB's contractDetails answers, one row per conId."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

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
