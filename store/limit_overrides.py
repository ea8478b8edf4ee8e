"""The `limit_overrides` table: the append-only history of `epm limits set` / `unset`.

The newest row per `path` (by id: rows are only ever appended) is the one in force; a NULL
`value` is an unset, which puts the file's value back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.schema import limit_overrides

__all__ = ["OverrideRow", "history", "in_force", "insert_override"]


@dataclass(frozen=True, slots=True)
class OverrideRow:
    id: int
    path: str
    value: str | None
    actor: str
    reason: str
    set_at: datetime


def insert_override(
    conn: Connection, *, path: str, value: str | None, actor: str, reason: str, set_at: datetime
) -> int:
    """Append one set (or unset, `value` None); the new row's id."""
    result = conn.execute(
        sa.insert(limit_overrides)
        .values(path=path, value=value, actor=actor, reason=reason, set_at=set_at)
        .returning(limit_overrides.c.id)
    )
    return int(result.scalar_one())


def history(conn: Connection, path: str | None = None) -> list[OverrideRow]:
    """Every set and unset, oldest first (of one path, when given)."""
    query = sa.select(limit_overrides).order_by(limit_overrides.c.id)
    if path is not None:
        query = query.where(limit_overrides.c.path == path)
    return [
        OverrideRow(int(r.id), r.path, r.value, r.actor, r.reason, r.set_at)
        for r in conn.execute(query)
    ]


def in_force(conn: Connection) -> dict[str, OverrideRow]:
    """The newest row per path whose value is not an unset: the overrides in force."""
    newest: dict[str, OverrideRow] = {}
    for row in history(conn):
        newest[row.path] = row
    return {p: r for p, r in newest.items() if r.value is not None}
