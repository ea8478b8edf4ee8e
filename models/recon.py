"""Reconciliation, the pure part: the venue's word against the ledger's, and how bad it is.

Two comparisons (`docs/recon.md`):

- Executions (every 5 minutes): the venue's executions (reqExecutions) against the ledger's fills
  by execId. A venue execution the ledger never recorded is *missing* (the run ingests it through
  the ledger's own path). A ledger fill still in effect that the venue does not list is
  *unknown*, unless the venue lists a later correction of it (same execId base, higher
  sequence): then the correction is missing and, once ingested, supersedes it.
- Positions (end of day, on demand): the venue's position per conId against the ledger's summed
  over strategies; a difference above the threshold (5 contracts or shares, blueprint §12.3) is
  critical, any smaller one a warning.

Statuses order ok < warning < critical < failed; `failed` is only ever the shell's (the venue did
not answer), never a comparison's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from models.fills import ExecIdError, parse_exec_id

# Blueprint §12.3: a position discrepancy vs IB above 5 contracts is critical.
CRITICAL_QUANTITY = Decimal(5)


class ReconStatus(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    FAILED = "failed"


_RANK = {ReconStatus.OK: 0, ReconStatus.WARNING: 1, ReconStatus.CRITICAL: 2, ReconStatus.FAILED: 3}


def decimal_text(value: Decimal) -> str:
    """A quantity as plain text without trailing zeros ("160.0" → "160", never "1.6E+2")."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def worst(statuses: Iterable[ReconStatus]) -> ReconStatus:
    """The most severe of `statuses` (ok when there are none)."""
    return max(statuses, key=_RANK.__getitem__, default=ReconStatus.OK)


def severity_of(quantity: Decimal, threshold: Decimal = CRITICAL_QUANTITY) -> ReconStatus:
    """A quantity difference's severity: none ok, up to `threshold` a warning, above critical."""
    size = abs(quantity)
    if size == 0:
        return ReconStatus.OK
    return ReconStatus.CRITICAL if size > threshold else ReconStatus.WARNING


@dataclass(frozen=True, slots=True)
class LedgerFill:
    """A fill in effect in the ledger (not superseded), as the comparison needs it."""

    execution_id: str
    con_id: int | None
    side: str  # BUY or SELL
    shares: Decimal
    strategy: str | None = None
    order_ref: str | None = None

    @property
    def signed_shares(self) -> Decimal:
        return self.shares if self.side == "BUY" else -self.shares


@dataclass(frozen=True, slots=True)
class ExecutionsComparison:
    checked: int
    # Venue execIds the ledger does not hold, in the venue's order.
    missing: tuple[str, ...]
    # Ledger fills in effect that the venue does not know.
    unknown: tuple[LedgerFill, ...]
    # Ledger fills the venue replaced by a correction the ledger lacks (missing holds it).
    corrected_at_venue: tuple[str, ...] = ()
    # Venue execIds that are not IB execIds at all (never ingested: they identify nothing).
    malformed: tuple[str, ...] = ()


def _base_seq(exec_id: str) -> tuple[str, int] | None:
    try:
        key = parse_exec_id(exec_id)
    except ExecIdError:
        return None
    return key.base, key.seq


def compare_executions(
    venue_exec_ids: Iterable[str],
    ledger_exec_ids: Iterable[str],
    ledger_effective: Iterable[LedgerFill],
) -> ExecutionsComparison:
    """Venue executions vs the ledger.

    `ledger_exec_ids` are every execId the ledger holds in the window, superseded ones included
    (a venue execution the ledger holds as superseded is not missing); `ledger_effective` the
    fills still in effect, the candidates for unknown.
    """
    venue: list[str] = []
    seen: set[str] = set()
    malformed: list[str] = []
    newest_seq: dict[str, int] = {}
    for exec_id in venue_exec_ids:
        if exec_id in seen:
            continue
        seen.add(exec_id)
        parsed = _base_seq(exec_id)
        if parsed is None:
            malformed.append(exec_id)
            continue
        venue.append(exec_id)
        base, seq = parsed
        newest_seq[base] = max(seq, newest_seq.get(base, seq))
    held = set(ledger_exec_ids)
    missing = tuple(e for e in venue if e not in held)
    unknown: list[LedgerFill] = []
    corrected: list[str] = []
    for fill in ledger_effective:
        if fill.execution_id in seen:
            continue
        parsed = _base_seq(fill.execution_id)
        if parsed is not None and newest_seq.get(parsed[0], -1) > parsed[1]:
            corrected.append(fill.execution_id)
        else:
            unknown.append(fill)
    return ExecutionsComparison(
        checked=len(venue),
        missing=missing,
        unknown=tuple(unknown),
        corrected_at_venue=tuple(corrected),
        malformed=tuple(malformed),
    )


