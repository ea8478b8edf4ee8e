"""Fees: the estimate that stands in for IB's commission, and the error it turns out to have.

The estimate is IB's tiered schedule (`models.fills.estimate_tiered`) at the month's stock
volume tier named by `EPM_LEDGER_MONTHLY_SHARES` (default 0: the first tier, 0.0035 a share); a
correction is charged what the execution it replaces was charged (the venue carries that
commission over). When IB's commissionReport replaces an estimate, the difference is recorded on
the order as event `COMMISSION_REPORTED` (payload: exec_id, estimate, commission, error), so the
estimate's accuracy can be measured against the venue.
"""

from __future__ import annotations

import os
from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Connection

from models.fills import ONE, TieredSchedule, carried_commission, estimate_tiered, tiered_schedule
from models.ledger_reports import ExecutionReport
from store import commissions as commissions_repo
from store import fills as fills_repo
from store import order_events

MONTHLY_SHARES_ENV = "EPM_LEDGER_MONTHLY_SHARES"


def schedule() -> TieredSchedule:
    """The tiered schedule for the configured monthly volume (`EPM_LEDGER_MONTHLY_SHARES`)."""
    raw = os.environ.get(MONTHLY_SHARES_ENV, "0").strip() or "0"
    try:
        shares = int(raw)
    except ValueError:
        shares = 0
    return tiered_schedule(max(shares, 0))


def estimate_for(conn: Connection, report: ExecutionReport, sibling_ids: list[str]) -> Decimal:
    """The commission to stand in for `report` until IB's report: carried over from the
    execution it corrects when that one has a commission, else the tiered estimate."""
    if len(sibling_ids) > 1:
        stored = commissions_repo.of_executions(conn, sibling_ids)
        carried = carried_commission(report.exec_id, ((i, stored.get(i)) for i in sibling_ids))
        if carried is not None:
            return carried
    return estimate_tiered(
        schedule(), report.sec_type, report.shares, report.price, report.multiplier or ONE
    )


def record_estimate_error(
    conn: Connection, exec_id: str, estimate: Decimal, commission: Decimal, now: datetime
) -> None:
    """Record on the execution's order how far the estimate was from IB's commission."""
    booked = fills_repo.order_and_state_of(conn, exec_id)
    if booked is None:
        return
    order_id, state = booked
    order_events.append(
        conn,
        order_id,
        event_type="COMMISSION_REPORTED",
        applied=False,
        from_state=state,
        to_state=state,
        now=now,
        reason=f"IB commission {commission} replaced the estimate {estimate}",
        payload={
            "exec_id": exec_id,
            "estimate": str(estimate),
            "commission": str(commission),
            "error": str(commission - estimate),
        },
        dedupe_key=f"fee:{exec_id}",
    )
