"""The orders an operator watches (`epm top`): every order not in a terminal state, newest first."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.orders import TERMINAL_STATES
from store.schema import execution_orders


def working_orders(conn: Connection, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Up to `limit` non-terminal orders (newest first) and how many there are in all."""
    t = execution_orders
    live = t.c.state.not_in(sorted(s.value for s in TERMINAL_STATES))
    total = int(conn.execute(sa.select(sa.func.count()).select_from(t).where(live)).scalar_one())
    rows = conn.execute(
        sa.select(
            t.c.client_order_id,
            t.c.ib_order_id,
            t.c.strategy,
            t.c.symbol,
            t.c.con_id,
            t.c.action,
            t.c.quantity,
            t.c.filled_qty,
            t.c.order_type,
            t.c.limit_price,
            t.c.state,
            t.c.last_ib_status,
            t.c.updated_at,
        )
        .where(live)
        .order_by(t.c.updated_at.desc(), t.c.id.desc())
        .limit(limit)
    ).all()
    return [dict(r._mapping) for r in rows], total
