"""Use case: after IB error 103 the bridge re-placed our order under a new id: follow it.

Idempotent on (client_id, old id, new id). Order ids only grow (DESIGN invariant), so of several
replacements recorded in any order the highest id stands (`models.ledger_rules
.replacement_refusal`). The link wins over a stand-in: when a ref-less callback for the new id
reached the ledger first and opened `ib:{client_id}:{new id}`, that stand-in is adopted here, so
the order ends on the new id whatever the arrival order.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from models.ledger_reports import OrderReplacedReport
from models.ledger_rules import replacement_refusal
from services.ledger.orders import adopt_stand_ins, move_ib_order_id
from services.ledger.result import LedgerResult, OrderNotFoundError, duplicate, result_of
from services.ledger.transitions import record_unapplied
from store import order_events
from store import orders as orders_repo


def record_order_replaced(
    conn: Connection, report: OrderReplacedReport, now: datetime
) -> LedgerResult:
    """Move our order onto the id the bridge re-placed it under (unless a higher one stands)."""
    payload = report.model_dump(mode="json")
    dedupe_key = f"replaced:{report.client_id}:{report.old_ib_order_id}:{report.new_ib_order_id}"
    row = orders_repo.find_order(conn, order_ref=report.client_order_id)
    if row is None:
        raise OrderNotFoundError(f"no order {report.client_order_id}")
    if order_events.recorded(conn, dedupe_key):
        return duplicate(row, note="replacement already recorded")
    refused = replacement_refusal(row.ib_order_id, report.new_ib_order_id)
    if refused is None:
        # The link proves the new id is ours: a stand-in that a ref-less callback for it opened
        # before this link was recorded is folded into our order, not allowed to keep the id.
        row = adopt_stand_ins(
            conn,
            row,
            client_id=report.client_id,
            ib_order_id=report.new_ib_order_id,
            perm_id=None,
            now=now,
        )
        if row.ib_order_id != report.new_ib_order_id and orders_repo.ib_order_id_taken(
            conn, report.client_id, report.new_ib_order_id, but=row.id
        ):
            refused = f"id {report.new_ib_order_id} already belongs to another order"
    if refused is not None:
        return record_unapplied(
            conn,
            row,
            event_type="ORDER_ID_REPLACED",
            reason=refused,
            now=now,
            payload=payload,
            dedupe_key=dedupe_key,
        )
    if row.ib_order_id != report.new_ib_order_id:
        row = move_ib_order_id(conn, row, report.new_ib_order_id, now)
    order_events.append(
        conn,
        row.id,
        event_type="ORDER_ID_REPLACED",
        applied=True,
        from_state=row.state,
        to_state=row.state,
        now=now,
        reason=report.reason or None,
        payload=payload,
        dedupe_key=dedupe_key,
        ts_event=report.at,
    )
    row = orders_repo.reload(conn, row)
    return result_of("applied", row, applied=True, note=f"ib order id {report.new_ib_order_id}")
