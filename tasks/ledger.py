"""The ledger queue: IB callbacks from the bridge → fills, commissions, orders, positions.

One task per callback kind, each taking the bridge's payload (JSON primitives, Decimal as str,
see `ibgateway_bridge/payloads.py`) and running one write transaction (`services.ledger`):

| task | idempotency key |
|---|---|
| `tasks.ledger.record_execution` | `exec_id` (a correction supersedes, never adds) |
| `tasks.ledger.record_commission` | `exec_id` (before or after its execution) |
| `tasks.ledger.record_order_status` | hash of the callback (IB repeats are recorded, not applied) |
| `tasks.ledger.record_open_order` | hash of the callback |
| `tasks.ledger.record_order_error` | hash of the callback |
| `tasks.ledger.record_order_replaced` | (client_id, old id, new id) |
| `tasks.ledger.record_contract` | con_id (newest answer wins) |
| `tasks.ledger.record_batch` | each item's own key (a burst in one message) |

A payload that cannot be recorded becomes a `risk_events` row (kind `LEDGER_PAYLOAD_REJECTED`,
with its reason code) and the task returns normally: bad input never loops through redeliveries.

Failures while writing, and what happens to the callback (the transaction either committed or
left nothing, so every retry is safe and finds what committed):

- Transient (`is_transient`): the database unreachable or dropping the connection
  (OperationalError, InterfaceError, a pool timeout, any driver error that invalidated the
  connection), a deadlock or serialization failure (OperationalError on PostgreSQL), "database is
  locked" (SQLite), `StaleOrderError`. Retried **without limit**: a callback survives an outage
  of any length. The countdown is capped exponential backoff with full jitter
  (`EPM_LEDGER_RETRY_BASE_S`, `EPM_LEDGER_RETRY_MAX_S`), never more than half the broker's
  visibility timeout: with Redis a retry is a new message whose countdown the worker holds
  unacknowledged, and one held past the timeout would be delivered a second time. From attempt
  `EPM_LEDGER_ALERT_AFTER` on, each try logs `ledger.retrying_long` with the attempt count and a
  `ledger_retrying` alert goes to `epm:alerts` (at most one per `EPM_LEDGER_ALERT_INTERVAL_S`
  across workers).
- IntegrityError: ambiguous. A unique-key race with a concurrent creator (two workers opening the
  same stand-in order or fill) is resolved by a retry, which finds the row the other committed; a
  violation no retry changes (a constraint the payload cannot meet) fails the same way every
  time. A retry cannot tell them apart up front, so IntegrityError gets `EPM_LEDGER_BOUNDED_RETRIES`
  retries (a race resolves on the first), then the callback is dead-lettered. Classifying by
  constraint name instead would silently turn a new constraint into a loop or a loss.
- Anything else (a bug, a driver error of another class): the same bounded retries (a
  timing-dependent bug gets a second chance), then dead-lettered.

Dead-lettered callbacks go to `ledger_dead_letters` (`store.dead_letters`) with their original
payload, error class and message, attempts and first/last failure times, and a
`ledger_dead_letter` alert; the task returns `{"outcome": "dead_lettered", ...}` and is
acknowledged. `epm ledger dead-letters` lists them, `epm ledger replay ID|--all`
(`replay_dead_letter`) re-runs the stored payload through `process_callback`, the same
idempotent path, and marks the letter resolved. If the letter itself cannot be written, the task
keeps retrying like an outage: the message stays in the broker until the letter or the callback
lands. A `record_batch` parks only the failing item and records the others.

What a callback does to the ledger, and its Redis mirror, is the service's
(`services.ledger.callbacks.process_callback`); this module is the retry policy around it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import sqlalchemy as sa
from celery import Task

from epm.logging import get_logger
from epm.redis_conn import get_redis
from epm.settings import Settings, get_settings
from services.ledger.callbacks import (
    MIRROR_KEY,
    WRITERS,
    BatchNotRecorded,
    Outcome,
    json_safe,
    mirror_order,
    process_batch,
    process_callback,
    reject_payload,
)
from store import dead_letters
from store.db import make_engine, write_transaction
from store.orders import StaleOrderError
from tasks.app import (
    ALERT_STREAM,
    TASK_OPTIONS,
    alert_due,
    celery_app,
    is_store_outage,
    raise_alert,
    retry_countdown,
)

log = get_logger(__name__)

__all__ = [
    "ALERT_STREAM",
    "MIRROR_KEY",
    "is_transient",
    "mirror_order",
    "process_callback",
    "retry_countdown",
]


def is_transient(error: BaseException) -> bool:
    """True for failures that time fixes (retried without limit): a store outage
    (`tasks.app.is_store_outage`) or a version bump under us (`StaleOrderError`)."""
    return is_store_outage(error, (StaleOrderError,))


def _callback_key(kind: str, payload: object) -> str:
    """The callback's own idempotency key, for logs and alerts (exec_id, or the order id)."""
    if not isinstance(payload, dict):
        return ""
    for name in ("exec_id", "order_id", "con_id"):
        if payload.get(name) is not None:
            return str(payload[name])
    return ""


