"""The `audit_log` table's one writer and reader: who did what to what, when, and why.

Append-only and hash-chained (`models.audit_chain`): each insert reads the newest row's hash and
chains onto it. Two writers reading the same head would fork the chain, so the head is read under
a lock held to the end of the caller's transaction: `pg_advisory_xact_lock` on PostgreSQL (one
fixed key), and on SQLite the database write lock `store.db.write_transaction` already holds.
The lock is taken as late as possible (this insert is the caller's last statement, ideally), so
writers queue only for the commit; on PostgreSQL lock, head read and insert are one round trip.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.audit_chain import GENESIS, AuditEntry, canonical, json_safe, row_hash
from store.db import json_dumps
from store.schema import audit_log

__all__ = ["AUDIT_LOCK_KEY", "insert_audit", "iter_audit", "recent_audit"]

# pg_advisory_xact_lock key of the audit chain's head ("epmaudit" in ASCII, fits a bigint).
AUDIT_LOCK_KEY = 0x65706D6175646974


def _head_hash(conn: Connection) -> str:
    head = conn.execute(
        sa.select(audit_log.c.row_hash)
        .where(audit_log.c.row_hash.is_not(None))
        .order_by(audit_log.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return GENESIS if head is None else str(head)


# PostgreSQL: lock, read the head and insert in one round trip. The two statements go as one
# simple query; in READ COMMITTED each takes its own snapshot, so the INSERT's head read sees
# every row committed before the lock was granted. sha256 is computed by the server over the
# same bytes `models.audit_chain.row_hash` hashes (verification recomputes it in Python).
_PG_INSERT = (
    "SELECT pg_advisory_xact_lock(%(key)s); "
    "INSERT INTO audit_log (ts, actor, action, target, details, prev_hash, row_hash) "
    "SELECT %(ts)s, %(actor)s, %(action)s, %(target)s, CAST(%(details)s AS jsonb), h.prev, "
    "encode(sha256(convert_to(h.prev || %(canonical)s, 'UTF8')), 'hex') "
    "FROM (SELECT coalesce((SELECT row_hash FROM audit_log WHERE row_hash IS NOT NULL "
    "ORDER BY id DESC LIMIT 1), %(genesis)s) AS prev) AS h"
)


def insert_audit(
    conn: Connection,
    *,
    ts: datetime,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
) -> None:
    """Append one chained row inside the caller's transaction (call it last in that transaction:
    on PostgreSQL it holds the chain's lock until commit)."""
    stored = json_safe(details)
    text = canonical(ts=ts, actor=actor, action=action, target=target, details=stored)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            _PG_INSERT,
            {
                "key": AUDIT_LOCK_KEY,
                "ts": ts.astimezone(UTC),
                "actor": actor,
                "action": action,
                "target": target,
                "details": None if stored is None else json_dumps(stored),
                "canonical": text,
                "genesis": GENESIS,
            },
        )
        return
    prev = _head_hash(conn)
    conn.execute(
        sa.insert(audit_log).values(
            ts=ts,
            actor=actor,
            action=action,
            target=target,
            details=stored,
            prev_hash=prev,
            row_hash=row_hash(prev, text),
        )
    )


def _entry(row: sa.Row[Any]) -> AuditEntry:
    return AuditEntry(
        id=int(row.id),
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=row.details,
        prev_hash=row.prev_hash,
        row_hash=row.row_hash,
    )


def iter_audit(conn: Connection, batch: int = 1000) -> Iterator[AuditEntry]:
    """Every row in id order, read in keyset pages so a long log is not held in memory."""
    after = 0
    while True:
        rows = conn.execute(
            sa.select(audit_log).where(audit_log.c.id > after).order_by(audit_log.c.id).limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield _entry(row)
        after = int(rows[-1].id)


def recent_audit(
    conn: Connection,
    *,
    limit: int,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
) -> list[AuditEntry]:
    """The newest `limit` rows matching the filters, oldest first."""
    query = sa.select(audit_log)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    if target is not None:
        query = query.where(audit_log.c.target == target)
    if since is not None:
        query = query.where(audit_log.c.ts >= since)
    rows = conn.execute(query.order_by(audit_log.c.id.desc()).limit(limit)).all()
    return [_entry(r) for r in reversed(rows)]
