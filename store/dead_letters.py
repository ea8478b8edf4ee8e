"""The `ledger_dead_letters` repository: callbacks parked for an operator, listed, resolved.

A letter is keyed by a hash of its callback (kind and payload), so the same callback failing
again (a redelivery, the bridge re-sending executions after a reconnect, a failed replay) adds
its attempts to one letter instead of opening another. Functions run in the caller's
transaction (`store.db.write_transaction` for writes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from store.db import json_dumps
from store.schema import ledger_dead_letters as letters

_MESSAGE_CHARS = 4000


@dataclass(frozen=True)
class DeadLetter:
    """One parked callback, with what it takes to replay it."""

    id: int
    kind: str
    payload: Any
    task_name: str | None
    task_id: str | None
    error_code: str
    error_class: str
    message: str | None
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    resolved_at: datetime | None
    resolution: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON primitives (times ISO-8601 UTC) for `epm ledger dead-letters --json`."""
        row: dict[str, Any] = dict(self.__dict__)
        for name in ("first_failed_at", "last_failed_at", "resolved_at"):
            value = row[name]
            row[name] = value.isoformat() if value is not None else None
        return row


def dedupe_key(kind: str, payload: object) -> str:
    """The letter's key: sha256 of the kind and the payload's canonical JSON."""
    try:
        blob = json_dumps(payload)
    except (TypeError, ValueError):
        blob = repr(payload)
    return hashlib.sha256(f"{kind}\n{blob}".encode()).hexdigest()


def park(
    conn: Connection,
    *,
    kind: str,
    payload: object,
    error_code: str,
    error_class: str,
    message: str,
    attempts: int,
    first_failed_at: datetime,
    now: datetime,
    task_name: str | None = None,
    task_id: str | None = None,
) -> int:
    """Insert the letter, or add `attempts` to the open one of the same callback; its id.

    A letter of this callback that had been resolved opens again (`resolved_at` cleared).
    """
    values: dict[str, Any] = {
        "kind": kind,
        "dedupe_key": dedupe_key(kind, payload),
        "payload": payload,
        "task_name": task_name,
        "task_id": task_id,
        "error_code": error_code,
        "error_class": error_class,
        "message": message[:_MESSAGE_CHARS],
        "attempts": attempts,
        "first_failed_at": first_failed_at,
        "last_failed_at": now,
        "resolved_at": None,
        "resolution": None,
    }
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(letters)
    stmt = insert.values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[letters.c.dedupe_key],
        set_={
            "attempts": letters.c.attempts + stmt.excluded.attempts,
            "last_failed_at": stmt.excluded.last_failed_at,
            "error_code": stmt.excluded.error_code,
            "error_class": stmt.excluded.error_class,
            "message": stmt.excluded.message,
            "task_name": stmt.excluded.task_name,
            "task_id": stmt.excluded.task_id,
            "resolved_at": None,
            "resolution": None,
        },
    ).returning(letters.c.id)
    return int(conn.execute(stmt).scalar_one())


def get(conn: Connection, letter_id: int, *, for_update: bool = False) -> DeadLetter | None:
    query = sa.select(letters).where(letters.c.id == letter_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    return _letter(row._mapping) if row is not None else None


def list_letters(conn: Connection, *, include_resolved: bool = False) -> list[DeadLetter]:
    """Open letters (or all), oldest first."""
    query = sa.select(letters).order_by(letters.c.id)
    if not include_resolved:
        query = query.where(letters.c.resolved_at.is_(None))
    return [_letter(row._mapping) for row in conn.execute(query)]


def open_ids(conn: Connection) -> list[int]:
    query = sa.select(letters.c.id).where(letters.c.resolved_at.is_(None)).order_by(letters.c.id)
    return [int(i) for i in conn.execute(query).scalars()]


def count_open(conn: Connection) -> int:
    query = sa.select(sa.func.count()).where(letters.c.resolved_at.is_(None))
    return int(conn.execute(query).scalar_one())


def resolve(conn: Connection, letter_id: int, *, resolution: str, now: datetime) -> bool:
    """Mark an open letter resolved; False when it was already resolved (or is unknown)."""
    done = conn.execute(
        letters.update()
        .where(letters.c.id == letter_id, letters.c.resolved_at.is_(None))
        .values(resolved_at=now, resolution=resolution[:_MESSAGE_CHARS])
    )
    return bool(done.rowcount)


def record_failure(
    conn: Connection, letter_id: int, *, error_class: str, message: str, now: datetime
) -> None:
    """A replay failed again: one more attempt, the newest error."""
    conn.execute(
        letters.update()
        .where(letters.c.id == letter_id)
        .values(
            attempts=letters.c.attempts + 1,
            last_failed_at=now,
            error_class=error_class,
            message=message[:_MESSAGE_CHARS],
        )
    )


def _letter(row: Any) -> DeadLetter:
    return DeadLetter(
        id=int(row["id"]),
        kind=row["kind"],
        payload=row["payload"],
        task_name=row["task_name"],
        task_id=row["task_id"],
        error_code=row["error_code"],
        error_class=row["error_class"],
        message=row["message"],
        attempts=int(row["attempts"]),
        first_failed_at=row["first_failed_at"],
        last_failed_at=row["last_failed_at"],
        resolved_at=row["resolved_at"],
        resolution=row["resolution"],
    )
