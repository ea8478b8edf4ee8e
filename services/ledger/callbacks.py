"""Use case: record one IB callback from the bridge: validate → write → mirror → log.

The body of every ledger task (`tasks/ledger.py` adds only the retry policy), callable without
Celery by the CLI's dead-letter replay and the tests. One write transaction per callback; after
commit the order is mirrored to the Redis hash `exec:order:{client_order_id}` (the database is
the truth; a mirror write only lands if its `version` is newer than the one in Redis). A payload
that cannot be recorded becomes a `risk_events` row (kind `LEDGER_PAYLOAD_REJECTED`, with its
reason code) and the call returns normally: bad input never loops through redeliveries.

`process_batch` records several callbacks (a burst the outbox sent as one message) in two
transactions at most (its executions first, then everything else): each touched position
recomputed once per transaction, the mirrors in one Redis round trip. A writer that refuses an
item, or any failure, rolls its transaction back and raises `BatchNotRecorded`; the caller then
records the items one by one (`process_callback`), where each refusal or failure is handled
alone, and what the first transaction committed comes back as duplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import redis
from sqlalchemy.engine import Connection, Engine

from epm.logging import get_logger
from models.ledger_reports import (
    CommissionReport,
    ContractReport,
    ExecutionReport,
    OpenOrderReport,
    OrderErrorReport,
    OrderReplacedReport,
    OrderStatusReport,
    ReportError,
    parse_report,
)
from models.ledger_rules import batch_lock_order
from models.orders import InvalidTransition
from services.ledger.positions import once_per_batch
from services.ledger.record_commission import record_commission
from services.ledger.record_contract import record_contract
from services.ledger.record_execution import record_execution
from services.ledger.record_open_order import record_open_order
from services.ledger.record_order_error import record_order_error
from services.ledger.record_order_replaced import record_order_replaced
from services.ledger.record_order_status import record_order_status
from services.ledger.result import LedgerResult, OrderNotFoundError
from store import risk_events
from store.db import json_dumps, write_transaction

log = get_logger(__name__)

Outcome = dict[str, Any]
Writer = Callable[[Connection, Any, datetime], LedgerResult]

# Each callback kind the bridge sends (`ibgateway_bridge/payloads.py`): the model its payload
# must validate as, and the use case that records it.
WRITERS: dict[str, tuple[type[Any], Writer]] = {
    "execution": (ExecutionReport, record_execution),
    "commission": (CommissionReport, record_commission),
    "order_status": (OrderStatusReport, record_order_status),
    "open_order": (OpenOrderReport, record_open_order),
    "order_error": (OrderErrorReport, record_order_error),
    "order_replaced": (OrderReplacedReport, record_order_replaced),
    "contract": (ContractReport, record_contract),
}

MIRROR_KEY = "exec:order:{client_order_id}"

# Sets the hash only when the incoming version is newer, so two workers finishing out of order
# never leave the older state in Redis.
_MIRROR_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


def json_safe(payload: object) -> object:
    """The payload as JSON PostgreSQL's JSONB can hold (no NUL), else its (escaped) repr."""
    try:
        blob = json_dumps(payload)
    except (TypeError, ValueError):
        return repr(payload)[:10_000]
    return repr(payload)[:10_000] if "\\u0000" in blob else payload


