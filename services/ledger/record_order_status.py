"""Use case: advance an order from an orderStatus callback.

Idempotent on a hash of the callback; IB's own repeats and late statuses are recorded, not
applied (the state machine is monotone, `models.orders`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from models.ledger_reports import OrderStatusReport
from services.ledger.result import LedgerResult, duplicate
from services.ledger.transitions import apply_ib_status, callback_order
from store import order_events


def record_order_status(conn: Connection, report: OrderStatusReport, now: datetime) -> LedgerResult:
    """Advance an order from an orderStatus callback (late and repeated ones are recorded only)."""
    payload, dedupe_key, row = callback_order(
        conn, "status", report, perm_id=report.perm_id, origin="order_status", now=now
    )
    if order_events.recorded(conn, dedupe_key):
        return duplicate(row)
    return apply_ib_status(
        conn,
        row,
        report.ib_status,
        report.filled,
        report.remaining,
        now=now,
        payload=payload,
        dedupe_key=dedupe_key,
    )
