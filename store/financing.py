"""Queries and writes of `financing_charges` for the statement import
(`services/books/financing.py`); the mark tick and views read them through `store.books`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.financing import KIND, Charge
from store.dialect import upsert
from store.schema import contracts, financing_charges, positions_current, positions_history


def con_id_of(conn: Connection, symbol: str) -> int | None:
    """The stock of this symbol in the contract cache, else a position booked under it."""
    found = conn.execute(
        sa.select(sa.func.min(contracts.c.con_id)).where(
            contracts.c.symbol == symbol, contracts.c.sec_type == "STK"
        )
    ).scalar()
    if found is not None:
        return int(found)
    held = conn.execute(
        sa.select(sa.func.min(positions_current.c.con_id)).where(
            positions_current.c.symbol == symbol
        )
    ).scalar()
    return None if held is None else int(held)


def shorts_at(conn: Connection, con_id: int, before: datetime) -> dict[str, Decimal]:
    """Strategy → short quantity (positive) in the contract as its history stood at `before`."""
    rows = conn.execute(
        sa.select(
            positions_history.c.strategy_id,
            positions_history.c.quantity,
            positions_history.c.recorded_at,
            positions_history.c.id,
        ).where(positions_history.c.con_id == con_id, positions_history.c.recorded_at < before)
    ).all()
    latest: dict[str, tuple[datetime, int, Decimal]] = {}
    for r in rows:
        seen = latest.get(r.strategy_id)
        if seen is None or (r.recorded_at, r.id) > seen[:2]:
            latest[r.strategy_id] = (r.recorded_at, r.id, r.quantity)
    return {s: -q for s, (_, _, q) in latest.items() if q < 0}


def booked_amounts(conn: Connection, base: str) -> list[Decimal]:
    """The amounts stored under a line's key (`base:` followed by the strategy, if any)."""
    prefix = f"{base}:"
    rows = conn.execute(
        sa.select(financing_charges.c.amount).where(
            sa.func.substr(financing_charges.c.charge_key, 1, len(prefix)) == prefix
        )
    ).all()
    return [r.amount for r in rows]


def insert(
    conn: Connection, charges: Sequence[Charge], as_of: dict[int, datetime], now: datetime
) -> int:
    """Store charges (a key stored already is kept as it is); returns how many were new.
    `as_of` maps each charge's source line to its time stamp."""
    added = 0
    for c in charges:
        done = conn.execute(
            upsert(conn, financing_charges)
            .values(
                charge_key=c.charge_key,
                account=c.account,
                kind=KIND,
                con_id=c.con_id,
                strategy_id=c.strategy,
                amount=c.amount,
                currency=c.currency,
                as_of=as_of[c.line],
                details=dict(c.details),
                recorded_at=now,
            )
            .on_conflict_do_nothing(index_elements=["charge_key"])
        )
        added += int(done.rowcount or 0)
    return added
