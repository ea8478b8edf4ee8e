"""The trade intent of blueprint §4.1 and the pure validation pipeline that admits it.

`validate_intent(payload, today=...)` is total: whatever it is given (a dict, a JSON string, bytes,
garbage), it returns either a frozen `Intent` or a `Reject` with a stable reason code, and raises
nothing. The pydantic model does the field-level work; every validator raises a
`PydanticCustomError` whose type is `epm.<REASON>` so the first error maps to one specific code.

Decisions where the blueprint is silent (documented here because producers depend on them):
- Required: signal_id, strategy, instrument, side, quantity, urgency, time_in_force. Optional:
  good_till (exactly when GTD), max_slippage_bps and expiry_policy (strategy defaults),
  target_price, risk_tags (default none), created_at (the signal's time).
- Quantities are whole contracts or whole shares: fractional shares are refused
  (FRACTIONAL_QUANTITY), because IB's API accepts them only for a few order types and accounts.
- Numbers may be JSON numbers or decimal strings ("12.5"); booleans never count as numbers. They
  are normalized (`10.0` → `10`) so the stored payload is canonical.
- Timestamps must carry an offset (naive times are ambiguous for a US market); stored in UTC.
- Enum values are exact, case included (`BUY`, `Immediate`, `GTD`, `earnings`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models.fills import Side as WireSide
from models.instruments import (
    Contract,
    InstrumentError,
    InstrumentKind,
    parse_instrument,
)
from models.playbook_params import ParamsError, StrategyParams, parse_params
from models.rejects import Reject, RejectReason
from models.strategies import STRATEGIES, ExpiryPolicy

__all__ = [
    "ACTIVE_STATUSES",
    "DEFAULT_CHECKS",
    "MAX_PAYLOAD_CHARS",
    "Check",
    "ExpiryPolicy",
    "IntakeContext",
    "Intent",
    "IntentStatus",
    "RiskTag",
    "Side",
    "TimeInForce",
    "Urgency",
    "checks_on_session_day",
    "parse_payload",
    "signal_id_of",
    "validate_intent",
]

MAX_PAYLOAD_CHARS = 65_536
MAX_QUANTITY = Decimal("10000000")
MAX_PRICE = Decimal("1000000")
PRICE_PLACES = 8
MAX_SLIPPAGE_BPS = Decimal("10000")
SLIPPAGE_PLACES = 4
MAX_RISK_TAGS = 16
_MAX_NUMBER_TEXT = 64
_MAX_TIMESTAMP_TEXT = 64

# Printable ASCII without spaces: UUIDs, "uw-2025-11-21-0001", "alpha:42/7" all fit.
SIGNAL_ID_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")
_NUMBER_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,6})?")
_NON_FINITE_TEXT = re.compile(r"[+-]?(s?nan|inf|infinity)", re.IGNORECASE)

E = TypeVar("E", bound=StrEnum)


class IntentStatus(StrEnum):
    """Where an intent is in its life; VALIDATED and WORKING count against the concurrency guard.

    Every intent ends COMPLETED (filled to its quantity), CANCELLED (by an operator), EXPIRED
    (its time ran out, or its plan ended short: the reason says which) or REJECTED.
    """

    VALIDATED = "VALIDATED"
    REJECTED = "REJECTED"
    WORKING = "WORKING"
    COMPLETED = "COMPLETED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


ACTIVE_STATUSES = frozenset({IntentStatus.VALIDATED, IntentStatus.WORKING})


class Side(StrEnum):
    """Intent semantics; on the wire IB knows only BUY and SELL (NOTES)."""

    BUY = "BUY"
    SELL = "SELL"
    BUY_TO_COVER = "BUY_TO_COVER"
    SELL_SHORT = "SELL_SHORT"

    @property
    def wire_action(self) -> WireSide:
        """IB's order action for this side (the one wire direction, `models.fills.Side`)."""
        return WireSide.BUY if self in (Side.BUY, Side.BUY_TO_COVER) else WireSide.SELL


class Urgency(StrEnum):
    IMMEDIATE = "Immediate"
    HIGH = "High"
    NORMAL = "Normal"
    PASSIVE = "Passive"


