"""What workers call to reach IB: enqueue a command on the bridge's stream, get its stream id.

Workers never open an IB socket. An order is sent in three steps, each idempotent: allocate an id
(`allocate_order_id`), persist the order as pending in the ledger, then `enqueue_place`. The bridge
refuses an id it already sent, so re-running a task that enqueued twice is harmless.

Ids survive Redis losing `ib:order:last_id`: allocation then refuses instead of counting from 1,
and a worker that passes `floor` (the ledger's highest id, `store.order_ids.highest_ib_order_id`)
re-seeds the counter above it and above every sent marker (`reseed_order_ids`). This module never
reads the ledger itself: the bridge process does not import `store/`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis

from ibgateway_bridge.commands import (
    COMMAND_STREAM,
    SENT_KEY,
    STREAM_MAXLEN,
    WHAT_IF_KEY,
    CancelOrder,
    Command,
    ContractSpec,
    GlobalCancel,
    ModifyOrder,
    OrderSpec,
    PlaceOrder,
    RequestContractDetails,
    RequestExecutions,
    RequestPositions,
    SubscribeMarketData,
    UnsubscribeMarketData,
    encode_command,
)
from ibgateway_bridge.ids import OrderIdAllocator, OrderIdCounterMissingError
from ibgateway_bridge.snapshots import SNAPSHOT_END_KEY, SNAPSHOT_ITEMS_KEY

# Ids a re-seed leaves unused above the highest id known: ids allocated just before Redis lost the
# counter and not yet in the ledger or a sent marker (a worker between allocating and committing).
# Gaps are harmless to IB, which only needs ids to grow.
ORDER_ID_RESEED_MARGIN = 1000


def _redis(client: redis.Redis | None) -> redis.Redis:
    if client is not None:
        return client
    from epm.redis_conn import get_redis

    return get_redis()


def enqueue(
    command: Command, client: redis.Redis | None = None, now: datetime | None = None
) -> str:
    """XADD one validated command; returns its stream id."""
    r = _redis(client)
    fields: dict[Any, Any] = dict(encode_command(command, now or datetime.now(UTC)))
    return str(r.xadd(COMMAND_STREAM, fields, maxlen=STREAM_MAXLEN, approximate=True))


def allocate_order_id(
    client: redis.Redis | None = None,
    *,
    floor: Callable[[], int] | None = None,
    client_id: int = 1,
) -> int:
    """A fresh IB order id from `ib:order:last_id` (never reused).

    When Redis lost the counter, raises `OrderIdCounterMissingError` unless `floor` is given: a
    callable returning the highest id the ledger knows for `client_id` (asked only then); the
    counter is re-seeded above it and the sent markers (`reseed_order_ids`), then allocated from.
    """
    r = _redis(client)
    allocator = OrderIdAllocator(r)
    try:
        return allocator.allocate()
    except OrderIdCounterMissingError:
        if floor is None:
            raise
    reseed_order_ids(floor(), client=r, client_id=client_id)
    return allocator.allocate()


def highest_sent_order_id(client: redis.Redis | None = None, client_id: int = 1) -> int:
    """The highest order id with a sent marker (`ib:sent:{client_id}:{order_id}[:…]`), 0 if none."""
    r = _redis(client)
    prefix = SENT_KEY.format(client_id=client_id, order_id="")
    pattern = re.compile(re.escape(prefix) + r"(\d+)(?::|$)")
    highest = 0
    for key in r.scan_iter(match=f"{prefix}*", count=1000):
        text = key.decode() if isinstance(key, bytes) else str(key)
        match = pattern.match(text)
        if match is not None:
            highest = max(highest, int(match.group(1)))
    return highest


def reseed_order_ids(
    floor: int,
    client: redis.Redis | None = None,
    client_id: int = 1,
    margin: int = ORDER_ID_RESEED_MARGIN,
    raise_existing: bool = False,
) -> int:
    """Re-create `ib:order:last_id` at max(`floor`, sent markers) + `margin`; the value after.

    `floor` is the highest id the ledger knows (the caller reads it; this module does not touch
    the ledger). The counter is only created when missing (SET NX, so concurrent re-seeders agree
    and none lowers it); `raise_existing` also raises a present counter that is lower. Never
    lowers it.
    """
    r = _redis(client)
    seed = max(floor, highest_sent_order_id(r, client_id)) + margin
    allocator = OrderIdAllocator(r)
    if raise_existing:
        return allocator.raise_to(seed)
    return allocator.seed(seed)


def enqueue_place(
    ib_order_id: int,
    client_order_id: str,
    contract: ContractSpec | Mapping[str, Any],
    order: OrderSpec | Mapping[str, Any],
    strategy: str | None = None,
    client: redis.Redis | None = None,
) -> str:
    """Queue a new order; `client_order_id` travels as IB `orderRef` so fills map back."""
    fields = _order_fields(ib_order_id, client_order_id, contract, order, strategy)
    return enqueue(PlaceOrder(**fields), client)


def enqueue_modify(
    ib_order_id: int,
    version: int,
    client_order_id: str,
    contract: ContractSpec | Mapping[str, Any],
    order: OrderSpec | Mapping[str, Any],
    strategy: str | None = None,
    client: redis.Redis | None = None,
) -> str:
    """Queue a modification of a working order; each (ib_order_id, version) is sent once."""
    fields = _order_fields(ib_order_id, client_order_id, contract, order, strategy)
    return enqueue(ModifyOrder(version=version, **fields), client)


def _order_fields(
    ib_order_id: int,
    client_order_id: str,
    contract: ContractSpec | Mapping[str, Any],
    order: OrderSpec | Mapping[str, Any],
    strategy: str | None,
) -> dict[str, Any]:
    """The fields a placement and a modification share, validated from models or plain dicts."""
    return {
        "ib_order_id": ib_order_id,
        "client_order_id": client_order_id,
        "contract": ContractSpec.model_validate(contract),
        "order": OrderSpec.model_validate(order),
        "strategy": strategy,
    }


def enqueue_cancel(ib_order_id: int, client: redis.Redis | None = None) -> str:
    """Queue a cancel; it overtakes every queued placement and modification."""
    return enqueue(CancelOrder(ib_order_id=ib_order_id), client)


def enqueue_global_cancel(reason: str | None = None, client: redis.Redis | None = None) -> str:
    return enqueue(GlobalCancel(reason=reason), client)


def enqueue_contract_details(
    contract: ContractSpec | Mapping[str, Any], client: redis.Redis | None = None
) -> str:
    """Ask for contract details; the answer lands in `contract:{conid}` and the ledger."""
    return enqueue(RequestContractDetails(contract=ContractSpec.model_validate(contract)), client)


def enqueue_subscribe(
    con_id: int,
    requester: str,
    contract: ContractSpec | Mapping[str, Any] | None = None,
    depth: bool = False,
    bars: bool = False,
    client: redis.Redis | None = None,
) -> str:
    """Ask for `md:{con_id}` to be kept fresh on behalf of `requester` (reference-counted)."""
    spec = None if contract is None else ContractSpec.model_validate(contract)
    command = SubscribeMarketData(
        con_id=con_id, requester=requester, contract=spec, depth=depth, bars=bars
    )
    return enqueue(command, client)


def enqueue_unsubscribe(con_id: int, requester: str, client: redis.Redis | None = None) -> str:
    return enqueue(UnsubscribeMarketData(con_id=con_id, requester=requester), client)


def enqueue_req_executions(since: datetime | None = None, client: redis.Redis | None = None) -> str:
    """Ask the bridge for an executions snapshot (recon); replies go to the ledger as fills."""
    return enqueue(RequestExecutions(since=since), client)


def enqueue_req_positions(client: redis.Redis | None = None) -> str:
    return enqueue(RequestPositions(), client)


def request_executions_snapshot(
    since: datetime | None = None, client: redis.Redis | None = None
) -> str:
    """Ask the bridge for the venue's executions (since `since`) as a snapshot for the caller:
    answered under the returned request id (`read_snapshot`), not sent to the ledger."""
    request_id = f"ex-{uuid.uuid4().hex}"
    enqueue(RequestExecutions(since=since, request_id=request_id), client)
    return request_id


def request_positions_snapshot(client: redis.Redis | None = None) -> str:
    """Ask the bridge for the venue's positions (reqPositionsMulti) as a snapshot."""
    request_id = f"pos-{uuid.uuid4().hex}"
    enqueue(RequestPositions(request_id=request_id), client)
    return request_id


