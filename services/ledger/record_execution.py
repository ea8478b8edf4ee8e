"""Use case: record one execution exactly once, and bring its order and positions up to date.

Idempotent on `execution_id` (a duplicate is a no-op); a correction (same base, higher suffix)
supersedes the earlier fill instead of adding to it (`models.fills.supersession`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from epm.metrics import hooks as metric_hooks
from models.fills import ExecIdError, cumulative, parse_exec_id, supersession
from models.ledger_reports import ExecutionReport, ReportError
from models.ledger_rules import holds_position, positive
from models.orders import apply, fill_event
from services.ledger.fees import estimate_for
from services.ledger.orders import ensure_order, order_fills
from services.ledger.positions import refresh_positions
from services.ledger.result import LedgerResult, duplicate, result_of
from services.ledger.transitions import save_transition
from store import commissions as commissions_repo
from store import fills as fills_repo
from store import orders as orders_repo
from store.schema import UNATTRIBUTED_STRATEGY


def record_execution(conn: Connection, report: ExecutionReport, now: datetime) -> LedgerResult:
    """Record one execution exactly once and bring its order and position up to date.

    Raises
    ------
    ReportError
        `BAD_EXEC_ID` for an execId that identifies nothing.
    """
    try:
        key = parse_exec_id(report.exec_id)
    except ExecIdError as e:
        raise ReportError(e.code, str(e)) from e
    row = ensure_order(
        conn,
        order_ref=report.order_ref,
        client_id=report.client_id,
        ib_order_id=report.ib_order_id,
        perm_id=report.perm_id,
        fallback_key=f"exec:{key.base}",
        describe={
            "con_id": report.con_id,
            "symbol": report.symbol,
            "sec_type": report.sec_type,
            "action": report.side.value,
            "account": report.account,
        },
        origin="execution",
        now=now,
    )
    strategy = row.strategy or UNATTRIBUTED_STRATEGY
    con_id = report.con_id if report.con_id is not None else row.con_id
    inserted = fills_repo.insert_once(
        conn,
        {
            "execution_id": report.exec_id,
            "exec_base": key.base,
            "exec_seq": key.seq,
            "order_id": row.id,
            "order_ref": report.order_ref,
            "ib_order_id": positive(report.ib_order_id),
            "client_id": report.client_id,
            "perm_id": positive(report.perm_id),
            "con_id": con_id,
            "symbol": report.symbol,
            "sec_type": report.sec_type,
            "strategy": strategy,
            "side": report.side.value,
            "shares": report.shares,
            "price": report.price,
            "multiplier": report.multiplier,
            "cum_qty": report.cum_qty,
            "avg_price": report.avg_price,
            "exchange": report.exec_exchange,
            "account": report.account,
            "executed_at": report.time or report.received_at,
            "received_at": report.received_at,
        },
    )
    if not inserted:
        return duplicate(row, note="execution already recorded")
    metric_hooks.execution_recorded(
        conn,
        intent_id=row.intent_id,
        strategy=strategy,
        execution_id=report.exec_id,
        received_at=report.received_at,
        executed_at=report.time or report.received_at,
        now=now,
    )

    # Corrections: the highest suffix of a base replaces every earlier one.
    siblings = fills_repo.of_base(conn, key.base)
    replaced_by = supersession(r.execution_id for r in siblings)
    # A combo's own execution books no position (its legs' executions do).
    touched: set[tuple[int | None, str]] = set()
    if holds_position(report.sec_type):
        touched.add((con_id, strategy))
    for sibling in siblings:
        if holds_position(report.sec_type):
            touched.add((sibling.con_id, sibling.strategy))
        target = replaced_by[sibling.execution_id]
        if sibling.superseded_by != target:
            fills_repo.set_superseded(conn, sibling.execution_id, target)

    # Until IB's commissionReport arrives, an estimate stands (NOTES.md): a correction carries
    # the commission of the execution it replaces, anything else IB's tiered schedule.
    estimate = estimate_for(conn, report, [s.execution_id for s in siblings])
    commissions_repo.insert_estimate(conn, report.exec_id, estimate, report.currency, now)

    quantity, avg = cumulative(order_fills(conn, row))
    fsm = orders_repo.to_fsm(row)
    transition = apply(fsm, fill_event(fsm, quantity, avg, ts_init=now, ts_event=report.time))
    row = save_transition(
        conn,
        row,
        transition,
        now=now,
        payload=report.model_dump(mode="json"),
        dedupe_key=f"exec:{report.exec_id}",
    )
    refresh_positions(conn, touched, f"exec:{report.exec_id}", now)
    outcome = "corrected" if len(siblings) > 1 else "recorded"
    return result_of(outcome, row, applied=True, note=transition.note or None)
