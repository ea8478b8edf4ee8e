"""Repository of an admitted intent's life in `intents`: locked reads and status changes.

Intake (`store.intents`) creates the row; the orders path moves it VALIDATED → WORKING →
DONE / CANCELLED, or REJECTED when no plan can be made.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from store.schema import intents


def lock(conn: Connection, intent_id: int) -> Row[Any] | None:
    """Lock the intent's row (FOR UPDATE on PostgreSQL) and return it."""
    return conn.execute(
        sa.select(intents).where(intents.c.id == intent_id).with_for_update()
    ).first()


def by_signal_id(conn: Connection, signal_id: str) -> Row[Any] | None:
    return conn.execute(sa.select(intents).where(intents.c.signal_id == signal_id)).first()


def with_status(conn: Connection, statuses: list[str], limit: int = 100) -> list[Row[Any]]:
    """Intents in any of `statuses`, oldest first."""
    return list(
        conn.execute(
            sa.select(intents)
            .where(intents.c.status.in_(statuses))
            .order_by(intents.c.id)
            .limit(limit)
        ).all()
    )


def recent(conn: Connection, limit: int) -> list[Row[Any]]:
    """The newest intents first."""
    return list(conn.execute(sa.select(intents).order_by(intents.c.id.desc()).limit(limit)).all())


def set_status(
    conn: Connection,
    intent_id: int,
    status: str,
    now: datetime,
    *,
    reason: str | None = None,
    message: str | None = None,
) -> None:
    values: dict[str, object] = {"status": status, "updated_at": now}
    if reason is not None:
        values["reject_reason"] = reason
        values["reject_message"] = message
    conn.execute(intents.update().where(intents.c.id == intent_id).values(**values))


def set_con_id(conn: Connection, intent_id: int, con_id: int, now: datetime) -> None:
    conn.execute(
        intents.update().where(intents.c.id == intent_id).values(con_id=con_id, updated_at=now)
    )


def with_prefix(conn: Connection, prefix: str) -> list[Row[Any]]:
    """Intents whose signal_id starts with `prefix`, oldest first."""
    return list(
        conn.execute(
            sa.select(intents).where(intents.c.signal_id.startswith(prefix)).order_by(intents.c.id)
        ).all()
    )


def latest_for(conn: Connection, strategy: str, con_id: int) -> Row[Any] | None:
    """The newest intent of `strategy` on contract `con_id`."""
    return conn.execute(
        sa.select(intents)
        .where(intents.c.strategy == strategy, intents.c.con_id == con_id)
        .order_by(intents.c.id.desc())
        .limit(1)
    ).first()


def fill_con_id(conn: Connection, intent_id: int, con_id: int, now: datetime) -> None:
    """Record the intent's conId once it is resolved (a no-op when it already has one)."""
    conn.execute(
        intents.update()
        .where(intents.c.id == intent_id, intents.c.con_id.is_(None))
        .values(con_id=con_id, updated_at=now)
    )
