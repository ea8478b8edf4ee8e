"""Record an operator action (kill switch, resume, …) in the ledger's `audit_log`.

The bridge's kill switch must not depend on the ledger (it works while everything else hangs), so
it takes this as a callback from the CLI: the Redis audit stream is written first, always, and
this copy follows when a ledger is configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from store.audit import insert_audit
from store.db import make_engine, write_transaction


def record_audit(
    database_url: str,
    actor: str,
    action: str,
    at: datetime,
    details: Mapping[str, str],
    target: str = "global",
) -> None:
    """Append one audit row in its own transaction (raises when the ledger is unreachable)."""
    engine = make_engine(database_url)
    with write_transaction(engine) as conn:
        insert_audit(conn, ts=at, actor=actor, action=action, target=target, details=details)
