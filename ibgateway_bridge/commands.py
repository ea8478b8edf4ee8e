"""The bridge's command intake: the Redis stream `ib:commands`, its shapes, markers and halts.

Workers never talk to IB; they `XADD` a command (see `client_api`) and the bridge reads the stream
with the consumer group `bridge`. A command is acknowledged (`XACK`) only after its bytes are on the
socket and a sent marker is recorded, in one Lua script that also checks the bridge still holds its
lease (fencing). Markers (`Marker`), one per placement `ib:sent:{client_id}:{order_id}` and one
per modification `…:v{version}`, hold `{state}:{stream_id}:{reason}:{order_ref}`:

- `pending` just before the socket write, `sent` after it;
- `refused` when the bridge (or the kill switch's purge) refused the command for good: every later
  copy of it (a Celery redelivery, a reread) is refused the same way, so a refused or cancelled
  order can never go out after all.

A placement replayed after a crash whose marker says `sent` is acknowledged without sending. One
whose marker says `pending` (the bridge died between the two writes) is settled once the reconnect
resync has listed the venue's open and completed orders and executions: the venue (or the ledger's
mirror) knowing the order means it was sent; a complete resync that does not know it means it never
left, and it is sent now; anything short of certainty refuses it (`SEND_UNCERTAIN`), never resends.
Cancels carry no marker: IB answers a repeated cancel with 10148/161 and nothing changes, so every
cancel command goes out (a refused cancel can be asked for again).

Halts (`epm:halt:global`, `epm:halt:instrument:{con_id}`, `epm:halt:strategy:{name}`) refuse
placements and modifications at send time, checked again right before the socket write; cancels
always go. A refused command is acknowledged and published to `epm:bridge:rejects` with a reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

import redis
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from ibgateway_bridge.pacing import Priority

COMMAND_STREAM = "ib:commands"
COMMAND_GROUP = "bridge"
COMMAND_CONSUMER = "bridge-1"
REJECT_STREAM = "epm:bridge:rejects"
ALERT_STREAM = "epm:alerts"
AUDIT_STREAM = "epm:audit"
HALT_GLOBAL_KEY = "epm:halt:global"
HALT_INSTRUMENT_KEY = "epm:halt:instrument:{con_id}"
HALT_STRATEGY_KEY = "epm:halt:strategy:{strategy}"
SENT_KEY = "ib:sent:{client_id}:{order_id}"
# An order re-placed under a fresh id (after 103, or an id the venue holds for another order):
# old id → new id, so commands still naming the old id (in flight, or from a producer that has not
# heard yet) follow the order, also after a bridge restart.
REPLACED_KEY = "ib:replaced:{client_id}:{order_id}"
# A cancel of this order id was sent (or decided): a placement of it the venue never accepted is
# never sent again or re-placed after a 103, also by a bridge restarted after the cancel.
CANCEL_ASKED_KEY = "ib:cancel_asked:{client_id}:{order_id}"
# Sent markers outlive any replay window (stream entries are trimmed long before a week is over).
SENT_TTL_S = 7 * 24 * 3600
# Keep the stream bounded; only acknowledged history is ever trimmed away in practice.
STREAM_MAXLEN = 100_000


class CommandType(StrEnum):
    PLACE = "place"
    MODIFY = "modify"
    CANCEL = "cancel"
    GLOBAL_CANCEL = "global_cancel"
    CONTRACT_DETAILS = "contract_details"
    MKT_DATA_SUBSCRIBE = "mkt_data_subscribe"
    MKT_DATA_UNSUBSCRIBE = "mkt_data_unsubscribe"
    REQ_EXECUTIONS = "req_executions"
    REQ_POSITIONS = "req_positions"


class BridgeRejectReason(StrEnum):
    """Why the bridge refused a command (stable codes on `epm:bridge:rejects`)."""

    MALFORMED_COMMAND = "MALFORMED_COMMAND"
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
    HALTED_GLOBAL = "HALTED_GLOBAL"
    HALTED_INSTRUMENT = "HALTED_INSTRUMENT"
    HALTED_STRATEGY = "HALTED_STRATEGY"
    CANCELED_BEFORE_SEND = "CANCELED_BEFORE_SEND"
    DUPLICATE_COMMAND = "DUPLICATE_COMMAND"
    MARKET_DATA_LINES_EXHAUSTED = "MARKET_DATA_LINES_EXHAUSTED"
    CLIENT_ID_IN_USE = "CLIENT_ID_IN_USE"
    ORDER_ID_NOT_ALLOCATED = "ORDER_ID_NOT_ALLOCATED"
    # A modification of an order whose placement never went out (refused, purged, unsent).
    ORDER_NOT_SENT = "ORDER_NOT_SENT"
    # A crash left a placement's fate unknown and the venue's lists could not settle it.
    SEND_UNCERTAIN = "SEND_UNCERTAIN"


_FROZEN = ConfigDict(frozen=True, extra="forbid")
PositiveDecimal = Annotated[Decimal, Field(gt=0)]


class ComboLegSpec(BaseModel):
    """One leg of a BAG contract: the leg's conId, its ratio per combo unit and its action."""

    model_config = _FROZEN

    con_id: int = Field(ge=1)
    ratio: int = Field(ge=1)
    action: Literal["BUY", "SELL"]
    exchange: str = "SMART"


