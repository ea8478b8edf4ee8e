"""Use case: record IB's commission for an execution (replacing the estimate), fill or no fill.

Idempotent on `execution_id`; a commissionReport may arrive before its execution, and then the
position is refreshed when the execution is recorded.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Connection

from models.ledger_reports import CommissionReport
from models.ledger_rules import commission_unchanged
from services.ledger.fees import record_estimate_error
from services.ledger.positions import refresh_positions
from services.ledger.result import LedgerResult
from store import commissions as commissions_repo
from store import fills as fills_repo


def record_commission(conn: Connection, report: CommissionReport, now: datetime) -> LedgerResult:
    """Record IB's commission for an execution (replacing the estimate), fill or no fill yet."""
    stored = commissions_repo.stored(conn, report.exec_id)
    if commission_unchanged(stored, report.commission, report.realized_pnl, report.currency):
        return LedgerResult(outcome="duplicate", note="commission already recorded")
    commissions_repo.put(
        conn,
        report.exec_id,
        {
            "commission": report.commission,
            "currency": report.currency,
            "realized_pnl": report.realized_pnl,
            "estimated": False,
            "updated_at": now,
        },
        now,
    )
    # Locked: the commission must land in the position that holds the fill now, even while a
    # concurrent adoption moves it.
    booked = fills_repo.lock_position_of(conn, report.exec_id)
    # After the lock, for the same reason: the fill's order is the one it is on now.
    estimate = stored["commission"] if stored is not None and stored["estimated"] else None
    if isinstance(estimate, Decimal):
        record_estimate_error(conn, report.exec_id, estimate, report.commission, now)
    if booked is None:
        return LedgerResult(outcome="recorded", note="commission before its execution")
    refresh_positions(conn, [booked], f"commission:{report.exec_id}", now)
    return LedgerResult(outcome="recorded", applied=True)
