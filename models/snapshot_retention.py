"""Retention of the 5 s P&L snapshots (`pnl_snapshots`): full detail for a few days, then one
per minute, then none.

The mark tick appends a snapshot per open position and per strategy every 5 s (17,280 a day
each). Past `full_days` each (scope, scope_key) keeps only its last snapshot of every minute
(the figure the minute ended on, what a chart or a baseline "as of" a moment reads); past
`minute_days` (0: at once) they go altogether. Thinning a day twice deletes nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta


class RetentionError(ValueError):
    """A retention setting that would keep less detail than it keeps in total."""


@dataclass(frozen=True, slots=True)
class Retention:
    full_days: int = 7
    minute_days: int = 90

    def __post_init__(self) -> None:
        if self.full_days < 1:
            raise RetentionError(f"full detail must be kept at least a day, not {self.full_days}")
        if self.minute_days and self.minute_days < self.full_days:
            raise RetentionError(
                f"per-minute snapshots ({self.minute_days} days) cannot end before the full "
                f"ones ({self.full_days} days); 0 deletes instead of thinning"
            )

    def full_cutoff(self, now: datetime) -> datetime:
        """Snapshots before this are thinned."""
        return _midnight(now) - timedelta(days=self.full_days)

    def delete_cutoff(self, now: datetime) -> datetime:
        """Snapshots before this are deleted."""
        return _midnight(now) - timedelta(days=self.minute_days or self.full_days)


def _midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class SnapshotKey:
    id: int
    scope: str
    scope_key: str
    ts: datetime


def thinned_out(rows: Iterable[SnapshotKey]) -> list[int]:
    """The ids to delete so each (scope, scope_key, minute) keeps only its last snapshot."""
    keep: dict[tuple[str, str, datetime], SnapshotKey] = {}
    out: list[int] = []
    for row in rows:
        minute = row.ts.replace(second=0, microsecond=0)
        slot = (row.scope, row.scope_key, minute)
        kept = keep.get(slot)
        if kept is None:
            keep[slot] = row
        elif (row.ts, row.id) > (kept.ts, kept.id):
            out.append(kept.id)
            keep[slot] = row
        else:
            out.append(row.id)
    return sorted(out)


def days_between(start: date, end: date) -> list[date]:
    """The calendar days in [start, end)."""
    return [start + timedelta(days=n) for n in range((end - start).days)]