@dataclass(frozen=True)
class _RetryState:
    """What a retry message carries besides the payload (its `ledger_retry` keyword)."""

    bounded: int = 0  # failures so far that count against EPM_LEDGER_BOUNDED_RETRIES
    first_failed_at: str | None = None

    @classmethod
    def load(cls, raw: object) -> _RetryState:
        if not isinstance(raw, dict):
            return cls()
        bounded = raw.get("bounded", 0)
        first = raw.get("first_failed_at")
        return cls(
            bounded=bounded if isinstance(bounded, int) else 0,
            first_failed_at=first if isinstance(first, str) else None,
        )

    def dump(self) -> dict[str, Any]:
        return {"bounded": self.bounded, "first_failed_at": self.first_failed_at}

    def first_failure(self, now: datetime) -> datetime:
        if self.first_failed_at is None:
            return now
        try:
            return datetime.fromisoformat(self.first_failed_at)
        except ValueError:
            return now


class _Attempt:
    """One run of a ledger task: the stores, the clock reading, and what a failure does."""

    def __init__(self, task: Task, raw_state: object) -> None:
        self.task = task
        self.settings: Settings = get_settings()
        self.engine = make_engine(self.settings.resolved_database_url())
        self.redis = get_redis(self.settings)
        self.now = datetime.now(UTC)
        self.state = _RetryState.load(raw_state)
        self.attempts = int(task.request.retries or 0) + 1

    def record(self, kind: str, payload: object) -> Outcome:
        return process_callback(
            kind, payload, engine=self.engine, redis_client=self.redis, now=self.now
        )

    def failed(self, error: Exception, kind: str, payload: object) -> Outcome:
        """Retry the task (raises celery's Retry) or dead-letter the callback (its outcome)."""
        transient = is_transient(error)
        if transient:
            self._retry(error, kind, payload, self.state)
        if self.state.bounded < self.settings.ledger_bounded_retries:
            self._retry(error, kind, payload, _with_bounded(self.state, self.state.bounded + 1))
        try:
            return self._dead_letter(error, kind, payload)
        except Exception as write_error:
            # The letter could not be written: keep the message, retrying like an outage.
            log.error(
                "ledger.dead_letter_failed",
                kind=kind,
                key=_callback_key(kind, payload),
                error=repr(error),
                write_error=repr(write_error),
            )
            self._retry(write_error, kind, payload, self.state)

    def _retry(
        self, error: BaseException, kind: str, payload: object, state: _RetryState
    ) -> NoReturn:
        settings = self.settings
        if state.first_failed_at is None:
            state = _RetryState(state.bounded, self.now.isoformat())
        countdown = retry_countdown(
            self.attempts - 1, settings.ledger_retry_base_s, settings.ledger_retry_max_s, _rng
        )
        fields = {
            "task": self.task.name,
            "callback": kind,
            "key": _callback_key(kind, payload),
            "attempts": self.attempts,
            "error": repr(error)[:500],
            "countdown_s": round(countdown, 3),
        }
        if self.attempts >= settings.ledger_alert_after:
            log.warning("ledger.retrying_long", first_failed_at=state.first_failed_at, **fields)
            if alert_due(self.redis, "ledger_retrying", settings.ledger_alert_interval_s):
                raise_alert(
                    self.redis,
                    "ledger_retrying",
                    f"{self.task.name} retrying since {state.first_failed_at}: "
                    f"attempt {self.attempts}, {type(error).__name__}",
                    self.now,
                    **{k: str(v) for k, v in fields.items()},
                    first_failed_at=str(state.first_failed_at),
                )
        else:
            log.info("ledger.retrying", **fields)
        raise self.task.retry(
            args=list(self.task.request.args or []),
            kwargs={"ledger_retry": state.dump()},
            countdown=countdown,
            exc=error,
            max_retries=None,
        )

    def _dead_letter(self, error: Exception, kind: str, payload: object) -> Outcome:
        code = "INTEGRITY_ERROR" if isinstance(error, sa.exc.IntegrityError) else "UNEXPECTED_ERROR"
        message = str(error)
        with write_transaction(self.engine) as conn:
            letter_id = dead_letters.park(
                conn,
                kind=kind,
                payload=json_safe(payload),
                error_code=code,
                error_class=type(error).__name__,
                message=message,
                attempts=self.attempts,
                first_failed_at=self.state.first_failure(self.now),
                now=self.now,
                task_name=self.task.name,
                task_id=self.task.request.id,
            )
        log.error(
            "ledger.dead_lettered",
            dead_letter_id=letter_id,
            kind=kind,
            key=_callback_key(kind, payload),
            code=code,
            error=repr(error)[:500],
            attempts=self.attempts,
        )
        raise_alert(
            self.redis,
            "ledger_dead_letter",
            f"{kind} callback parked in ledger_dead_letters ({code}); "
            "`epm ledger replay` once the cause is fixed",
            self.now,
            dead_letter_id=str(letter_id),
            task=self.task.name,
            callback=kind,
            key=_callback_key(kind, payload),
            error_code=code,
            error=repr(error)[:500],
        )
        return {"outcome": "dead_lettered", "dead_letter_id": letter_id, "reason": code}


