"""The Celery application (`celery -A tasks.app worker -Q ledger` runs a worker), and what every
epm task shell shares: its result type, the stores it opens, the store-outage retry policy with
its alerts, and the after-fork reconnect hook.

The outage policy (first written for the ledger, `tasks/ledger.py`; intake runs on it too): a task
whose store is unreachable (`is_store_outage`) is retried **without limit**, so no intent or
callback is lost because PostgreSQL or Redis was down for a while. The transaction either
committed or left nothing behind, so every retry is safe and finds what committed. The countdown
is capped exponential backoff with full jitter (`retry_countdown`), held under half the broker's
visibility timeout: with Redis a retry is a new message whose countdown the worker holds
unacknowledged, and one held past the timeout would be delivered a second time. From attempt
`alert_after` on each try logs `<name>.retrying_long` and a `<name>_retrying` alert goes to
`epm:alerts` (at most one per `alert_interval_s` across workers). The knobs are the
`EPM_LEDGER_RETRY_*` / `EPM_LEDGER_ALERT_*` settings (`RetryPolicy.from_settings`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import redis
import sqlalchemy as sa
from celery import Celery, Task
from celery.signals import worker_process_init
from sqlalchemy.engine import Engine

from epm.logging import get_logger, install_celery_logging
from epm.redis_conn import get_redis, reset_redis_cache
from epm.settings import Settings, get_settings
from store.db import dispose_engines, make_engine

# Every task module is listed so a worker on any queue knows every task name; a deployed task is
# never renamed, because in-flight messages carry the name.
TASK_MODULES: list[str] = ["tasks.intake", "tasks.ledger", "tasks.orders"]

celery_app = Celery("epm", include=TASK_MODULES)
celery_app.config_from_object("celeryconfig")
# Workers and beat log through epm's structlog setup, each line with its task's ids.
install_celery_logging()

app = celery_app

log = get_logger(__name__)

# What a task returns: JSON primitives (results are ignored by the broker config, but the CLI,
# the tests and `apply()` callers read them).
Outcome = dict[str, Any]

# Failures that time fixes: the database unreachable or dropping the connection (and, on
# PostgreSQL, a deadlock or serialization failure; on SQLite "database is locked": all
# OperationalError), a pool timeout, Redis unreachable. Bad input is never among them.
STORE_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)

# The bridge's alert stream (`ibgateway_bridge.commands.ALERT_STREAM`, same field shape: kind,
# message, at, extras), spelled here so the tasks do not import the bridge.
ALERT_STREAM = "epm:alerts"
_ALERT_THROTTLE_KEY = "epm:alerts:throttle:{kind}"
_ALERT_MAXLEN = 10_000
# Past 2**this the backoff ceiling is the cap anyway; keeps the float finite for any attempt.
_MAX_BACKOFF_EXPONENT = 32

_rng = random.Random()


def is_store_outage(error: BaseException, extra: tuple[type[BaseException], ...] = ()) -> bool:
    """True for failures that time fixes (retried without limit): `STORE_OUTAGE_ERRORS`, any
    driver error that invalidated its connection, and the caller's own `extra` classes."""
    if isinstance(error, STORE_OUTAGE_ERRORS + extra):
        return True
    return isinstance(error, sa.exc.DBAPIError) and bool(error.connection_invalidated)


