"""Repository of `recon_runs`, and the ledger reads a reconciliation compares with the venue.

Quantities come back as `Decimal` and are summed in Python (SQLite stores them as text: a SQL sum
there would be a float).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.expiry import SETTLEMENT_PREFIXES
from models.recon import LedgerFill
from store.schema import fills, positions_current, recon_runs

# Bound parameters per IN list: under SQLite's 32,766 and PostgreSQL's 65,535 with room to spare.
_CHUNK = 5000


def held_exec_ids(conn: Connection, exec_ids: Iterable[str]) -> set[str]:
    """Which of `exec_ids` the ledger holds (superseded fills included)."""
    wanted = list(exec_ids)
    held: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = conn.execute(sa.select(fills.c.execution_id).where(fills.c.execution_id.in_(chunk)))
        held.update(r.execution_id for r in rows)
    return held


def effective_fills(
    conn: Connection, *, since: datetime, received_before: datetime
) -> list[LedgerFill]:
    """Fills in effect (not superseded) executed at or after `since` that the ledger received
    before `received_before` (the moment the venue was asked: later ones the venue's answer
    may not contain). Option settlements (`models.expiry`) are left out: the venue reports an
    expiry as a position change, never as an execution."""
    rows = conn.execute(
        sa.select(
            fills.c.execution_id,
            fills.c.con_id,
            fills.c.side,
            fills.c.shares,
            fills.c.strategy,
            fills.c.order_ref,
        ).where(
            fills.c.superseded_by.is_(None),
            fills.c.executed_at >= since,
            fills.c.received_at < received_before,
            *(fills.c.execution_id.not_like(f"{p}%") for p in SETTLEMENT_PREFIXES),
        )
    )
    return [
        LedgerFill(
            execution_id=r.execution_id,
            con_id=r.con_id,
            side=r.side,
            shares=r.shares,
            strategy=r.strategy,
            order_ref=r.order_ref,
        )
        for r in rows
    ]


def position_quantities(conn: Connection) -> list[tuple[int, Decimal]]:
    """(conId, quantity) of every `positions_current` row (one per strategy)."""
    rows = conn.execute(sa.select(positions_current.c.con_id, positions_current.c.quantity))
    return [(int(r.con_id), r.quantity) for r in rows]


def position_symbols(conn: Connection) -> dict[int, str]:
    rows = conn.execute(
        sa.select(positions_current.c.con_id, positions_current.c.symbol).where(
            positions_current.c.symbol.is_not(None)
        )
    )
    return {int(r.con_id): r.symbol for r in rows}


@dataclass(frozen=True, slots=True)
class ReconRun:
    id: int
    kind: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    checked: int
    recovered: int
    flagged: int
    differences: Any
    details: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "status": self.status,
            "checked": self.checked,
            "recovered": self.recovered,
            "flagged": self.flagged,
            "differences": self.differences,
            "details": self.details,
        }


def insert(
    conn: Connection,
    *,
    kind: str,
    started_at: datetime,
    finished_at: datetime,
    status: str,
    checked: int,
    recovered: int,
    flagged: int,
    differences: Sequence[Mapping[str, Any]] | None,
    details: Mapping[str, Any] | None,
) -> int:
    """Append one run; its id."""
    result = conn.execute(
        recon_runs.insert()
        .values(
            kind=kind,
            started_at=started_at,
            finished_at=finished_at,
            status=status,
            checked=checked,
            recovered=recovered,
            flagged=flagged,
            differences=None if differences is None else [dict(d) for d in differences],
            details=dict(details) if details is not None else None,
        )
        .returning(recon_runs.c.id)
    )
    return int(result.scalar_one())


def _run(row: Any) -> ReconRun:
    return ReconRun(
        id=int(row.id),
        kind=row.kind,
        started_at=row.started_at,
        finished_at=row.finished_at,
        status=row.status,
        checked=row.checked,
        recovered=row.recovered,
        flagged=row.flagged,
        differences=row.differences,
        details=row.details,
    )


def get(conn: Connection, run_id: int) -> ReconRun | None:
    row = conn.execute(sa.select(recon_runs).where(recon_runs.c.id == run_id)).first()
    return None if row is None else _run(row)


def latest(conn: Connection, kind: str | None = None, limit: int = 20) -> list[ReconRun]:
    """The newest runs first (of `kind` when given)."""
    query = sa.select(recon_runs).order_by(recon_runs.c.started_at.desc(), recon_runs.c.id.desc())
    if kind is not None:
        query = query.where(recon_runs.c.kind == kind)
    return [_run(r) for r in conn.execute(query.limit(limit))]


def ran_since(conn: Connection, kind: str, since: datetime, statuses: Iterable[str]) -> bool:
    """Whether a run of `kind` with one of `statuses` started at or after `since`."""
    row = conn.execute(
        sa.select(recon_runs.c.id)
        .where(
            recon_runs.c.kind == kind,
            recon_runs.c.started_at >= since,
            recon_runs.c.status.in_(list(statuses)),
        )
        .limit(1)
    ).first()
    return row is not None
