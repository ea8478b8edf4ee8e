"""Repository of `risk_events`: what epm refused or flagged, with its reason code."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.engine import Connection

from store.schema import risk_events


def record(
    conn: Connection,
    *,
    kind: str,
    severity: str,
    scope: str,
    scope_key: str | None,
    code: str,
    message: str,
    details: Mapping[str, object] | None,
    now: datetime,
) -> None:
    """Append one event (the message is cut to the column's 2,000 characters)."""
    conn.execute(
        risk_events.insert().values(
            kind=kind,
            severity=severity,
            scope=scope,
            scope_key=scope_key,
            code=code,
            message=message[:2000],
            details=dict(details) if details is not None else None,
            ts_event=now,
            created_at=now,
        )
    )
