"""The intake queue: `tasks.intake.submit_intent`, the door every intent comes through.

Flow of one submission (idempotency key: `signal_id`):
1. Decode and validate (`models.intent.validate_intent`, pure): an `Intent` or a `Reject`.
2. In one write transaction: take the strategy's guard lock, look the signal up, and either
   return the first outcome (same submission again), refuse it (DUPLICATE_SIGNAL: the id was used
   for a different payload), refuse it (CONCURRENCY_LIMIT), or insert it. A refused submission
   that names a usable signal_id is stored as REJECTED, so its resubmission gets the same answer.
3. After commit: every refused submission appends one entry to `signals.exec.reject`.

Nothing about the payload can make the task raise; only a database or Redis outage does, and
those are retried with backoff (the transaction either committed or left nothing behind, and the
retry finds the committed row).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
import sqlalchemy as sa
from celery.signals import worker_process_init
from sqlalchemy.engine import Connection, Engine

from epm.logging import get_logger
from epm.redis_conn import get_redis, reset_redis_cache
from epm.settings import get_settings
from epm.streams import publish_reject
from models.intent import (
    DEFAULT_CHECKS,
    Check,
    Intent,
    IntentStatus,
    parse_payload,
    signal_id_of,
    validate_intent,
)
from models.rejects import Reject, RejectReason
from store import intents as repo
from store.db import dispose_engines, make_engine, write_transaction
from tasks.app import celery_app

log = get_logger(__name__)

Outcome = dict[str, Any]

# Only failures of the stores themselves are worth another try; bad input never is.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def _outcome(
    status: str,
    signal_id: str,
    *,
    intent_id: int | None = None,
    reason: str | None = None,
    message: str | None = None,
    duplicate: bool = False,
) -> Outcome:
    return {
        "status": status,
        "signal_id": signal_id,
        "intent_id": intent_id,
        "reason": reason,
        "message": message,
        "duplicate": duplicate,
    }


def _rejected(reject: Reject, intent_id: int | None = None, *, duplicate: bool = False) -> Outcome:
    return _outcome(
        IntentStatus.REJECTED.value,
        reject.signal_id,
        intent_id=intent_id,
        reason=reject.reason.value,
        message=reject.message,
        duplicate=duplicate,
    )


def _same_submission(row: repo.IntentRow, data: object) -> bool:
    """Whether `data` is the submission that produced `row` (and so gets its outcome)."""
    if row.status == IntentStatus.REJECTED.value:
        return bool(repo.json_safe(data) == row.payload)
    # Judge the resubmission as of the first one's day: an option that expired since then is
    # still the same intent.
    again = validate_intent(data, today=row.received_at.date())
    return isinstance(again, Intent) and again.to_payload() == row.payload


def _first_outcome(row: repo.IntentRow, data: object) -> Outcome:
    if not _same_submission(row, data):
        reject = Reject(
            RejectReason.DUPLICATE_SIGNAL,
            f"signal_id already used by intent {row.id} ({row.status}) with a different "
            "payload; the first submission stands",
            row.signal_id,
            "signal_id",
        )
        return _rejected(reject, row.id, duplicate=True)
    return _outcome(
        row.status,
        row.signal_id,
        intent_id=row.id,
        reason=row.reject_reason,
        message=row.reject_message,
        duplicate=True,
    )


def _decide(
    conn: Connection,
    verdict: Intent | Reject,
    data: Mapping[str, object],
    *,
    now: datetime,
    max_active: Callable[[str], int],
) -> Outcome:
    signal_id = verdict.signal_id
    if isinstance(verdict, Intent):
        repo.lock_strategy(conn, verdict.strategy)
    existing = repo.get_by_signal_id(conn, signal_id)
    if existing is not None:
        return _first_outcome(existing, data)
    if isinstance(verdict, Reject):
        new_id = repo.insert_rejected(conn, verdict, data, now=now)
        outcome = _rejected(verdict, new_id)
    else:
        active = repo.count_active(conn, verdict.strategy)
        limit = max_active(verdict.strategy)
        if active >= limit:
            reject = Reject(
                RejectReason.CONCURRENCY_LIMIT,
                f"{verdict.strategy} already has {active} active intents (limit {limit})",
                signal_id,
            )
            new_id = repo.insert_rejected(conn, reject, data, now=now, intent=verdict)
            outcome = _rejected(reject, new_id)
        else:
            instrument = data.get("instrument")
            text = instrument if isinstance(instrument, str) else verdict.instrument.text
            new_id = repo.insert_validated(conn, verdict, instrument_text=text, now=now)
            outcome = _outcome(IntentStatus.VALIDATED.value, signal_id, intent_id=new_id)
    if new_id is None:
        # Another worker stored this signal_id between our lookup and our insert.
        raced = repo.get_by_signal_id(conn, signal_id)
        if raced is None:  # pragma: no cover - ON CONFLICT guarantees a committed row exists
            raise RuntimeError(f"signal_id {signal_id!r} conflicted but no row is visible")
        return _first_outcome(raced, data)
    return outcome


def _validate(data: object, *, today: Any, checks: Sequence[Check]) -> Intent | Reject:
    try:
        return validate_intent(data, today=today, checks=checks)
    except Exception as e:
        # validate_intent is total by design (property-tested); should a bug slip through, the
        # submission is still answered instead of looping through redeliveries.
        log.exception("intake.validation_bug", error=repr(e))
        return Reject(
            RejectReason.INVALID_VALUE,
            f"payload could not be validated ({type(e).__name__})",
            signal_id_of(data),
        )


def process_submission(
    payload: object,
    *,
    engine: Engine,
    redis_client: redis.Redis,
    now: datetime,
    max_active: Callable[[str], int],
    checks: Sequence[Check] = DEFAULT_CHECKS,
) -> Outcome:
    """Validate, persist once per signal_id, publish a reject when refused; return the outcome.

    The body of `submit_intent`, callable without Celery. `now` (aware UTC) stamps the row and the
    reject entry, and its date decides option expiry.
    """
    data = parse_payload(payload)
    verdict = data if isinstance(data, Reject) else _validate(data, today=now.date(), checks=checks)
    if isinstance(data, Mapping) and verdict.signal_id:
        with write_transaction(engine) as conn:
            outcome = _decide(conn, verdict, data, now=now, max_active=max_active)
    elif isinstance(verdict, Reject):
        outcome = _rejected(verdict)
    else:  # pragma: no cover - an admitted intent always came from a mapping with a signal_id
        raise RuntimeError("admitted intent without a signal_id")
    if outcome["status"] == IntentStatus.REJECTED.value:
        reject = Reject(RejectReason(outcome["reason"]), outcome["message"], outcome["signal_id"])
        publish_reject(redis_client, reject, ts=now)
    log.info(
        "intake.outcome",
        signal_id=outcome["signal_id"],
        status=outcome["status"],
        reason=outcome["reason"],
        intent_id=outcome["intent_id"],
        duplicate=outcome["duplicate"],
    )
    return outcome


@celery_app.task(
    name="tasks.intake.submit_intent",
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=10,
)
def submit_intent(payload: object) -> Outcome:
    """Admit or refuse one intent (a dict, or its JSON text); idempotent on `signal_id`."""
    settings = get_settings()
    return process_submission(
        payload,
        engine=make_engine(settings.resolved_database_url()),
        redis_client=get_redis(settings),
        now=datetime.now(UTC),
        max_active=settings.max_active_for,
    )


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    # A prefork child must not share the parent's pooled sockets (SQLite, PostgreSQL, Redis).
    dispose_engines()
    reset_redis_cache()