class SnapshotIncompleteError(Exception):
    """The bridge could not store every answer of the snapshot (its end marker says -1)."""


def read_snapshot(
    request_id: str, timeout_s: float, client: redis.Redis | None = None
) -> list[dict[str, Any]] | None:
    """The snapshot's answers in arrival order once its end came; None when it did not come
    within `timeout_s` (no bridge, no venue, a reconnect mid-answer).

    Raises `SnapshotIncompleteError` when the bridge says some answers were lost.
    """
    r = _redis(client)
    end_key = SNAPSHOT_END_KEY.format(request_id=request_id)
    items_key = SNAPSHOT_ITEMS_KEY.format(request_id=request_id)
    deadline = time.monotonic() + timeout_s
    while True:
        count = r.lindex(end_key, 0)
        if count is not None:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(0.02, remaining))
    expected = int(count)
    if expected < 0:
        raise SnapshotIncompleteError(f"snapshot {request_id}: the bridge lost some answers")
    raw = r.lrange(items_key, 0, -1)
    if len(raw) != expected:
        raise SnapshotIncompleteError(
            f"snapshot {request_id}: {len(raw)} answers stored, the bridge counted {expected}"
        )
    r.delete(end_key, items_key)
    return [json.loads(item) for item in raw]


def limit_order(action: str, quantity: Decimal | str, lmt_price: Decimal | str) -> OrderSpec:
    """Shorthand for the common case (tests, `epm` commands)."""
    return OrderSpec(action=action, quantity=Decimal(quantity), lmt_price=Decimal(lmt_price))  # type: ignore[arg-type]


def what_if_answer(client_order_id: str, client: redis.Redis | None = None) -> dict[str, str]:
    """The venue's answer to the what-if placed with orderRef `client_order_id` (`WHAT_IF_KEY`:
    the OrderState margins as strings, `status`, `received_at`), empty while none has come.

    A what-if is placed like any order (`enqueue_place` with `what_if` set in the order): the
    bridge stores the openOrder that answers it and never treats it as an order."""
    r = _redis(client)
    raw = r.hgetall(WHAT_IF_KEY.format(order_ref=client_order_id))
    return {_str(k): _str(v) for k, v in raw.items()}


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