def reject_payload(
    engine: Engine, kind: str, code: str, message: str, payload: object, now: datetime
) -> Outcome:
    """Record a callback that cannot be recorded as a `risk_events` row; its outcome."""
    with write_transaction(engine) as conn:
        risk_events.record(
            conn,
            kind="LEDGER_PAYLOAD_REJECTED",
            severity="error",
            scope="ledger",
            scope_key=kind,
            code=code,
            message=message,
            details={"payload": json_safe(payload)},
            now=now,
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
    """Validate and record one callback; the body of every ledger task.

    `now` (aware UTC) is the ledger's receive time (`ts_init`, `updated_at`).
    """
    model, writer = WRITERS[kind]
    try:
        report = parse_report(model, payload)
    except ReportError as e:
        return reject_payload(engine, kind, e.code, e.message, payload, now)
    try:
        with write_transaction(engine) as conn:
            result = writer(conn, report, now)
    except ReportError as e:
        return reject_payload(engine, kind, e.code, e.message, payload, now)
    except (InvalidTransition, OrderNotFoundError) as e:
        return reject_payload(engine, kind, e.code, str(e), payload, now)
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
            log.warning("ledger.mirror_failed", error=repr(e), **order_ids(result))
    log.info("ledger.recorded", kind=kind, outcome=result.outcome, **order_ids(result))
    return result.as_dict()


def order_ids(result: LedgerResult) -> dict[str, str]:
    """The ids of the order a write touched, for logs."""
    order = result.order
    return {
        "client_order_id": order.get("client_order_id", ""),
        "ib_order_id": order.get("ib_order_id", ""),
        "perm_id": order.get("perm_id", ""),
    }


class BatchNotRecorded(Exception):
    """A batch was rolled back whole; record its items one by one (`process_callback`)."""

    def __init__(self, index: int, kind: str, cause: BaseException) -> None:
        super().__init__(f"batch item {index} ({kind}): {cause!r}")
        self.index = index
        self.kind = kind
        self.cause = cause


def _names_order(report: object) -> tuple[int | None, int | None]:
    """The (client_id, IB order id) a parsed callback names, for the batch's lock order."""
    order_id = getattr(report, "ib_order_id", None)
    client_id = getattr(report, "client_id", None)
    if not isinstance(order_id, int):
        return (None, None)
    return (client_id if isinstance(client_id, int) else None, order_id)


def process_batch(
    items: Sequence[tuple[str, object]],
    *,
    engine: Engine,
    redis_client: redis.Redis | None,
    now: datetime,
) -> list[Outcome]:
    """Record `(kind, payload)` callbacks in two write transactions; their outcomes, in order.

    A payload that does not validate is rejected inside the same transaction (its
    `risk_events` row commits with the others). Items are written ordered by the order they
    name (`models.ledger_rules.batch_lock_order`), so concurrent batches lock order rows in one
    order; positions are recomputed once each at the end (`positions.once_per_batch`).

    Raises
    ------
    BatchNotRecorded
        A writer refused an item or anything failed: that transaction wrote nothing (the
        executions' transaction may have committed; recording them again is a no-op).
    """
    parsed: list[tuple[str, object, Any, ReportError | None]] = []
    for kind, payload in items:
        model, _writer = WRITERS[kind]
        try:
            parsed.append((kind, payload, parse_report(model, payload), None))
        except ReportError as e:
            parsed.append((kind, payload, None, e))
    outcomes: list[Outcome | None] = [None] * len(parsed)
    results: list[tuple[str, LedgerResult]] = []
    order = batch_lock_order([_names_order(report) for _k, _p, report, _e in parsed])
    # Executions commit first, in a transaction of their own: the fill is what the desk waits
    # for, and the statuses and views that came in the same burst need not hold it back.
    first = [i for i in order if parsed[i][0] == "execution"]
    rest = [i for i in order if parsed[i][0] != "execution"]
    index, kind = -1, ""
    try:
        for part in (first, rest):
            if not part:
                continue
            with write_transaction(engine) as conn, once_per_batch(conn, now):
                for index in part:
                    kind, payload, report, refused = parsed[index]
                    if refused is not None:
                        outcomes[index] = _reject_in(conn, kind, refused, payload, now)
                        continue
                    result = WRITERS[kind][1](conn, report, now)
                    results.append((kind, result))
                    outcomes[index] = result.as_dict()
    except Exception as e:
        raise BatchNotRecorded(index, kind, e) from e
    if redis_client is not None:
        mirror_orders(redis_client, [result for _kind, result in results])
    for kind, result in results:
        log.info("ledger.recorded", kind=kind, outcome=result.outcome, **order_ids(result))
    return [outcome for outcome in outcomes if outcome is not None]


def _reject_in(
    conn: Connection, kind: str, error: ReportError, payload: object, now: datetime
) -> Outcome:
    """`reject_payload` inside a caller's transaction."""
    risk_events.record(
        conn,
        kind="LEDGER_PAYLOAD_REJECTED",
        severity="error",
        scope="ledger",
        scope_key=kind,
        code=error.code,
        message=error.message,
        details={"payload": json_safe(payload)},
        now=now,
    )
    log.error("ledger.payload_rejected", kind=kind, code=error.code, message=error.message)
    return {"outcome": "rejected", "reason": error.code, "message": error.message}


def mirror_orders(redis_client: redis.Redis, results: Sequence[LedgerResult]) -> None:
    """The mirrors of every order a batch wrote (its newest version each), one round trip."""
    newest: dict[str, dict[str, str]] = {}
    retired: set[str] = set()
    for result in results:
        order = result.order
        if not order:
            continue
        seen = newest.get(order["client_order_id"])
        if seen is None or int(order["version"]) >= int(seen["version"]):
            newest[order["client_order_id"]] = order
        retired.update(result.retired)
    if not newest:
        return
    try:
        pipe = redis_client.pipeline(transaction=False)
        for order in newest.values():
            flat: list[str] = []
            for name, value in order.items():
                flat.extend((name, value))
            key = MIRROR_KEY.format(client_order_id=order["client_order_id"])
            pipe.eval(_MIRROR_SCRIPT, 1, key, order["version"], *flat)
        if retired:
            pipe.delete(*(MIRROR_KEY.format(client_order_id=coid) for coid in retired))
        pipe.execute()
    except redis.RedisError as e:
        # The mirror is a cache of the DB; the next write of these orders refreshes it.
        log.warning("ledger.mirror_failed", error=repr(e), orders=len(newest))
