"""The ledger queue: IB callbacks from the bridge → fills, commissions, orders, positions.

One task per callback kind, each taking the bridge's payload (JSON primitives, Decimal as str,
see `ibgateway_bridge/payloads.py`) and running one write transaction (`store.ledger`):

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
Store outages, lock conflicts and concurrent creations are retried with backoff; the transaction
either committed or left nothing, and the retry finds what committed.

After commit the order is mirrored to Redis hash `exec:order:{client_order_id}` (the DB is the
truth; a mirror write only lands if its `version` is newer than the one in Redis).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis
import sqlalchemy as sa
from celery.signals import worker_process_init
from sqlalchemy.engine import Engine

from epm.logging import get_logger
from epm.redis_conn import get_redis, reset_redis_cache
from epm.settings import get_settings
from models.ledger_reports import ReportError, parse_report
from models.orders import InvalidTransition
from store import ledger
from store.db import dispose_engines, json_dumps, make_engine, write_transaction
from store.schema import risk_events
from tasks.app import celery_app

log = get_logger(__name__)

Outcome = dict[str, Any]

MIRROR_KEY = "exec:order:{client_order_id}"

# Only failures that another try can fix: store outages, deadlocks/serialization failures, a
# unique-key race with a concurrent creator, a version bump under us.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.IntegrityError,
    ledger.StaleOrderError,
)

# Sets the hash only when the incoming version is newer, so two workers finishing out of order
# never leave the older state in Redis.
_MIRROR_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


def _json_safe(payload: object) -> object:
    # Kept as JSON when it is JSON PostgreSQL's JSONB can hold (no NUL); else as its repr, which
    # escapes NUL and anything unserializable.
    try:
        blob = json_dumps(payload)
    except (TypeError, ValueError):
        return repr(payload)[:10_000]
    return repr(payload)[:10_000] if "\\u0000" in blob else payload


def _reject(
    engine: Engine, kind: str, code: str, message: str, payload: object, now: datetime
) -> Outcome:
    with write_transaction(engine) as conn:
        conn.execute(
            risk_events.insert().values(
                kind="LEDGER_PAYLOAD_REJECTED",
                severity="error",
                scope="ledger",
                scope_key=kind,
                code=code,
                message=message[:2000],
                details={"payload": _json_safe(payload)},
                ts_event=now,
                created_at=now,
            )
        )
    log.error("ledger.payload_rejected", kind=kind, code=code, message=message)
    return {"outcome": "rejected", "reason": code, "message": message}


def mirror_order(redis_client: redis.Redis, order: dict[str, str]) -> bool:
    """Write the order's Redis mirror if it is newer than what is there; True when written."""
    if not order:
        return False
    key = MIRROR_KEY.format(client_order_id=order["client_order_id"])
    flat: list[str] = []
    for name, value in order.items():
        flat.extend((name, value))
    written = redis_client.eval(_MIRROR_SCRIPT, 1, key, order["version"], *flat)
    return bool(written)


def process_callback(
    kind: str,
    payload: object,
    *,
    engine: Engine,
    redis_client: redis.Redis | None,
    now: datetime,
) -> Outcome:
    """Validate and record one callback; the body of every ledger task, callable without Celery.

    `now` (aware UTC) is the ledger's receive time (`ts_init`, `updated_at`).
    """
    model, writer = ledger.WRITERS[kind]
    try:
        report = parse_report(model, payload)
    except ReportError as e:
        return _reject(engine, kind, e.code, e.message, payload, now)
    try:
        with write_transaction(engine) as conn:
            result = writer(conn, report, now)
    except ReportError as e:
        return _reject(engine, kind, e.code, e.message, payload, now)
    except (InvalidTransition, ledger.OrderNotFoundError) as e:
        return _reject(engine, kind, e.code, str(e), payload, now)
    if redis_client is not None and result.order:
        try:
            mirror_order(redis_client, result.order)
            if result.retired:
                # Adopted stand-ins have no row any more; repeated on every write of the
                # adopter, so a stand-in mirror written late by a slower task goes too.
                redis_client.delete(
                    *(MIRROR_KEY.format(client_order_id=coid) for coid in result.retired)
                )
        except redis.RedisError as e:
            # The mirror is a cache of the DB; the next write of this order refreshes it.
            log.warning("ledger.mirror_failed", error=repr(e), **_ids(result))
    log.info("ledger.recorded", kind=kind, outcome=result.outcome, **_ids(result))
    return result.as_dict()


