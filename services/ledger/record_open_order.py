"""Use case: take IB's view of an order (target, prices, status) from an openOrder callback.

A modification changes the target and prices, so the venue's view overwrites ours, but only the
*newest* view does (`models.ledger_rules.is_newest_view`, by the bridge's receive time stamped in
the order's `details["open_order_view"]`). Orders placed elsewhere are created from the view.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from models.ledger_reports import OpenOrderReport
from models.ledger_rules import OPEN_ORDER_VIEW, is_newest_view, open_order_progress, view_stamp
from services.ledger.orders import agree_with_target, backfill
from services.ledger.result import LedgerResult, duplicate
from services.ledger.transitions import apply_ib_status, callback_order, record_unapplied
from store import order_events


def record_open_order(conn: Connection, report: OpenOrderReport, now: datetime) -> LedgerResult:
    """Take IB's view of an order (target, prices, status); creates orders placed elsewhere."""
    describe = {
        "con_id": report.con_id,
        "symbol": report.symbol,
        "sec_type": report.sec_type,
        "action": report.action,
        "quantity": report.total_quantity,
        "order_type": report.order_type,
        "limit_price": report.lmt_price,
        "aux_price": report.aux_price,
        "tif": report.tif,
        "account": report.account,
        "exchange": report.exchange,
    }
    payload, dedupe_key, row = callback_order(
        conn,
        "open",
        report,
        perm_id=report.perm_id,
        origin="open_order",
        now=now,
        order_ref=report.order_ref,
        describe=describe,
    )
    if order_events.recorded(conn, dedupe_key):
        return duplicate(row)
    stamp = view_stamp(report.received_at, dedupe_key)
    previous = row.quantity
    if is_newest_view(stamp, (row.details or {}).get(OPEN_ORDER_VIEW)):
        row = backfill(
            conn, row, describe, overwrite=True, now=now, details={OPEN_ORDER_VIEW: stamp}
        )
    # The view may have changed the target (here, or by naming one the order lacked).
    row = agree_with_target(conn, row, previous=previous, now=now)
    if report.ib_status is None:
        return record_unapplied(
            conn,
            row,
            event_type="OPEN_ORDER",
            reason="no order status",
            now=now,
            payload=payload,
            dedupe_key=dedupe_key,
        )
    filled, remaining = open_order_progress(report)
    return apply_ib_status(
        conn,
        row,
        report.ib_status,
        filled,
        remaining,
        now=now,
        payload=payload,
        dedupe_key=dedupe_key,
    )
