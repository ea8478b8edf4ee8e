"""Use case: the venue's executions against the ledger's fills, every 5 minutes (beat).

Ask the venue (reqExecutions since the start of the trading day, through the bridge's snapshot)
→ load the ledger's fills → `models.recon.compare_executions` → every missing execution goes
through the ledger's own write path (`services.ledger.callbacks.process_callback`, the body of a
live fill's task: idempotent on execId, so a live copy landing meanwhile is a duplicate, not a
second fill) and counts as recovered only when that write recorded it → fills the venue does not
know are flagged (a `risk_events` row) → one `recon_runs` row. A venue that does not answer
gives a `failed` run, never an `ok` one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis
from sqlalchemy.engine import Engine

from epm.logging import get_logger
from models.recon import (
    CRITICAL_QUANTITY,
    ReconStatus,
    compare_executions,
    decimal_text,
    executions_status,
    unknown_by_con_id,
)
from services.ledger.callbacks import process_callback
from services.recon.venue import VenueSnapshots, VenueUnansweredError
from store import recon_runs, risk_events
from store.db import write_transaction

log = get_logger(__name__)

KIND = "executions"
# Ledger outcomes that did not add the execution (someone else had, or the ledger refused it).
_NOT_RECOVERED = frozenset({"duplicate", "rejected"})


@dataclass(frozen=True, slots=True)
class ReconResult:
    """One run, as recorded (`recon_runs`) and as the CLI prints it."""

    run_id: int
    kind: str
    status: ReconStatus
    checked: int
    recovered: int
    flagged: int
    differences: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": str(self.status),
            "checked": self.checked,
            "recovered": self.recovered,
            "flagged": self.flagged,
            "differences": self.differences,
            "details": self.details,
        }


def save_failed_run(
    engine: Engine,
    kind: str,
    started_at: datetime,
    finished_at: datetime,
    details: dict[str, Any],
) -> ReconResult:
    """A run the venue did not answer: FAILED, nothing compared (never "ok" by default)."""
    return save_run(
        engine,
        kind=kind,
        status=ReconStatus.FAILED,
        started_at=started_at,
        finished_at=finished_at,
        checked=0,
        recovered=0,
        differences=[],
        details=details,
        events=[],
    )


def save_run(
    engine: Engine,
    *,
    kind: str,
    status: ReconStatus,
    started_at: datetime,
    finished_at: datetime,
    checked: int,
    recovered: int,
    differences: list[dict[str, Any]],
    details: dict[str, Any],
    events: list[dict[str, Any]],
) -> ReconResult:
    """Write the run row (and its risk events) in one transaction; the result."""
    with write_transaction(engine) as conn:
        run_id = recon_runs.insert(
            conn,
            kind=kind,
            started_at=started_at,
            finished_at=finished_at,
            status=str(status),
            checked=checked,
            recovered=recovered,
            flagged=len(differences),
            differences=differences,
            details=details,
        )
        for event in events:
            risk_events.record(
                conn,
                **{**event, "details": {**event.get("details", {}), "recon_run_id": run_id}},
                now=finished_at,
            )
    log.info(
        "recon.run",
        kind=kind,
        run_id=run_id,
        status=str(status),
        checked=checked,
        recovered=recovered,
        flagged=len(differences),
    )
    return ReconResult(
        run_id=run_id,
        kind=kind,
        status=status,
        checked=checked,
        recovered=recovered,
        flagged=len(differences),
        differences=differences,
        details=details,
    )


def reconcile_executions(
    engine: Engine,
    venue: VenueSnapshots,
    redis_client: redis.Redis | None,
    *,
    since: datetime,
    clock: Callable[[], datetime],
    threshold: Decimal = CRITICAL_QUANTITY,
) -> ReconResult:
    """One executions run over the venue's executions at or after `since`.

    `clock` gives aware UTC times: the run's start (also the cut-off for ledger fills the
    venue's answer can be expected to list), each ingestion's receive time, and its end.
    """
    started = clock()
    details: dict[str, Any] = {"since": since.isoformat()}
    try:
        answer = venue.executions(since)
    except VenueUnansweredError as e:
        return save_failed_run(engine, KIND, started, clock(), {**details, "reason": str(e)})
    by_id: dict[str, dict[str, Any]] = {}
    for item in answer:
        exec_id = item.get("exec_id")
        if isinstance(exec_id, str) and exec_id not in by_id:
            by_id[exec_id] = item
    with engine.connect() as conn:
        held = recon_runs.held_exec_ids(conn, by_id)
        effective = recon_runs.effective_fills(conn, since=since, received_before=started)
    comparison = compare_executions(by_id, held, effective)
    differences: list[dict[str, Any]] = []
    recovered: list[str] = []
    for exec_id in comparison.missing:
        outcome = process_callback(
            "execution", by_id[exec_id], engine=engine, redis_client=redis_client, now=clock()
        )
        result = str(outcome.get("outcome"))
        if result not in _NOT_RECOVERED:
            recovered.append(exec_id)
        elif result == "rejected":
            differences.append(
                {
                    "type": "unrecoverable",
                    "exec_id": exec_id,
                    "reason": outcome.get("reason"),
                    "message": outcome.get("message"),
                }
            )
    for fill in comparison.unknown:
        differences.append(
            {
                "type": "unknown_fill",
                "exec_id": fill.execution_id,
                "con_id": fill.con_id,
                "side": fill.side,
                "shares": decimal_text(fill.shares),
                "strategy": fill.strategy,
                "order_ref": fill.order_ref,
            }
        )
    for exec_id in comparison.malformed:
        differences.append({"type": "malformed_exec_id", "exec_id": exec_id})
    unrecoverable = sum(1 for d in differences if d["type"] == "unrecoverable")
    status = executions_status(comparison, len(recovered), unrecoverable, threshold)
    details.update(
        {
            "recovered_exec_ids": recovered,
            "corrected_at_venue": list(comparison.corrected_at_venue),
            "ledger_fills_compared": len(effective),
        }
    )
    events = []
    if comparison.unknown:
        net = unknown_by_con_id(comparison.unknown)
        events.append(
            {
                "kind": "RECON_UNKNOWN_FILLS",
                "severity": "critical" if status is ReconStatus.CRITICAL else "warning",
                "scope": "recon",
                "scope_key": KIND,
                "code": "UNKNOWN_TO_VENUE",
                "message": (
                    f"{len(comparison.unknown)} ledger fill(s) the venue does not list: "
                    + ", ".join(f.execution_id for f in comparison.unknown[:20])
                ),
                "details": {"net_by_con_id": {str(k): decimal_text(v) for k, v in net.items()}},
            }
        )
    return save_run(
        engine,
        kind=KIND,
        status=status,
        started_at=started,
        finished_at=clock(),
        checked=comparison.checked,
        recovered=len(recovered),
        differences=differences,
        details=details,
        events=events,
    )
