"""Use case: replay a dead-lettered callback (`epm ledger replay`) through the same path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from sqlalchemy.engine import Engine

from epm.logging import get_logger
from services.ledger.callbacks import Outcome, process_callback
from store import dead_letters
from store.db import write_transaction

log = get_logger(__name__)


@dataclass(frozen=True)
class ReplayResult:
    """What `replay_dead_letter` did with one letter."""

    letter_id: int
    status: str  # "recorded", "already_resolved", "failed", "not_found"
    outcome: Outcome | None = None
    error: str | None = None


def replay_dead_letter(
    letter_id: int,
    *,
    engine: Engine,
    redis_client: redis.Redis | None,
    now: datetime | None = None,
) -> ReplayResult:
    """Re-run a letter's stored payload through `process_callback`; resolve it when recorded.

    Idempotent: the ledger write is keyed like any callback (a replay of something that landed
    meanwhile is a duplicate, and resolves the letter), and a resolved letter is left alone. A
    rejected payload (`risk_events`) also resolves it: the ledger has then decided about it.
    """
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        letter = dead_letters.get(conn, letter_id)
    if letter is None:
        return ReplayResult(letter_id, "not_found")
    if letter.resolved_at is not None:
        return ReplayResult(letter_id, "already_resolved")
    try:
        outcome = process_callback(
            letter.kind, letter.payload, engine=engine, redis_client=redis_client, now=now
        )
    except Exception as e:
        with write_transaction(engine) as conn:
            dead_letters.record_failure(
                conn, letter_id, error_class=type(e).__name__, message=str(e), now=now
            )
        log.warning("ledger.replay_failed", dead_letter_id=letter_id, error=repr(e)[:500])
        return ReplayResult(letter_id, "failed", error=f"{type(e).__name__}: {e}")
    resolution = f"replayed: {outcome.get('outcome')}"
    if outcome.get("reason"):
        resolution += f" ({outcome['reason']})"
    with write_transaction(engine) as conn:
        dead_letters.resolve(conn, letter_id, resolution=resolution, now=now)
    log.info("ledger.replayed", dead_letter_id=letter_id, outcome=outcome.get("outcome"))
    return ReplayResult(letter_id, "recorded", outcome=outcome)
