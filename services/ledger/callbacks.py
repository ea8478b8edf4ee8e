"""Use case: record one IB callback from the bridge: validate → write → mirror → log.

The body of every ledger task (`tasks/ledger.py` adds only the retry policy), callable without
Celery by the CLI's dead-letter replay and the tests. One write transaction per callback; after
commit the order is mirrored to the Redis hash `exec:order:{client_order_id}` (the database is
the truth; a mirror write only lands if its `version` is newer than the one in Redis). A payload
that cannot be recorded becomes a `risk_events` row (kind `LEDGER_PAYLOAD_REJECTED`, with its
reason code) and the call returns normally: bad input never loops through redeliveries.
"""

from __future__ import annotations

from collections.abc import Callable
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
from models.orders import InvalidTransition
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