_rng = random.Random()


def _with_bounded(state: _RetryState, bounded: int) -> _RetryState:
    return _RetryState(bounded=bounded, first_failed_at=state.first_failed_at)


def _run(task: Task, kind: str, payload: object, ledger_retry: object) -> Outcome:
    attempt = _Attempt(task, ledger_retry)
    try:
        return attempt.record(kind, payload)
    except Exception as e:
        return attempt.failed(e, kind, payload)


@celery_app.task(name="tasks.ledger.record_execution", **TASK_OPTIONS)
def record_execution(self: Task, payload: object, ledger_retry: object = None) -> Outcome:
    """execDetails → one fill (idempotent on exec_id), order cumulative, FSM, position."""
    return _run(self, "execution", payload, ledger_retry)


@celery_app.task(name="tasks.ledger.record_commission", **TASK_OPTIONS)
def record_commission(self: Task, payload: object, ledger_retry: object = None) -> Outcome:
    """commissionReport → the execution's commission (replaces the estimate); key exec_id."""
    return _run(self, "commission", payload, ledger_retry)


@celery_app.task(name="tasks.ledger.record_order_status", **TASK_OPTIONS)
def record_order_status(self: Task, payload: object, ledger_retry: object = None) -> Outcome:
    """orderStatus → FSM event (late/duplicate ones recorded, not applied)."""
    return _run(self, "order_status", payload, ledger_retry)


@celery_app.task(name="tasks.ledger.record_open_order", **TASK_OPTIONS)
def record_open_order(self: Task, payload: object, ledger_retry: object = None) -> Outcome:
    """openOrder → the venue's view of the order (creates orders placed elsewhere)."""
    return _run(self, "open_order", payload, ledger_retry)


@celery_app.task(name="tasks.ledger.record_order_error", **TASK_OPTIONS)
def record_order_error(self: Task, payload: object, ledger_retry: object = None) -> Outcome:
    """error() for an order id → reject / cancel confirmed / cancel failed, or recorded only."""
    return _run(self, "order_error", payload, ledger_retry)


@celery_app.task(name="tasks.ledger.record_order_replaced", **TASK_OPTIONS)
def record_order_replaced(self: Task, payload: object, ledger_retry: object = None) -> Outcome:
    """Bridge re-placed an order under a new IB id after error 103; the order follows it."""
    return _run(self, "order_replaced", payload, ledger_retry)


@celery_app.task(name="tasks.ledger.record_contract", **TASK_OPTIONS)
def record_contract(self: Task, payload: object, ledger_retry: object = None) -> Outcome:
    """contractDetails → the `contracts` cache row (newest answer wins); key con_id."""
    return _run(self, "contract", payload, ledger_retry)


@celery_app.task(name="tasks.ledger.record_batch", **TASK_OPTIONS)
def record_batch(self: Task, items: object, ledger_retry: object = None) -> list[Outcome]:
    """Several callbacks in one message (`[{"kind": "execution", "payload": {...}}, ...]`).

    For bursts: one broker round trip and one transaction instead of N
    (`services.ledger.callbacks.process_batch`: one commit, each touched position recomputed
    once). When the batch cannot be recorded whole (a writer refuses an item, a unique-key
    race, an outage) nothing of it is written and the items are recorded one by one, each in
    its own transaction, in the order given, so one bad item is rejected (or dead-lettered)
    alone; a retry after a transient failure repeats the items already recorded, which their
    own idempotency keys turn into no-ops.
    """
    attempt = _Attempt(self, ledger_retry)
    engine, now = attempt.engine, attempt.now
    if not isinstance(items, list):
        return [reject_payload(engine, "batch", "BAD_PAYLOAD", "expected a JSON list", items, now)]
    known = [
        (item["kind"], item.get("payload"))
        for item in items
        if isinstance(item, dict) and isinstance(item.get("kind"), str) and item["kind"] in WRITERS
    ]
    if attempt.state.first_failed_at is None and len(known) == len(items):
        try:
            return process_batch(known, engine=engine, redis_client=attempt.redis, now=now)
        except BatchNotRecorded as e:
            log.info("ledger.batch_split", items=len(items), item=e.index, error=repr(e.cause))
    outcomes: list[Outcome] = []
    for item in items:
        kind = item.get("kind") if isinstance(item, dict) else None
        if not isinstance(kind, str) or kind not in WRITERS:
            outcomes.append(
                reject_payload(engine, "batch", "UNKNOWN_KIND", f"kind {kind!r}", item, now)
            )
            continue
        payload = item.get("payload")
        try:
            outcomes.append(attempt.record(kind, payload))
        except Exception as e:
            outcomes.append(attempt.failed(e, kind, payload))
    return outcomes
