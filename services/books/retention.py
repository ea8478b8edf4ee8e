"""Use case: prune `pnl_snapshots` (`models.snapshot_retention`, `docs/books.md`; beat
`pnl-snapshots-prune` hourly).

Delete what is past the last horizon (one statement), then thin each whole day between the
two horizons, one transaction per day (load that day's keys → the core picks the ids → delete
them), oldest first. The last day thinned is kept in Redis (`pnl:snapshots:thinned_through`)
so a run does not re-read days already thinned; without it (Redis flushed) the days are read
again and nothing more is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import redis
from sqlalchemy.engine import Engine

from models.snapshot_retention import Retention, days_between, thinned_out
from store import snapshot_retention as repo
from store.db import write_transaction

THINNED_KEY = "pnl:snapshots:thinned_through"


@dataclass(frozen=True, slots=True)
class PruneResult:
    deleted_old: int
    thinned: int
    days: int

    def as_dict(self) -> dict[str, Any]:
        return {"deleted_old": self.deleted_old, "thinned": self.thinned, "days": self.days}


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def prune_snapshots(
    engine: Engine, client: redis.Redis | None, retention: Retention, now: datetime
) -> PruneResult:
    """Apply `retention` to `pnl_snapshots` as of `now` (aware UTC)."""
    full_cutoff = retention.full_cutoff(now)
    delete_cutoff = retention.delete_cutoff(now)
    with write_transaction(engine) as conn:
        deleted = repo.delete_before(conn, delete_cutoff)
        first = repo.oldest(conn)
    if first is None or first >= full_cutoff:
        return PruneResult(deleted, 0, 0)
    start = max(first, delete_cutoff).date()
    done_through = _text(client.get(THINNED_KEY)) if client is not None else None
    if done_through:
        start = max(start, date.fromisoformat(done_through) + timedelta(days=1))
    thinned = 0
    days = days_between(start, full_cutoff.date())
    for day in days:
        begin = datetime.combine(day, time(0), tzinfo=full_cutoff.tzinfo)
        with write_transaction(engine) as conn:
            ids = thinned_out(repo.keys_between(conn, begin, begin + timedelta(days=1)))
            thinned += repo.delete_ids(conn, ids)
        if client is not None:
            client.set(THINNED_KEY, day.isoformat())
    return PruneResult(deleted, thinned, len(days))