class ContractSpec(BaseModel):
    """What IB needs to identify an instrument; `con_id` alone is enough once known. A combo is
    `sec_type` BAG with `combo_legs` (and the underlying's symbol)."""

    model_config = _FROZEN

    con_id: int | None = Field(default=None, ge=1)
    symbol: str | None = None
    sec_type: str = "STK"
    exchange: str = "SMART"
    currency: str = "USD"
    expiry: str | None = None
    strike: Decimal | None = None
    right: Literal["C", "P", "CALL", "PUT"] | None = None
    multiplier: str | None = None
    local_symbol: str | None = None
    primary_exchange: str | None = None
    trading_class: str | None = None
    combo_legs: tuple[ComboLegSpec, ...] | None = None


# A what-if's answer, by the placement's orderRef: the OrderState margins as IB sent them (strings),
# `status`, `ib_order_id` and `received_at` (written by the bridge, read by `client_api.what_if`).
WHAT_IF_KEY = "ib:whatif:{order_ref}"
WHAT_IF_TTL_S = 3600


class OrderSpec(BaseModel):
    """The order fields epm uses; everything else stays at ibapi's defaults."""

    model_config = _FROZEN

    action: Literal["BUY", "SELL"]
    quantity: PositiveDecimal
    order_type: str = "LMT"
    lmt_price: Decimal | None = None
    aux_price: Decimal | None = None
    trailing_percent: Decimal | None = Field(default=None, gt=0, lt=100)
    tif: str = "DAY"
    account: str | None = None
    parent_id: int | None = Field(default=None, ge=1)
    transmit: bool = True
    oca_group: str | None = None
    good_till_date: str | None = None
    outside_rth: bool = False
    # IB's whatIf: the venue answers the margin impact (`WHAT_IF_KEY`) and never works the order.
    what_if: bool = False


class _OrderFields(BaseModel):
    """What a placement and a modification both carry: the whole order, as IB wants it resent."""

    model_config = _FROZEN

    ib_order_id: int = Field(ge=1, validation_alias=AliasChoices("ib_order_id", "order_id"))
    client_order_id: str = Field(min_length=1, max_length=64)
    contract: ContractSpec
    order: OrderSpec
    strategy: str | None = None


class PlaceOrder(_OrderFields):
    """Send a new order under an id the caller allocated (`ib:order:last_id`)."""

    type: Literal[CommandType.PLACE] = CommandType.PLACE


class ModifyOrder(_OrderFields):
    """Re-send a working order with changed fields; `version` makes each modification apply once."""

    type: Literal[CommandType.MODIFY] = CommandType.MODIFY
    version: int = Field(ge=1)


