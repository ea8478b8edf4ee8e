"""The one query a replay's stepped clock needs beyond the orders path's own: when the next
scheduled child is due, so the scheduler tick runs only at instants where it has work (a replay
skips the idle seconds beat would spend)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.schema import execution_orders


def next_due(conn: Connection) -> datetime | None:
    """The earliest `due_at` of a SCHEDULED child (UtcDateTime orders as time on both dialects)."""
    found: datetime | None = conn.execute(
        sa.select(sa.func.min(execution_orders.c.due_at)).where(
            execution_orders.c.state == "SCHEDULED"
        )
    ).scalar()
    return found