def _ids(result: ledger.LedgerResult) -> dict[str, str]:
    order = result.order
    return {
        "client_order_id": order.get("client_order_id", ""),
        "ib_order_id": order.get("ib_order_id", ""),
        "perm_id": order.get("perm_id", ""),
    }


def _run(kind: str, payload: object) -> Outcome:
    settings = get_settings()
    return process_callback(
        kind,
        payload,
        engine=make_engine(settings.resolved_database_url()),
        redis_client=get_redis(settings),
        now=datetime.now(UTC),
    )


_TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 10,
}


@celery_app.task(name="tasks.ledger.record_execution", **_TASK_OPTIONS)
def record_execution(payload: object) -> Outcome:
    """execDetails → one fill (idempotent on exec_id), order cumulative, FSM, position."""
    return _run("execution", payload)


@celery_app.task(name="tasks.ledger.record_commission", **_TASK_OPTIONS)
def record_commission(payload: object) -> Outcome:
    """commissionReport → the execution's commission (replaces the estimate); key exec_id."""
    return _run("commission", payload)


@celery_app.task(name="tasks.ledger.record_order_status", **_TASK_OPTIONS)
def record_order_status(payload: object) -> Outcome:
    """orderStatus → FSM event (late/duplicate ones recorded, not applied)."""
    return _run("order_status", payload)


@celery_app.task(name="tasks.ledger.record_open_order", **_TASK_OPTIONS)
def record_open_order(payload: object) -> Outcome:
    """openOrder → the venue's view of the order (creates orders placed elsewhere)."""
    return _run("open_order", payload)


@celery_app.task(name="tasks.ledger.record_order_error", **_TASK_OPTIONS)
def record_order_error(payload: object) -> Outcome:
    """error() for an order id → reject / cancel confirmed / cancel failed, or recorded only."""
    return _run("order_error", payload)


@celery_app.task(name="tasks.ledger.record_order_replaced", **_TASK_OPTIONS)
def record_order_replaced(payload: object) -> Outcome:
    """Bridge re-placed an order under a new IB id after error 103; the order follows it."""
    return _run("order_replaced", payload)


@celery_app.task(name="tasks.ledger.record_contract", **_TASK_OPTIONS)
def record_contract(payload: object) -> Outcome:
    """contractDetails → the `contracts` cache row (newest answer wins); key con_id."""
    return _run("contract", payload)


@celery_app.task(name="tasks.ledger.record_batch", **_TASK_OPTIONS)
def record_batch(items: object) -> list[Outcome]:
    """Several callbacks in one message (`[{"kind": "execution", "payload": {...}}, ...]`).

    For bursts: one broker round trip instead of N. Each item still runs in its own transaction,
    in the order given, so one bad item is rejected alone; a retry after a transient failure
    repeats the items already recorded, which their own idempotency keys turn into no-ops.
    """
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url())
    client = get_redis(settings)
    now = datetime.now(UTC)
    if not isinstance(items, list):
        return [_reject(engine, "batch", "BAD_PAYLOAD", "expected a JSON list", items, now)]
    outcomes: list[Outcome] = []
    for item in items:
        kind = item.get("kind") if isinstance(item, dict) else None
        if not isinstance(kind, str) or kind not in ledger.WRITERS:
            outcomes.append(_reject(engine, "batch", "UNKNOWN_KIND", f"kind {kind!r}", item, now))
            continue
        outcomes.append(
            process_callback(kind, item.get("payload"), engine=engine, redis_client=client, now=now)
        )
    return outcomes


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    # A prefork child must not share the parent's pooled sockets (SQLite, PostgreSQL, Redis).
    dispose_engines()
    reset_redis_cache()
