"""Reads and deletes of `pnl_snapshots` for their retention (`services/books/retention.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.snapshot_retention import SnapshotKey
from store.schema import pnl_snapshots

_CHUNK = 5000


def oldest(conn: Connection) -> datetime | None:
    found: datetime | None = conn.execute(sa.select(sa.func.min(pnl_snapshots.c.ts))).scalar()
    return found


def keys_between(conn: Connection, start: datetime, end: datetime) -> list[SnapshotKey]:
    s = pnl_snapshots.c
    rows = conn.execute(
        sa.select(s.id, s.scope, s.scope_key, s.ts).where(s.ts >= start, s.ts < end)
    ).all()
    return [SnapshotKey(int(r.id), r.scope, r.scope_key, r.ts) for r in rows]


def delete_ids(conn: Connection, ids: Sequence[int]) -> int:
    done = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        done += int(
            conn.execute(pnl_snapshots.delete().where(pnl_snapshots.c.id.in_(chunk))).rowcount or 0
        )
    return done


def delete_before(conn: Connection, cutoff: datetime) -> int:
    done = conn.execute(pnl_snapshots.delete().where(pnl_snapshots.c.ts < cutoff))
    return int(done.rowcount or 0)
