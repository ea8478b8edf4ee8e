"""Use case: the venue's positions against the ledger's, end of day (beat) and on demand.

Ask the venue (reqPositionsMulti through the bridge's snapshot) → the ledger's
`positions_current` summed per conId over strategies → `models.recon.compare_positions` (above 5
contracts or shares critical, blueprint §12.3; smaller a warning) → one `recon_runs` row, and a
`risk_events` row per critical difference. Nothing is repaired here: a position difference is
for Ops to explain (a missed execution is the executions run's to recover).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.engine import Engine

from models.recon import (
    CRITICAL_QUANTITY,
    ReconStatus,
    compare_positions,
    decimal_text,
    net_by_con_id,
)
from services.recon.executions import ReconResult, save_failed_run, save_run
from services.recon.venue import VenueSnapshots, VenueUnansweredError
from store import recon_runs

KIND = "positions"


def _venue_quantities(
    answer: list[dict[str, Any]],
) -> tuple[dict[int, Decimal], dict[int, str], list[dict[str, Any]]]:
    """(conId → quantity summed over accounts, conId → symbol, answers that could not be read)."""
    rows: list[tuple[int, Decimal]] = []
    symbols: dict[int, str] = {}
    unreadable: list[dict[str, Any]] = []
    for item in answer:
        try:
            con_id = int(item["con_id"])
            quantity = Decimal(str(item["position"]))
        except (KeyError, TypeError, ValueError, InvalidOperation):
            unreadable.append({"type": "unreadable_position", "answer": item})
            continue
        rows.append((con_id, quantity))
        if item.get("symbol"):
            symbols[con_id] = str(item["symbol"])
    return net_by_con_id(rows), symbols, unreadable


def reconcile_positions(
    engine: Engine,
    venue: VenueSnapshots,
    *,
    clock: Callable[[], datetime],
    trigger: str = "on_demand",
    threshold: Decimal = CRITICAL_QUANTITY,
) -> ReconResult:
    """One positions run; `trigger` ("eod", "on_demand") is kept in the run's details."""
    started = clock()
    details: dict[str, Any] = {"trigger": trigger, "threshold": str(threshold)}
    try:
        answer = venue.positions()
    except VenueUnansweredError as e:
        return save_failed_run(engine, KIND, started, clock(), {**details, "reason": str(e)})
    at_venue, symbols, unreadable = _venue_quantities(answer)
    with engine.connect() as conn:
        ledger = net_by_con_id(recon_runs.position_quantities(conn))
        symbols = {**recon_runs.position_symbols(conn), **symbols}
    comparison = compare_positions(at_venue, ledger, symbols, threshold)
    differences: list[dict[str, Any]] = [
        {
            "type": "position",
            "con_id": d.con_id,
            "symbol": d.symbol,
            "venue": decimal_text(d.venue),
            "ledger": decimal_text(d.ledger),
            "difference": decimal_text(d.difference),
            "severity": str(d.status),
        }
        for d in comparison.differences
    ]
    differences.extend(unreadable)
    status = comparison.status
    if unreadable and status is ReconStatus.OK:
        status = ReconStatus.WARNING
    events = [
        {
            "kind": "RECON_POSITION_MISMATCH",
            "severity": "critical",
            "scope": "position",
            "scope_key": str(d.con_id),
            "code": "POSITION_DIFFERENCE",
            "message": (
                f"{d.symbol or d.con_id}: venue {decimal_text(d.venue)}, ledger "
                f"{decimal_text(d.ledger)} (difference {decimal_text(d.difference)}, over "
                f"{decimal_text(threshold)})"
            ),
            "details": {"venue": decimal_text(d.venue), "ledger": decimal_text(d.ledger)},
        }
        for d in comparison.critical
    ]
    return save_run(
        engine,
        kind=KIND,
        status=status,
        started_at=started,
        finished_at=clock(),
        checked=comparison.checked,
        recovered=0,
        differences=differences,
        details=details,
        events=events,
    )


def eod_due(engine: Engine, *, now: datetime, close: datetime | None, delay_s: float) -> bool:
    """Whether today's end-of-day positions run is due: the session closed `delay_s` ago or more
    (`close` None: no session today) and no positions run that answered has started since."""
    if close is None:
        return False
    due_at = close + timedelta(seconds=delay_s)
    if now < due_at:
        return False
    with engine.connect() as conn:
        done = recon_runs.ran_since(conn, KIND, close, statuses=("ok", "warning", "critical"))
    return not done