def retry_countdown(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds before retry number `attempt + 1`: full jitter under min(cap, base * 2**attempt).

    The cap never exceeds half the broker's visibility timeout, so a retry held by a worker is
    never redelivered to another while it waits.
    """
    visibility = float(
        (celery_app.conf.broker_transport_options or {}).get("visibility_timeout", 3600)
    )
    ceiling = min(cap_s, visibility / 2, base_s * 2.0 ** min(attempt, _MAX_BACKOFF_EXPONENT))
    return rng.uniform(0, ceiling)


def raise_alert(client: redis.Redis, kind: str, message: str, now: datetime, **extra: str) -> None:
    """Append an alert to `epm:alerts` (never raises: an alert must not fail the task)."""
    fields: dict[Any, Any] = {
        "kind": kind,
        "message": message,
        "at": now.astimezone(UTC).isoformat(),
        **extra,
    }
    try:
        client.xadd(ALERT_STREAM, fields, maxlen=_ALERT_MAXLEN, approximate=True)
    except redis.RedisError as e:
        log.warning("tasks.alert_failed", kind=kind, error=repr(e))


def alert_due(client: redis.Redis, kind: str, interval_s: float) -> bool:
    """At most one alert of `kind` per interval across every worker (SET NX PX); when Redis
    cannot say, the alert is due (a duplicate alert beats a silent outage)."""
    if interval_s <= 0:
        return True
    try:
        key = _ALERT_THROTTLE_KEY.format(kind=kind)
        return bool(client.set(key, "1", nx=True, px=max(int(interval_s * 1000), 1)))
    except redis.RedisError:
        return True


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how loudly a task waits out a store outage (see the module docstring)."""

    base_s: float
    max_s: float
    alert_after: int
    alert_interval_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        # One outage policy for every queue; the settings still carry the ledger's name, where
        # it was first written.
        return cls(
            base_s=settings.ledger_retry_base_s,
            max_s=settings.ledger_retry_max_s,
            alert_after=settings.ledger_alert_after,
            alert_interval_s=settings.ledger_alert_interval_s,
        )


@dataclass(frozen=True, slots=True)
class RetryState:
    """What a retry message carries besides the task's own arguments (one keyword argument).

    Only when the failures began: the attempt count is Celery's own (`request.retries`).
    """

    first_failed_at: str | None = None

    @classmethod
    def load(cls, raw: object) -> RetryState:
        """Read it back from a message; anything unreadable is a fresh state, never an error."""
        if not isinstance(raw, Mapping):
            return cls()
        first = raw.get("first_failed_at")
        return cls(first_failed_at=first if isinstance(first, str) else None)

    def dump(self) -> dict[str, Any]:
        return {"first_failed_at": self.first_failed_at}

    def since(self, now: datetime) -> RetryState:
        """This state, stamped with `now` as the first failure if none is recorded yet."""
        return self if self.first_failed_at is not None else RetryState(now.isoformat())


class RetriedTask(Task):  # type: ignore[misc]
    """Base of epm's tasks: acknowledged after they ran, retried only by the task's own code.

    `max_retries` is None (unlimited) because the code decides which failures retry and for how
    long (`run_through_outages`); Celery's autoretry with a fixed budget would drop the work.
    """

    acks_late = True
    max_retries = None


# `@celery_app.task(name=..., **TASK_OPTIONS)`: the shape of every task that retries outages.
TASK_OPTIONS: dict[str, Any] = {"base": RetriedTask, "bind": True}


@dataclass(frozen=True, slots=True)
class Stores:
    """One task run's stores and clock reading, from the process's settings."""

    settings: Settings
    engine: Engine
    redis: redis.Redis
    now: datetime

    @classmethod
    def open(cls) -> Stores:
        """This process's engine and Redis client (pooled per URL, connecting lazily)."""
        settings = get_settings()
        return cls(
            settings=settings,
            engine=make_engine(settings.resolved_database_url()),
            redis=get_redis(settings),
            now=datetime.now(UTC),
        )


def retry_after_outage(
    task: Task,
    error: BaseException,
    *,
    name: str,
    stores: Stores,
    state: RetryState,
    state_kwarg: str,
    fields: Mapping[str, str],
) -> NoReturn:
    """Send the task again after a backoff countdown (raises Celery's `Retry`), without limit.

    `name` prefixes the log events and alert kind (`intake.retrying`, `intake_retrying`);
    `state_kwarg` is the keyword the task takes its `RetryState` in; `fields` (the work's own
    key, e.g. the signal_id) go into the logs and alerts.
    """
    policy = RetryPolicy.from_settings(stores.settings)
    attempts = int(task.request.retries or 0) + 1
    state = state.since(stores.now)
    countdown = retry_countdown(attempts - 1, policy.base_s, policy.max_s, _rng)
    info = {
        "task": str(task.name),
        **fields,
        "attempts": str(attempts),
        "error": repr(error)[:500],
        "countdown_s": str(round(countdown, 3)),
    }
    if attempts >= policy.alert_after:
        log.warning(f"{name}.retrying_long", first_failed_at=state.first_failed_at, **info)
        kind = f"{name}_retrying"
        if alert_due(stores.redis, kind, policy.alert_interval_s):
            raise_alert(
                stores.redis,
                kind,
                f"{task.name} retrying since {state.first_failed_at}: "
                f"attempt {attempts}, {type(error).__name__}",
                stores.now,
                **info,
                first_failed_at=str(state.first_failed_at),
            )
    else:
        log.info(f"{name}.retrying", **info)
    raise task.retry(
        args=list(task.request.args or []),
        kwargs={**(task.request.kwargs or {}), state_kwarg: state.dump()},
        countdown=countdown,
        exc=error,
        max_retries=None,
    )


def run_through_outages(
    task: Task,
    work: Callable[[Stores], Outcome],
    *,
    name: str,
    retry_state: object,
    state_kwarg: str,
    describe: Callable[[], Mapping[str, str]] = dict,
) -> Outcome:
    """Run `work` on this run's stores; retry a store outage without limit, report the rest.

    Anything that is not an outage is a bug or a store refusing for good: retrying would repeat
    it, so it is logged (`<name>.failed`), alerted (`<name>_failed`) and raised, and Celery
    records the task as failed. `describe` gives the work's key for logs and alerts; it is only
    called on failure.
    """
    stores = Stores.open()
    try:
        return work(stores)
    except Exception as error:
        fields = dict(describe())
        if is_store_outage(error):
            retry_after_outage(
                task,
                error,
                name=name,
                stores=stores,
                state=RetryState.load(retry_state),
                state_kwarg=state_kwarg,
                fields=fields,
            )
        log.exception(f"{name}.failed", task=str(task.name), **fields)
        policy = RetryPolicy.from_settings(stores.settings)
        if alert_due(stores.redis, f"{name}_failed", policy.alert_interval_s):
            raise_alert(
                stores.redis,
                f"{name}_failed",
                f"{task.name} failed with {type(error).__name__}; not retried",
                stores.now,
                task=str(task.name),
                error=repr(error)[:500],
                **fields,
            )
        raise


@worker_process_init.connect  # type: ignore[untyped-decorator]
def fresh_connections_after_fork(**_: object) -> None:
    """A prefork child must not share the parent's pooled sockets (SQLite, PostgreSQL, Redis)."""
    dispose_engines()
    reset_redis_cache()
