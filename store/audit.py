"""The `audit_log` table's one writer: who did what to what, when, and why (append-only)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.schema import audit_log


def insert_audit(
    conn: Connection,
    *,
    ts: datetime,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, str],
) -> None:
    conn.execute(
        sa.insert(audit_log).values(
            ts=ts, actor=actor, action=action, target=target, details=dict(details)
        )
    )