class CancelOrder(BaseModel):
    model_config = _FROZEN

    type: Literal[CommandType.CANCEL] = CommandType.CANCEL
    ib_order_id: int = Field(ge=1, validation_alias=AliasChoices("ib_order_id", "order_id"))


class GlobalCancel(BaseModel):
    model_config = _FROZEN

    type: Literal[CommandType.GLOBAL_CANCEL] = CommandType.GLOBAL_CANCEL
    reason: str | None = None


class RequestContractDetails(BaseModel):
    model_config = _FROZEN

    type: Literal[CommandType.CONTRACT_DETAILS] = CommandType.CONTRACT_DETAILS
    contract: ContractSpec


class SubscribeMarketData(BaseModel):
    """Reference-counted: the line opens for the first requester, closes after the last."""

    model_config = _FROZEN

    type: Literal[CommandType.MKT_DATA_SUBSCRIBE] = CommandType.MKT_DATA_SUBSCRIBE
    con_id: int = Field(ge=1)
    requester: str = Field(min_length=1)
    contract: ContractSpec | None = None
    depth: bool = False
    bars: bool = False


class UnsubscribeMarketData(BaseModel):
    model_config = _FROZEN

    type: Literal[CommandType.MKT_DATA_UNSUBSCRIBE] = CommandType.MKT_DATA_UNSUBSCRIBE
    con_id: int = Field(ge=1)
    requester: str = Field(min_length=1)


# A snapshot's request id names the Redis keys its answer goes to (`snapshots.py`).
SnapshotRequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class RequestExecutions(BaseModel):
    """Without `request_id` the answers go to the ledger as fills (as the connect resync's do);
    with one they are a snapshot for the caller only (`snapshots.py`, reconciliation)."""

    model_config = _FROZEN

    type: Literal[CommandType.REQ_EXECUTIONS] = CommandType.REQ_EXECUTIONS
    since: datetime | None = None
    request_id: SnapshotRequestId | None = None


class RequestPositions(BaseModel):
    """Without `request_id`, reqPositions (answers to `ib:positions:{account}`); with one,
    reqPositionsMulti under an IB request id, answered as a snapshot (`snapshots.py`)."""

    model_config = _FROZEN

    type: Literal[CommandType.REQ_POSITIONS] = CommandType.REQ_POSITIONS
    request_id: SnapshotRequestId | None = None


Command = (
    PlaceOrder
    | ModifyOrder
    | CancelOrder
    | GlobalCancel
    | RequestContractDetails
    | SubscribeMarketData
    | UnsubscribeMarketData
    | RequestExecutions
    | RequestPositions
)

