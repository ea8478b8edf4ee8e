"""The audit log's use cases: record an operator action, verify the hash chain, list rows.

The bridge's kill switch must not depend on the ledger (it works while everything else hangs), so
it takes `record_audit` as a callback from the CLI: the Redis audit stream is written first,
always, and this copy follows when a ledger is configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from models.admission import Admit, Refuse
from models.audit_chain import AuditEntry, ChainReport, verify_chain
from models.audit_records import intake_record
from models.limits import Limits
from models.risk import MarketFacts
from store.audit import insert_audit, iter_audit, recent_audit
from store.db import make_engine, write_transaction

__all__ = [
    "audit_intake",
    "audit_order_command",
    "list_audit",
    "record_audit",
    "verify_audit",
]


def record_audit(
    database_url: str,
    actor: str,
    action: str,
    at: datetime,
    details: Mapping[str, Any],
    target: str = "global",
) -> None:
    """Append one audit row in its own transaction (raises when the ledger is unreachable)."""
    engine = make_engine(database_url)
    with write_transaction(engine) as conn:
        insert_audit(conn, ts=at, actor=actor, action=action, target=target, details=details)


def audit_intake(
    conn: Connection,
    decision: Admit | Refuse,
    *,
    now: datetime,
    limits: Limits | None,
    market: MarketFacts | None,
) -> None:
    """The audit row of an intent received and decided, in intake's own transaction (its last
    statement, so the chain's lock is held only for the commit)."""
    rec = intake_record(decision, limits=limits, market=market)
    insert_audit(
        conn, ts=now, actor="intake", action=rec.action, target=rec.target, details=rec.details
    )


def audit_order_command(
    conn: Connection, now: datetime, action: str, order: str, details: Mapping[str, Any]
) -> None:
    """The audit row of an order command (place, modify, cancel) sent to the venue, in the
    transaction that records it."""
    insert_audit(
        conn, ts=now, actor="orders", action=action, target=f"order:{order}", details=details
    )


def verify_audit(engine: Engine, expect: str | None = None) -> ChainReport:
    """Walk the whole log in one read transaction (a consistent view on PostgreSQL too);
    `expect`: a head hash noted earlier that must still be in the chain."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return verify_chain(iter_audit(conn), expect)


def list_audit(
    engine: Engine,
    *,
    limit: int,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
) -> list[AuditEntry]:
    """The newest rows matching the filters, oldest first."""
    with engine.connect() as conn:
        return recent_audit(conn, limit=limit, action=action, target=target, since=since)