def unknown_by_con_id(unknown: Iterable[LedgerFill]) -> dict[int | None, Decimal]:
    """Net signed quantity of the unknown fills per conId (what they move the books by)."""
    out: dict[int | None, Decimal] = {}
    for fill in unknown:
        out[fill.con_id] = out.get(fill.con_id, Decimal(0)) + fill.signed_shares
    return out


def executions_status(
    comparison: ExecutionsComparison,
    recovered: int,
    unrecoverable: int,
    threshold: Decimal = CRITICAL_QUANTITY,
) -> ReconStatus:
    """Repaired gaps are a warning; fills the venue does not know weigh like a position
    difference of their net quantity per conId; a missing execution the ledger refused is a
    warning at least (someone must look)."""
    statuses = [
        severity_of(qty, threshold) for qty in unknown_by_con_id(comparison.unknown).values()
    ]
    # An unknown fill of zero net quantity (a buy and a sell) still is a fill the venue lacks.
    if comparison.unknown:
        statuses.append(ReconStatus.WARNING)
    if recovered or unrecoverable or comparison.malformed:
        statuses.append(ReconStatus.WARNING)
    return worst(statuses)


@dataclass(frozen=True, slots=True)
class PositionDifference:
    con_id: int
    venue: Decimal
    ledger: Decimal
    status: ReconStatus
    symbol: str | None = None

    @property
    def difference(self) -> Decimal:
        return self.venue - self.ledger


@dataclass(frozen=True, slots=True)
class PositionsComparison:
    checked: int
    differences: tuple[PositionDifference, ...] = field(default_factory=tuple)

    @property
    def status(self) -> ReconStatus:
        return worst(d.status for d in self.differences)

    @property
    def critical(self) -> tuple[PositionDifference, ...]:
        return tuple(d for d in self.differences if d.status is ReconStatus.CRITICAL)


def compare_positions(
    venue: Mapping[int, Decimal],
    ledger: Mapping[int, Decimal],
    symbols: Mapping[int, str] | None = None,
    threshold: Decimal = CRITICAL_QUANTITY,
) -> PositionsComparison:
    """The venue's quantity per conId vs the ledger's (summed over strategies); a conId one side
    lacks counts as flat there. Differences sorted by conId."""
    names = symbols or {}
    diffs = []
    con_ids = sorted(set(venue) | set(ledger))
    for con_id in con_ids:
        at_venue = venue.get(con_id, Decimal(0))
        in_ledger = ledger.get(con_id, Decimal(0))
        if at_venue == in_ledger:
            continue
        diffs.append(
            PositionDifference(
                con_id=con_id,
                venue=at_venue,
                ledger=in_ledger,
                status=severity_of(at_venue - in_ledger, threshold),
                symbol=names.get(con_id),
            )
        )
    return PositionsComparison(checked=len(con_ids), differences=tuple(diffs))


def net_by_con_id(rows: Iterable[tuple[int, Decimal]]) -> dict[int, Decimal]:
    """Sum quantities per conId (positions over strategies), exactly (Decimal)."""
    out: dict[int, Decimal] = {}
    for con_id, quantity in rows:
        out[con_id] = out.get(con_id, Decimal(0)) + quantity
    return out