_MODELS: dict[str, type[BaseModel]] = {
    CommandType.PLACE: PlaceOrder,
    CommandType.MODIFY: ModifyOrder,
    CommandType.CANCEL: CancelOrder,
    CommandType.GLOBAL_CANCEL: GlobalCancel,
    CommandType.CONTRACT_DETAILS: RequestContractDetails,
    CommandType.MKT_DATA_SUBSCRIBE: SubscribeMarketData,
    CommandType.MKT_DATA_UNSUBSCRIBE: UnsubscribeMarketData,
    CommandType.REQ_EXECUTIONS: RequestExecutions,
    CommandType.REQ_POSITIONS: RequestPositions,
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One stream entry: its id, the parsed command, and when the producer enqueued it."""

    stream_id: str
    command: Command
    enqueued_at: datetime | None
    # Set by the bridge for a placement it sent whose bytes the venue never got (a reset
    # connection): its own `sent` marker does not stop it.
    resend: bool = False


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A stream entry that could not be parsed; acknowledged and rejected with `reason`."""

    stream_id: str
    reason: BridgeRejectReason
    message: str
    raw: dict[str, str]


def encode_command(command: Command, now: datetime) -> dict[str, str]:
    """Command → stream entry fields (`type`, `body` JSON with Decimal as str, `enqueued_at`)."""
    return {
        "type": str(command.type),
        "body": command.model_dump_json(exclude={"type"}),
        "enqueued_at": now.astimezone(UTC).isoformat(),
    }


def parse_entry(stream_id: str, fields: dict[str, str]) -> Envelope | BadCommand:
    """Stream entry → `Envelope`, or `BadCommand` with a reason code (never an exception)."""
    kind = fields.get("type")
    model = _MODELS.get(kind or "")
    if model is None:
        return BadCommand(
            stream_id, BridgeRejectReason.UNKNOWN_COMMAND, f"unknown type {kind!r}", fields
        )
    try:
        body: Any = json.loads(fields.get("body") or "{}")
        if not isinstance(body, dict):
            raise ValueError("body is not an object")
        command = model.model_validate({**body, "type": kind})
    except (ValueError, ValidationError) as e:
        return BadCommand(stream_id, BridgeRejectReason.MALFORMED_COMMAND, str(e)[:500], fields)
    enqueued: datetime | None = None
    raw_time = fields.get("enqueued_at")
    if raw_time:
        try:
            enqueued = datetime.fromisoformat(raw_time)
        except ValueError:
            enqueued = None
    return Envelope(stream_id, command, enqueued)  # type: ignore[arg-type]


def lane_of(command: Command) -> int | None:
    """Commands of one order share a backlog lane: they leave in the order they came."""
    if isinstance(command, PlaceOrder | ModifyOrder | CancelOrder):
        return command.ib_order_id
    return None


def priority_of(command: Command) -> Priority:
    """Cancels first, then modifications, placements, requests (across orders only)."""
    if isinstance(command, GlobalCancel):
        return Priority.GLOBAL_CANCEL
    if isinstance(command, CancelOrder):
        return Priority.CANCEL
    if isinstance(command, ModifyOrder):
        return Priority.MODIFY
    if isinstance(command, PlaceOrder):
        return Priority.PLACE
    return Priority.REQUEST


def place_key(client_id: int, order_id: int) -> str:
    """The marker key of the placement under `order_id`."""
    return SENT_KEY.format(client_id=client_id, order_id=order_id)


def sent_key(client_id: int, command: Command) -> str | None:
    """The sent-marker key for `command`, or None for commands that need none (cancels too)."""
    if isinstance(command, PlaceOrder):
        return place_key(client_id, command.ib_order_id)
    if isinstance(command, ModifyOrder):
        return f"{place_key(client_id, command.ib_order_id)}:v{command.version}"
    return None


class MarkerState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Marker:
    """A parsed marker; `order_ref` is None on markers written before refs were recorded."""

    state: MarkerState
    stream_id: str
    reason: str = ""
    order_ref: str | None = None

    @classmethod
    def parse(cls, value: str) -> Marker:
        parts = value.split(":", 3)
        state = MarkerState(parts[0])
        if len(parts) < 4:
            return cls(state, parts[1] if len(parts) > 1 else "")
        return cls(state, parts[1], parts[2], parts[3] or None)

    def encode(self) -> str:
        return f"{self.state}:{self.stream_id}:{self.reason}:{self.order_ref or ''}"

    def other_order(self, order_ref: str) -> bool:
        """True when the marker belongs to another order that was given the same id."""
        return self.order_ref is not None and self.order_ref != order_ref


def marker_value(
    state: MarkerState, stream_id: str, order_ref: str | None, reason: str = ""
) -> str:
    return Marker(state, stream_id, reason, order_ref).encode()


def ensure_group(client: redis.Redis, stream: str = COMMAND_STREAM) -> None:
    """Create the consumer group (and the stream) if missing; idempotent."""
    try:
        client.xgroup_create(stream, COMMAND_GROUP, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


# Record the marker and acknowledge in one step, only while the lease is ours (fencing).
_MARK_ACK_LUA = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
end
if ARGV[5] ~= '' then
  redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
end
return 1
"""

# Pre-write (or refusal) marker: only while the lease is ours, and never over an existing marker.
_MARK_PENDING_LUA = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local cur = redis.call('GET', KEYS[2])
if cur then
  return cur
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""

# Replace our own `pending` marker (ARGV[4] is its prefix): refused for good (ARGV[2]) or, when
# ARGV[2] is empty, removed because nothing left the socket. Anyone else's marker stays.
_SETTLE_PENDING_LUA = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local cur = redis.call('GET', KEYS[2])
if cur and string.sub(cur, 1, string.len(ARGV[4])) ~= ARGV[4] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
else
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
end
return 1
"""


class LeaseFencedError(RuntimeError):
    """A marker write found the lease held by someone else: this bridge must stop."""


class CommandLog:
    """Stream reads, fenced marker writes and acknowledgements for one bridge."""

    def __init__(
        self,
        client: redis.Redis,
        lease_key: str,
        lease_value: str,
        stream: str = COMMAND_STREAM,
        consumer: str = COMMAND_CONSUMER,
    ) -> None:
        self._redis = client
        self._lease_key = lease_key
        self._lease_value = lease_value
        self.stream = stream
        self.consumer = consumer
        self._mark_ack = client.register_script(_MARK_ACK_LUA)
        self._mark_pending = client.register_script(_MARK_PENDING_LUA)
        self._settle_pending = client.register_script(_SETTLE_PENDING_LUA)

    def read(
        self, start: str | None, count: int = 100, block_ms: int = 200
    ) -> list[tuple[str, dict[str, str]]]:
        """Our unacknowledged entries after `start`, or new ones when `start` is None."""
        response: Any = self._redis.xreadgroup(
            COMMAND_GROUP,
            self.consumer,
            {self.stream: ">" if start is None else start},
            count=count,
            block=block_ms if start is None else None,
        )
        entries: list[tuple[str, dict[str, str]]] = []
        for _stream, items in response or []:
            for stream_id, fields in items:
                entries.append((stream_id, fields or {}))
        return entries

    def claim_orphans(self, min_idle_ms: int = 0) -> int:
        """Take over entries another consumer name read but never acknowledged."""
        moved = 0
        start = "0-0"
        while True:
            result = self._redis.xautoclaim(
                self.stream, COMMAND_GROUP, self.consumer, min_idle_ms, start, count=500
            )
            start, claimed = result[0], result[1]
            moved += len(claimed)
            if start in ("0-0", b"0-0"):
                return moved

    def marker(self, key: str) -> str | None:
        value = self._redis.get(key)
        return None if value is None else str(value)

    def mark_pending(self, key: str, stream_id: str, order_ref: str | None = None) -> str | None:
        """Write `pending` before the socket write; returns an existing marker instead."""
        return self._claim(key, marker_value(MarkerState.PENDING, stream_id, order_ref))

    def claim_refusal(
        self, key: str, stream_id: str, reason: str, order_ref: str | None = None
    ) -> str | None:
        """Mark a command that never went out as refused for good, unless a marker exists
        (returned instead): a copy was sent, is being sent, or was refused already."""
        return self._claim(key, marker_value(MarkerState.REFUSED, stream_id, order_ref, reason))

    def _claim(self, key: str, value: str) -> str | None:
        result = self._mark_pending(
            keys=[self._lease_key, key], args=[self._lease_value, value, SENT_TTL_S]
        )
        if result == -1:
            raise LeaseFencedError("lease lost before send")
        if result == 1:
            return None
        return str(result)

    def refuse_pending(self, key: str, stream_id: str, reason: str, order_ref: str | None) -> None:
        """Our `pending` marker becomes `refused` (the write was stopped before any byte left)."""
        value = marker_value(MarkerState.REFUSED, stream_id, order_ref, reason)
        self._settle(key, stream_id, value)

    def clear_pending(self, key: str, stream_id: str) -> None:
        """Remove our `pending` marker: nothing left the socket, the command will be retried."""
        self._settle(key, stream_id, "")

    def _settle(self, key: str, stream_id: str, value: str) -> None:
        prefix = f"{MarkerState.PENDING}:{stream_id}"
        result = self._settle_pending(
            keys=[self._lease_key, key], args=[self._lease_value, value, SENT_TTL_S, prefix]
        )
        if result == -1:
            raise LeaseFencedError("lease lost while settling a marker")

    def mark_sent_and_ack(
        self, key: str | None, stream_id: str, order_ref: str | None = None
    ) -> None:
        """After the write: marker `sent` and XACK, atomically, under the lease."""
        value = marker_value(MarkerState.SENT, stream_id, order_ref)
        result = self._mark_ack(
            keys=[self._lease_key, key or "", self.stream],
            args=[self._lease_value, value, SENT_TTL_S, COMMAND_GROUP, stream_id],
        )
        if result == -1:
            raise LeaseFencedError("lease lost after send")

    def ack(self, stream_id: str) -> None:
        """Acknowledge without a marker (refused, duplicate or marker-free commands)."""
        self.mark_sent_and_ack(None, stream_id)


def halt_reason(
    client: redis.Redis, con_id: int | None, strategy: str | None
) -> BridgeRejectReason | None:
    """Which halt, if any, forbids a new order for this instrument/strategy (one round trip)."""
    keys = [HALT_GLOBAL_KEY]
    keys.append(HALT_INSTRUMENT_KEY.format(con_id=con_id) if con_id else "")
    keys.append(HALT_STRATEGY_KEY.format(strategy=strategy) if strategy else "")
    values = client.mget([k for k in keys if k])
    named = dict(zip([k for k in keys if k], values, strict=True))
    if named.get(HALT_GLOBAL_KEY):
        return BridgeRejectReason.HALTED_GLOBAL
    if keys[1] and named.get(keys[1]) not in (None, "0", ""):
        return BridgeRejectReason.HALTED_INSTRUMENT
    if keys[2] and named.get(keys[2]):
        return BridgeRejectReason.HALTED_STRATEGY
    return None


def publish_reject(
    client: redis.Redis,
    stream_id: str,
    reason: BridgeRejectReason,
    message: str,
    command: Command | None,
    now: datetime,
) -> str:
    """Add a refusal to `epm:bridge:rejects` (the order's owner reads it and closes the order)."""
    fields: dict[Any, Any] = {
        "stream_id": stream_id,
        "reason": str(reason),
        "message": message[:500],
        "at": now.astimezone(UTC).isoformat(),
    }
    if command is not None:
        fields["type"] = str(command.type)
        ib_order_id = getattr(command, "ib_order_id", None)
        if ib_order_id is not None:
            fields["ib_order_id"] = str(ib_order_id)
        client_order_id = getattr(command, "client_order_id", None)
        if client_order_id is not None:
            fields["client_order_id"] = client_order_id
    return str(client.xadd(REJECT_STREAM, fields, maxlen=STREAM_MAXLEN, approximate=True))


def raise_alert(client: redis.Redis, kind: str, message: str, now: datetime, **extra: str) -> str:
    """Page-worthy events (326, 1100, lease lost) go to `epm:alerts`."""
    fields: dict[Any, Any] = {
        "kind": kind,
        "message": message,
        "at": now.astimezone(UTC).isoformat(),
        **extra,
    }
    return str(client.xadd(ALERT_STREAM, fields, maxlen=10_000, approximate=True))


def audit(client: redis.Redis, actor: str, action: str, now: datetime, **details: str) -> str:
    """Append to the `epm:audit` stream (kill switch, resume, order replaced)."""
    fields: dict[Any, Any] = {
        "actor": actor,
        "action": action,
        "at": now.astimezone(UTC).isoformat(),
        **details,
    }
    return str(client.xadd(AUDIT_STREAM, fields, maxlen=100_000, approximate=True))
