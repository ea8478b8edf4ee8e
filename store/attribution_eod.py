"""Reads of the end-of-day attribution (`services/books/attribution_eod.py`): each position's
mark at a session's close (its last position snapshot by then) and its financing up to it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.fills import ZERO
from store.schema import financing_charges, pnl_snapshots

# A mark older than this at the close is not the close's mark (the stored one is used then).
_MARK_LOOKBACK = timedelta(days=1)


def marks_at(conn: Connection, cutoff: datetime) -> dict[tuple[int, str], Decimal]:
    """(con_id, strategy) → the mark of its last position snapshot at or before `cutoff`
    (within a day of it)."""
    s = pnl_snapshots
    window = sa.and_(
        s.c.scope == "position",
        s.c.ts <= cutoff,
        s.c.ts > cutoff - _MARK_LOOKBACK,
        s.c.mark_price.is_not(None),
    )
    last = (
        sa.select(s.c.scope_key, sa.func.max(s.c.ts).label("ts"))
        .where(window)
        .group_by(s.c.scope_key)
        .subquery()
    )
    rows = conn.execute(
        sa.select(s.c.con_id, s.c.strategy_id, s.c.mark_price)
        .select_from(s.join(last, sa.and_(s.c.scope_key == last.c.scope_key, s.c.ts == last.c.ts)))
        .where(s.c.scope == "position")
    ).all()
    return {
        (int(r.con_id), str(r.strategy_id)): r.mark_price
        for r in rows
        if r.con_id is not None and r.strategy_id is not None
    }


def financing_before(conn: Connection, cutoff: datetime) -> dict[tuple[int, str], Decimal]:
    """Financing per position charged as of a time before `cutoff` (summed here in Python)."""
    rows = conn.execute(
        sa.select(
            financing_charges.c.con_id, financing_charges.c.strategy_id, financing_charges.c.amount
        ).where(
            financing_charges.c.as_of < cutoff,
            financing_charges.c.con_id.is_not(None),
            financing_charges.c.strategy_id.is_not(None),
        )
    ).all()
    out: dict[tuple[int, str], Decimal] = {}
    for r in rows:
        key = (int(r.con_id), str(r.strategy_id))
        out[key] = out.get(key, ZERO) + r.amount
    return out
