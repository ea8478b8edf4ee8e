"""The payloads of the ledger tasks: IB callbacks as the bridge sends them (snake_case, exact).

These validate what `ibgateway_bridge/payloads.py` builds: Decimal as `str` (a float is refused,
it is already inexact), times as ISO-8601 with an offset (naive times are refused), IB's "unset"
values as None. Unknown keys are ignored so the bridge can add raw fields without breaking
running workers. A payload that fails validation becomes a `ReportError` with a reason code in
the task, never a traceback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from models.fills import IB_SIDES, Side

# IB's UNSET_DOUBLE (1.7976931348623157e308) if the bridge let one through.
_UNSET_FLOOR = Decimal("1e300")


def _no_float(value: object) -> object:
    if isinstance(value, bool | float):
        raise ValueError("send decimals as strings, never as floats")
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def _finite(value: Decimal | None) -> Decimal | None:
    if value is not None and not value.is_finite():
        raise ValueError("decimal must be finite")
    return value


def _unset_to_none(value: Decimal | None) -> Decimal | None:
    if value is not None and abs(value) >= _UNSET_FLOOR:
        return None
    return value


def _multiplier(value: object) -> object:
    # Contract.multiplier is a string; "" (stocks) means 1.
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    return _no_float(value)


ExactDecimal = Annotated[Decimal, BeforeValidator(_no_float), AfterValidator(_finite)]
OptionalDecimal = Annotated[
    Decimal | None,
    BeforeValidator(_no_float),
    AfterValidator(_finite),
    AfterValidator(_unset_to_none),
]
Multiplier = Annotated[Decimal | None, BeforeValidator(_multiplier), AfterValidator(_finite)]


def _utc(value: datetime) -> datetime:
    # Stored as UTC; an offset time at the edge of the calendar (0001-01-01+14:00) has no UTC.
    try:
        return value.astimezone(UTC)
    except OverflowError as e:
        raise ValueError("timestamp out of range") from e


# Ids as the ledger's columns hold them: BIGINT, and INTEGER for client ids and error codes;
# a larger number is refused here rather than overflowing the database driver.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
# Aware (naive times are refused) and converted to UTC.
UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]


def _side(value: object) -> object:
    if isinstance(value, str) and value.upper() in IB_SIDES:
        return IB_SIDES[value.upper()]
    return value


# IB's order id is `ib_order_id` (apart from the ledger's own key); payloads queued before the
# rename said `order_id`, and are still read.
_IB_ORDER_ID = AliasChoices("ib_order_id", "order_id")


class _Report(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", str_strip_whitespace=True, validate_by_name=True
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL text and JSONB cannot hold NUL; refused here, not by the driver mid-write.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        return value


class _OrderReport(_Report):
    """What execDetails and openOrder both say about the order and its contract."""

    client_id: Int32 | None = None
    perm_id: Int64 | None = None
    order_ref: str | None = None
    con_id: Int64 | None = None
    symbol: str | None = None
    sec_type: str | None = None
    multiplier: Multiplier = None
    account: str | None = None
    received_at: UtcTime


class ExecutionReport(_OrderReport):
    """execDetails (live, or a reqExecutions reply); idempotency key `exec_id`."""

    exec_id: str = Field(min_length=1)
    ib_order_id: Int64 | None = Field(default=None, validation_alias=_IB_ORDER_ID)
    local_symbol: str | None = None
    currency: str | None = None
    side: Annotated[Side, BeforeValidator(_side)]
    shares: ExactDecimal = Field(ge=0)
    price: ExactDecimal
    cum_qty: OptionalDecimal = None
    avg_price: OptionalDecimal = None
    exec_exchange: str | None = None
    time: UtcTime | None = None


class CommissionReport(_Report):
    """commissionReport; joins its execution by `exec_id`, before or after it arrives."""

    exec_id: str = Field(min_length=1)
    commission: ExactDecimal
    currency: str | None = None
    realized_pnl: OptionalDecimal = None
    received_at: UtcTime


class OrderStatusReport(_Report):
    """orderStatus; IB repeats these freely, the ledger makes repeats no-ops."""

    ib_order_id: Int64 = Field(validation_alias=_IB_ORDER_ID)
    client_id: Int32 | None = None
    perm_id: Int64 | None = None
    ib_status: str = Field(min_length=1)
    filled: ExactDecimal = Field(ge=0)
    remaining: ExactDecimal = Field(ge=0)
    avg_fill_price: OptionalDecimal = None
    parent_id: Int64 | None = None
    why_held: str | None = None
    received_at: UtcTime


class OpenOrderReport(_OrderReport):
    """openOrder: the venue's view of one order (also how orders are rebuilt after a restart)."""

    ib_order_id: Int64 = Field(validation_alias=_IB_ORDER_ID)
    action: str | None = None
    total_quantity: OptionalDecimal = None
    order_type: str | None = None
    lmt_price: OptionalDecimal = None
    aux_price: OptionalDecimal = None
    tif: str | None = None
    exchange: str | None = None
    parent_id: Int64 | None = None
    filled_quantity: OptionalDecimal = None
    ib_status: str | None = None


class OrderErrorReport(_Report):
    """error() for an order id: rejects, cancel confirmations and cancel failures."""

    ib_order_id: Int64 = Field(validation_alias=_IB_ORDER_ID)
    client_id: Int32 | None = None
    code: Int32
    message: str = ""
    error_time: UtcTime | None = None
    received_at: UtcTime


class OrderReplacedReport(_Report):
    """The bridge re-placed an order under a fresh id after error 103 (duplicate order id)."""

    old_ib_order_id: Int64 = Field(validation_alias=AliasChoices("old_ib_order_id", "old_order_id"))
    new_ib_order_id: Int64 = Field(validation_alias=AliasChoices("new_ib_order_id", "new_order_id"))
    client_order_id: str = Field(min_length=1)
    client_id: Int32
    reason: str = ""
    at: UtcTime


R = TypeVar("R", bound=_Report)


class ReportError(ValueError):
    """A ledger payload that cannot be recorded, with a stable reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def parse_report(model: type[R], payload: object) -> R:
    """Validate `payload` as `model`.

    Raises
    ------
    ReportError
        `BAD_PAYLOAD` when it is not a JSON object, `INVALID_<MODEL>` when a field is wrong.
    """
    if not isinstance(payload, dict):
        raise ReportError("BAD_PAYLOAD", f"expected a JSON object, got {type(payload).__name__}")
    try:
        return model.model_validate(payload)
    except ValidationError as e:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) or "payload" for err in e.errors())
        code = "INVALID_" + model.__name__.removesuffix("Report").upper()
        raise ReportError(code, f"invalid fields: {fields}") from e


class ContractReport(_Report):
    """contractDetails: one row of the contract cache (`contracts`)."""

    con_id: Int64 = Field(gt=0)
    symbol: str = Field(min_length=1)
    sec_type: str = Field(min_length=1)
    local_symbol: str | None = None
    expiry: str | None = None
    strike: OptionalDecimal = None
    right: str | None = None
    multiplier: Multiplier = None
    exchange: str | None = None
    primary_exchange: str | None = None
    currency: str | None = None
    trading_class: str | None = None
    long_name: str | None = None
    min_tick: OptionalDecimal = None
    time_zone_id: str | None = None
    trading_hours: str | None = None
    liquid_hours: str | None = None
    under_con_id: Int64 | None = None
    received_at: UtcTime