class TimeInForce(StrEnum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    OPG = "OPG"
    GTD = "GTD"


class RiskTag(StrEnum):
    """Flags a producer attaches so risk checks and playbooks can treat the intent specially."""

    EARNINGS = "earnings"
    MACRO_EVENT = "macro_event"
    HEDGED = "hedged"
    HIGH_VOLATILITY = "high_volatility"
    LOW_LIQUIDITY = "low_liquidity"


def _fail(reason: RejectReason, message: str) -> NoReturn:
    # The message goes through the context so braces in user data are never format fields.
    raise PydanticCustomError(f"epm.{reason.value}", "{detail}", {"detail": message})


def _fail_at(reason: RejectReason, message: str, field: str) -> NoReturn:
    """`_fail` naming a field below the one being validated (`params.trail_percent`)."""
    raise PydanticCustomError(
        f"epm.{reason.value}", "{detail}", {"detail": message, "field": field}
    )


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        _fail(RejectReason.INVALID_TYPE, f"expected a number, got {_short(value)}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            _fail(RejectReason.NON_FINITE_NUMBER, f"{value!r} is not a finite number")
        # repr is the shortest text that round-trips, so 0.1 stays 0.1 (never Decimal(0.1)).
        number = Decimal(repr(value))
    elif isinstance(value, str):
        if _NON_FINITE_TEXT.fullmatch(value.strip()):
            _fail(RejectReason.NON_FINITE_NUMBER, f"{_short(value)} is not a finite number")
        if len(value) > _MAX_NUMBER_TEXT or _NUMBER_TEXT.fullmatch(value) is None:
            _fail(RejectReason.INVALID_NUMBER, f"{_short(value)} is not a decimal number")
        number = Decimal(value)
    else:
        _fail(RejectReason.INVALID_TYPE, f"expected a number, got {type(value).__name__}")
    if not number.is_finite():
        _fail(RejectReason.NON_FINITE_NUMBER, f"{number} is not a finite number")
    return number


def _canonical(number: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (100, not 1E+2)."""
    if number == 0:
        return Decimal(0)
    reduced = number.normalize()
    exponent = reduced.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        reduced = reduced.quantize(Decimal(1))
    return reduced


def _has_places(number: Decimal, places: int) -> bool:
    return number == number.quantize(Decimal(1).scaleb(-places))


def _quantity(value: object) -> Decimal:
    number = _to_decimal(value)
    if number <= 0:
        _fail(RejectReason.INVALID_QUANTITY, f"quantity must be > 0, got {number}")
    if number > MAX_QUANTITY:
        _fail(RejectReason.NUMBER_OUT_OF_RANGE, f"quantity {number:.6g} exceeds {MAX_QUANTITY}")
    if number != number.to_integral_value():
        _fail(
            RejectReason.FRACTIONAL_QUANTITY,
            f"quantity must be whole contracts or shares, got {number}",
        )
    return number.quantize(Decimal(1))


def _target_price(value: object) -> Decimal | None:
    if value is None:
        return None
    number = _to_decimal(value)
    if number <= 0:
        _fail(RejectReason.INVALID_PRICE, f"target_price must be > 0, got {number}")
    if number > MAX_PRICE:
        _fail(RejectReason.NUMBER_OUT_OF_RANGE, f"target_price {number:.6g} exceeds {MAX_PRICE}")
    if not _has_places(number, PRICE_PLACES):
        _fail(RejectReason.INVALID_PRICE, f"target_price has more than {PRICE_PLACES} decimals")
    return _canonical(number)


def _slippage(value: object) -> Decimal | None:
    if value is None:
        return None
    number = _to_decimal(value)
    if number < 0:
        _fail(RejectReason.INVALID_SLIPPAGE, f"max_slippage_bps must be >= 0, got {number}")
    if number > MAX_SLIPPAGE_BPS:
        _fail(
            RejectReason.NUMBER_OUT_OF_RANGE,
            f"max_slippage_bps {number:.6g} exceeds {MAX_SLIPPAGE_BPS}",
        )
    if not _has_places(number, SLIPPAGE_PLACES):
        _fail(
            RejectReason.INVALID_SLIPPAGE,
            f"max_slippage_bps has more than {SLIPPAGE_PLACES} decimals",
        )
    return _canonical(number)


def _signal_id(value: object) -> str:
    if not isinstance(value, str):
        _fail(RejectReason.INVALID_TYPE, f"signal_id must be a string, got {type(value).__name__}")
    if SIGNAL_ID_PATTERN.fullmatch(value) is None:
        _fail(
            RejectReason.INVALID_SIGNAL_ID,
            "signal_id must be 1-128 printable ASCII characters without spaces",
        )
    return value


def _strategy(value: object) -> str:
    if not isinstance(value, str):
        _fail(RejectReason.INVALID_TYPE, f"strategy must be a string, got {type(value).__name__}")
    if value not in STRATEGIES:
        _fail(
            RejectReason.UNKNOWN_STRATEGY,
            f"unknown strategy {_short(value)}; known: {', '.join(STRATEGIES)}",
        )
    return value


def _instrument(value: object) -> Contract:
    if not isinstance(value, str):
        _fail(RejectReason.INVALID_TYPE, f"instrument must be a string, got {type(value).__name__}")
    try:
        return parse_instrument(value)
    except InstrumentError as e:
        _fail(e.reason, e.message)


def _enum_of(enum: type[E], reason: RejectReason, field: str) -> Callable[[object], E]:
    def validate(value: object) -> E:
        if isinstance(value, enum):
            return value
        if not isinstance(value, str):
            got = type(value).__name__
            _fail(RejectReason.INVALID_TYPE, f"{field} must be a string, got {got}")
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(m.value for m in enum)
            _fail(reason, f"unknown {field} {_short(value)}; allowed: {allowed}")

    return validate


def _optional_enum_of(
    enum: type[E], reason: RejectReason, field: str
) -> Callable[[object], E | None]:
    required = _enum_of(enum, reason, field)

    def validate(value: object) -> E | None:
        return None if value is None else required(value)

    return validate


def _risk_tags(value: object) -> tuple[RiskTag, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        _fail(RejectReason.INVALID_TYPE, f"risk_tags must be a list, got {type(value).__name__}")
    if len(value) > MAX_RISK_TAGS:
        _fail(RejectReason.INVALID_VALUE, f"at most {MAX_RISK_TAGS} risk_tags")
    tag = _enum_of(RiskTag, RejectReason.UNKNOWN_RISK_TAG, "risk tag")
    # A set of flags: order and repetition carry no meaning, so store them sorted and unique.
    return tuple(sorted({tag(item) for item in value}))


def _timestamp(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        if len(value) > _MAX_TIMESTAMP_TEXT:
            _fail(RejectReason.INVALID_TIMESTAMP, "timestamp text too long")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            _fail(RejectReason.INVALID_TIMESTAMP, f"{_short(value)} is not an ISO-8601 timestamp")
    elif isinstance(value, date):
        _fail(RejectReason.INVALID_TIMESTAMP, "a timestamp needs a time and an offset")
    else:
        _fail(RejectReason.INVALID_TYPE, f"expected an ISO-8601 string, got {type(value).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        _fail(RejectReason.INVALID_TIMESTAMP, f"{moment.isoformat()} has no UTC offset")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        _fail(RejectReason.INVALID_TIMESTAMP, f"{moment.isoformat()} is out of range")


def _contract_text(contract: Contract) -> str:
    return contract.text


Quantity = Annotated[Decimal, BeforeValidator(_quantity)]
Price = Annotated[Decimal | None, BeforeValidator(_target_price)]
SlippageBps = Annotated[Decimal | None, BeforeValidator(_slippage)]
Instrument = Annotated[
    Contract, PlainValidator(_instrument), PlainSerializer(_contract_text, return_type=str)
]
UtcTimestamp = Annotated[datetime | None, BeforeValidator(_timestamp)]

# A combo's legs: at least two, at most this many (IB's own limit for a BAG is higher; a roll
# closes and opens at most a few).
MAX_LEGS = 6
MAX_LEG_RATIO = 100


class Leg(BaseModel):
    """One leg of a combo intent: an instrument, how many of it per combo unit, and which way
    (for a BUY of the combo; a SELL of the combo reverses every leg)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instrument: Instrument
    ratio: int
    action: WireSide

    @field_validator("ratio", mode="before")
    @classmethod
    def _ratio(cls, value: Any) -> int:
        # JSON text is decoded with integers as Decimal (`parse_payload`): a whole one is a ratio.
        if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int | str):
            _fail(
                RejectReason.INVALID_LEGS, f"a leg's ratio is a whole number, not {_short(value)}"
            )
        try:
            ratio = int(value)
        except ValueError:
            _fail(
                RejectReason.INVALID_LEGS, f"a leg's ratio is a whole number, not {_short(value)}"
            )
        if not 1 <= ratio <= MAX_LEG_RATIO:
            _fail(RejectReason.INVALID_LEGS, f"a leg's ratio is 1..{MAX_LEG_RATIO}, not {ratio}")
        return ratio

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, value: Any) -> WireSide:
        try:
            return WireSide(value)
        except ValueError:
            _fail(RejectReason.INVALID_LEGS, f"a leg's action is BUY or SELL, not {_short(value)}")


class Intent(BaseModel):
    """A validated trade intent (blueprint §4.1), frozen.

    `instrument` holds the parsed contract and serializes back to its canonical text (the padded
    OCC form for options), so `Intent.model_validate(intent.to_payload())` gives the same intent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal_id: Annotated[str, BeforeValidator(_signal_id)]
    strategy: Annotated[str, BeforeValidator(_strategy)]
    instrument: Instrument
    side: Annotated[Side, BeforeValidator(_enum_of(Side, RejectReason.UNKNOWN_SIDE, "side"))]
    quantity: Quantity
    urgency: Annotated[
        Urgency, BeforeValidator(_enum_of(Urgency, RejectReason.UNKNOWN_URGENCY, "urgency"))
    ]
    time_in_force: Annotated[
        TimeInForce,
        BeforeValidator(_enum_of(TimeInForce, RejectReason.UNKNOWN_TIME_IN_FORCE, "time_in_force")),
    ]
    good_till: UtcTimestamp = None
    max_slippage_bps: SlippageBps = None
    target_price: Price = None
    expiry_policy: Annotated[
        ExpiryPolicy | None,
        BeforeValidator(
            _optional_enum_of(ExpiryPolicy, RejectReason.UNKNOWN_EXPIRY_POLICY, "expiry_policy")
        ),
    ] = None
    risk_tags: Annotated[tuple[RiskTag, ...], BeforeValidator(_risk_tags)] = ()
    created_at: UtcTimestamp = None
    # Per-strategy parameters, checked by the playbook's model (`models.playbook_params`) and
    # stored normalized (numbers as strings, defaults left out).
    params: dict[str, Any] | None = None
    # A combo (Spread_Roll): the legs per combo unit; `quantity` is then in combo units.
    legs: tuple[Leg, ...] | None = None

    @field_validator("legs", mode="before")
    @classmethod
    def _legs(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                _fail(RejectReason.INVALID_LEGS, "legs is text that is not a JSON list")
        if not isinstance(value, list | tuple):
            _fail(RejectReason.INVALID_LEGS, "legs must be a list of {instrument, ratio, action}")
        if not 2 <= len(value) <= MAX_LEGS:
            _fail(RejectReason.INVALID_LEGS, f"a combo has 2..{MAX_LEGS} legs, not {len(value)}")
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: Any, info: ValidationInfo) -> dict[str, Any] | None:
        if value is None:
            return None
        if isinstance(value, str):
            # A flat stream entry (`XADD ... params '{"trail_percent": "1.5"}'`) can only hold
            # text: the object arrives as its JSON.
            try:
                value = json.loads(value)
            except ValueError:
                _fail(RejectReason.INVALID_PARAMS, "params is text that is not a JSON object")
        if not isinstance(value, Mapping):
            _fail(RejectReason.INVALID_PARAMS, "params must be a JSON object")
        strategy = info.data.get("strategy")
        if not isinstance(strategy, str):
            return None  # the strategy's own error is reported instead
        try:
            parsed = parse_params(strategy, value)
        except ParamsError as e:
            _fail_at(RejectReason(e.code), str(e), e.field)
        return parsed.model_dump(mode="json", exclude_defaults=True) or None

    @model_validator(mode="before")
    @classmethod
    def _strategy_defaults(cls, data: Any) -> Any:
        """Fill what the intent left to its strategy, so the stored payload is explicit."""
        if not isinstance(data, dict):
            return data
        name = data.get("strategy")
        spec = STRATEGIES.get(name) if isinstance(name, str) else None
        if spec is None:
            return data
        filled = dict(data)
        if filled.get("expiry_policy") is None:
            filled["expiry_policy"] = spec.default_expiry_policy
        if filled.get("max_slippage_bps") is None:
            filled["max_slippage_bps"] = spec.default_max_slippage_bps
        return filled

    @model_validator(mode="after")
    def _consistent(self) -> Intent:
        if self.time_in_force is TimeInForce.GTD and self.good_till is None:
            _fail(RejectReason.GTD_WITHOUT_DATE, "time_in_force GTD needs good_till")
        if self.time_in_force is not TimeInForce.GTD and self.good_till is not None:
            _fail(
                RejectReason.GOOD_TILL_NOT_ALLOWED,
                f"good_till is only allowed with GTD, not {self.time_in_force.value}",
            )
        if self.legs is not None:
            if self.strategy != "Spread_Roll":
                _fail_at(
                    RejectReason.INVALID_LEGS, f"{self.strategy} does not trade combos", "legs"
                )
            texts = [leg.instrument.text for leg in self.legs]
            if len(set(texts)) != len(texts):
                _fail_at(RejectReason.INVALID_LEGS, "a combo names each instrument once", "legs")
        if (
            self.expiry_policy is ExpiryPolicy.HOLD_TO_EXPIRY
            and self.instrument.kind is InstrumentKind.STOCK
        ):
            _fail(
                RejectReason.EXPIRY_POLICY_NOT_APPLICABLE,
                "hold_to_expiry applies to options only",
            )
        return self

    @property
    def contract(self) -> Contract:
        return self.instrument

    @property
    def wire_action(self) -> WireSide:
        return self.side.wire_action

    @property
    def strategy_params(self) -> StrategyParams:
        """The params as the strategy's model (its defaults when the intent gave none)."""
        return parse_params(self.strategy, self.params)

    def to_payload(self) -> dict[str, Any]:
        """The normalized intent as JSON-safe data (Decimals and times as strings)."""
        return self.model_dump(mode="json")


@dataclass(frozen=True, slots=True)
class IntakeContext:
    """What the checks may know besides the intent; time is a parameter, never read here."""

    today: date


Check = Callable[[Intent, IntakeContext], Reject | None]


def check_option_not_expired(intent: Intent, context: IntakeContext) -> Reject | None:
    """Refuse an option whose expiry date has passed (expiring today is fine: 0DTE)."""
    contract = intent.instrument
    if contract.kind is InstrumentKind.OPTION and contract.expiry < context.today:  # type: ignore[union-attr]
        return Reject(
            RejectReason.OPTION_EXPIRED,
            f"{contract.text} expired on {contract.expiry.isoformat()}",  # type: ignore[union-attr]
            intent.signal_id,
            "instrument",
        )
    return None


def check_good_till_not_past(intent: Intent, context: IntakeContext) -> Reject | None:
    """Refuse a GTD intent whose good_till date is before today (UTC)."""
    if intent.good_till is not None and intent.good_till.date() < context.today:
        return Reject(
            RejectReason.GOOD_TILL_IN_PAST,
            f"good_till {intent.good_till.isoformat()} is before {context.today.isoformat()}",
            intent.signal_id,
            "good_till",
        )
    return None


def check_strategy_trades_instrument(intent: Intent, context: IntakeContext) -> Reject | None:
    """Refuse an instrument kind the strategy's playbook cannot trade."""
    spec = STRATEGIES[intent.strategy]
    if intent.instrument.kind not in spec.instrument_kinds:
        kinds = ", ".join(sorted(k.value for k in spec.instrument_kinds))
        return Reject(
            RejectReason.STRATEGY_INSTRUMENT_MISMATCH,
            f"{intent.strategy} trades {kinds}, not {intent.instrument.kind.value}",
            intent.signal_id,
            "instrument",
        )
    return None


# The contract-cache (UNKNOWN_CONTRACT) and risk-headroom (RISK_LIMIT) checks are appended by the
# task layer, which owns the lookups: `validate_intent(p, today=d, checks=(*DEFAULT_CHECKS, c))`.
DEFAULT_CHECKS: tuple[Check, ...] = (
    check_option_not_expired,
    check_good_till_not_past,
    check_strategy_trades_instrument,
)


def checks_on_session_day(day: date) -> tuple[Check, ...]:
    """DEFAULT_CHECKS with option expiry judged on the session's trading day `day`: on a
    venue's clock (an accelerated simulator session) a 0DTE contract of the session it trades
    is live even when the wall clock's date has moved on."""

    def not_expired(intent: Intent, _context: IntakeContext) -> Reject | None:
        return check_option_not_expired(intent, IntakeContext(today=day))

    return tuple(not_expired if c is check_option_not_expired else c for c in DEFAULT_CHECKS)


def _parse_constant(name: str) -> Decimal:
    # JSON has no NaN/Infinity; Python's parser accepts them, so keep them visible as non-finite.
    return Decimal(name)


def parse_payload(payload: object) -> object | Reject:
    """Decode a JSON text (str or bytes) into Python data; other values pass through unchanged.

    Numbers decode to `Decimal` so no money ever passes through a binary float.
    """
    if isinstance(payload, bytes | bytearray):
        if len(payload) > MAX_PAYLOAD_CHARS * 4:
            return Reject(RejectReason.PAYLOAD_TOO_LARGE, "payload larger than 256 KiB")
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as e:
            return Reject(RejectReason.MALFORMED_JSON, f"payload is not UTF-8: {e.reason}")
    if not isinstance(payload, str):
        return payload
    if len(payload) > MAX_PAYLOAD_CHARS:
        return Reject(
            RejectReason.PAYLOAD_TOO_LARGE, f"payload longer than {MAX_PAYLOAD_CHARS} characters"
        )
    try:
        decoded: object = json.loads(
            payload, parse_float=Decimal, parse_int=Decimal, parse_constant=_parse_constant
        )
    except (ValueError, RecursionError) as e:
        return Reject(RejectReason.MALFORMED_JSON, f"payload is not valid JSON: {_short(e, 120)}")
    return decoded


def signal_id_of(data: object) -> str:
    """The payload's signal_id when it is a usable one, else "" (rejects name it when they can)."""
    if isinstance(data, Mapping):
        value = data.get("signal_id")
        if isinstance(value, str) and SIGNAL_ID_PATTERN.fullmatch(value) is not None:
            return value
    return ""


def _reject_from(error: ValidationError, signal_id: str) -> Reject:
    first = error.errors(include_url=False)[0]
    kind = first["type"]
    loc = first["loc"]
    field = str(loc[0]) if loc else None
    if kind.startswith("epm."):
        named = (first.get("ctx") or {}).get("field")
        return Reject(RejectReason(kind[4:]), str(first["msg"]), signal_id, named or field)
    if kind == "missing":
        return Reject(
            RejectReason.MISSING_FIELD, f"missing required field {field!r}", signal_id, field
        )
    if kind == "extra_forbidden":
        if len(loc) > 1:  # inside a leg: name the path (`legs.0.extra`)
            path = ".".join(str(part) for part in loc)
            return Reject(RejectReason.UNKNOWN_FIELD, f"unknown field {path!r}", signal_id, path)
        name = _short(loc[0]) if loc else "?"
        return Reject(RejectReason.UNKNOWN_FIELD, f"unknown field {name}", signal_id, field)
    return Reject(RejectReason.INVALID_VALUE, str(first["msg"]), signal_id, field)


def validate_intent(
    payload: object, *, today: date, checks: Sequence[Check] = DEFAULT_CHECKS
) -> Intent | Reject:
    """Admit `payload` as an `Intent` or say why not; never raises.

    `payload` may be a mapping or JSON text. `today` (UTC) decides expiry; `checks` run in order
    after the model and the first reject wins, so the code reported is deterministic.
    """
    data = parse_payload(payload)
    if isinstance(data, Reject):
        return data
    if not isinstance(data, Mapping):
        return Reject(
            RejectReason.NOT_AN_OBJECT, f"an intent is a JSON object, not {type(data).__name__}"
        )
    signal_id = signal_id_of(data)
    for key in data:
        if not isinstance(key, str):
            return Reject(RejectReason.UNKNOWN_FIELD, f"unknown field {_short(key)}", signal_id)
    try:
        intent = Intent.model_validate(dict(data))
    except ValidationError as e:
        return _reject_from(e, signal_id)
    context = IntakeContext(today=today)
    for check in checks:
        reject = check(intent, context)
        if reject is not None:
            return reject
    return intent
