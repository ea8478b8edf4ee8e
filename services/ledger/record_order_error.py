"""Use case: apply an error() about an order (rejects, cancel confirmations, failed cancels).

Idempotent on a hash of the callback. Codes that say nothing about the order's state (warnings,
informational messages) are recorded under their class from `models.ib_codes`, not applied.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from models.ib_codes import classify
from models.ledger_reports import OrderErrorReport
from models.orders import event_from_ib_error
from services.ledger.result import LedgerResult, duplicate
from services.ledger.transitions import apply_ib_event, callback_order, record_unapplied
from store import order_events


def record_order_error(conn: Connection, report: OrderErrorReport, now: datetime) -> LedgerResult:
    """Apply an error() about an order: rejects, cancel confirmations, failed cancels."""
    payload, dedupe_key, row = callback_order(
        conn, "error", report, perm_id=None, origin="order_error", now=now
    )
    if order_events.recorded(conn, dedupe_key):
        return duplicate(row)
    event = event_from_ib_error(report.code, report.message, now, ts_event=report.error_time)
    if event is None:
        return record_unapplied(
            conn,
            row,
            event_type=f"IB_{classify(report.code).kind.value}",
            reason=f"{report.code}: {report.message}",
            now=now,
            payload=payload,
            dedupe_key=dedupe_key,
        )
    return apply_ib_event(conn, row, event, now=now, payload=payload, dedupe_key=dedupe_key)
