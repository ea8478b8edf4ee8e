"""`pnl_snapshots` retention (SQLite and PostgreSQL, real Redis): 5 s snapshots kept whole for
the full days, thinned to each minute's last beyond them, deleted past the minute horizon;
a second run (with or without its Redis cursor) deletes nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from epm.settings import get_settings
from models.snapshot_retention import Retention, RetentionError
from services.books.retention import prune_snapshots
from store import books
from store.db import write_transaction
from store.schema import pnl_snapshots
from tasks.app import Stores
from tasks.pnl import run_prune

NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def seed(engine: Engine, start: datetime, seconds: int) -> None:
    """A position and a strategy snapshot every 5 s for `seconds` from `start`."""
    rows = []
    for n in range(0, seconds, 5):
        ts = start + timedelta(seconds=n)
        for scope, key in (("position", "756733:S"), ("strategy", "S")):
            rows.append(
                {
                    "scope": scope,
                    "scope_key": key,
                    "con_id": 756733 if scope == "position" else None,
                    "strategy_id": "S",
                    "realized_pl": Decimal(n),
                    "unrealized_pl": Decimal("0.5") * n,
                    "fees": Decimal("1.00"),
                    "net_pl": Decimal(n) - 1,
                    "ts": ts,
                }
            )
    with write_transaction(engine) as conn:
        books.append_snapshots(conn, rows)


def snapshots(engine: Engine) -> list[tuple[str, datetime, Decimal]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(pnl_snapshots.c.scope, pnl_snapshots.c.ts, pnl_snapshots.c.realized_pl)
        ).all()
    return sorted((r.scope, r.ts, r.realized_pl) for r in rows)


def test_full_then_per_minute_then_gone_and_a_rerun_deletes_nothing(
    engine: Engine, r: redis.Redis
) -> None:
    recent = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # within 7 days: whole
    thinned = datetime(2026, 11, 20, 15, 0, 3, tzinfo=UTC)  # 7..90 days: per minute
    ancient = datetime(2026, 8, 1, 15, 0, tzinfo=UTC)  # past 90 days: gone
    seed(engine, recent, 120)
    seed(engine, thinned, 180)  # 15:00:03 .. 15:02:58
    seed(engine, ancient, 60)

    out = run_prune(Stores(get_settings(), engine, r, NOW))
    assert out["deleted_old"] == 24
    kept = snapshots(engine)
    old = [(scope, ts, value) for scope, ts, value in kept if ts < recent]
    # Each minute's last: 15:00:58, 15:01:58, 15:02:58, per scope.
    assert old == sorted(
        (scope, thinned + timedelta(seconds=s), Decimal(s))
        for scope in ("position", "strategy")
        for s in (55, 115, 175)
    )
    assert out["thinned"] == 2 * 36 - 6
    assert len([k for k in kept if k[1] >= recent]) == 2 * 24

    assert run_prune(Stores(get_settings(), engine, r, NOW))["thinned"] == 0
    r.flushdb()  # the cursor lost: the days are read again, nothing more goes
    again = prune_snapshots(engine, r, Retention(7, 90), NOW + timedelta(hours=1))
    assert (again.deleted_old, again.thinned) == (0, 0) and again.days > 0
    assert snapshots(engine) == kept


def test_minute_days_zero_deletes_past_the_full_days(engine: Engine) -> None:
    seed(engine, datetime(2026, 11, 20, 15, 0, tzinfo=UTC), 60)
    seed(engine, datetime(2026, 12, 2, 15, 0, tzinfo=UTC), 60)
    out = prune_snapshots(engine, None, Retention(7, 0), NOW)
    assert out.deleted_old == 24
    assert {ts.date().isoformat() for _, ts, _ in snapshots(engine)} == {"2026-12-02"}


def test_a_retention_that_contradicts_itself_is_refused() -> None:
    with pytest.raises(RetentionError, match="cannot end before"):
        Retention(full_days=30, minute_days=10)
    with pytest.raises(RetentionError, match="at least a day"):
        Retention(full_days=0)
