"""Pure IB ↔ epm normalizers: numbers, unset sentinels, IB time strings, status tables.

Everything IB hands the wrapper passes through here before it leaves the bridge: ibapi floats (9.81)
and Decimals (10.x) become `Decimal` built from `str`, IB's "unset" sentinels become `None`, and
IB's several time spellings become tz-aware UTC. No I/O and no clock reads: the receive time is
always a parameter.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# IB's "no value" markers (TWS_PROTOCOL_NOTES: ints 2**31-1, longs 2**63-1, the largest double;
# 10.x clients add 2**127-1 as the unset Decimal).
UNSET_INTEGER = 2**31 - 1
UNSET_LONG = 2**63 - 1
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_DECIMAL = Decimal(2**127 - 1)
# The largest double as IB writes it on the wire (a string field parsed here).
_UNSET_DOUBLE_TEXT = Decimal("1.7976931348623157E308")
_UNSET_INTS = frozenset({UNSET_INTEGER, UNSET_LONG, -1 * UNSET_INTEGER - 1})

# TWS reports times in the zone its user configured; execDetails often come without a zone.
DEFAULT_IB_TZ = "America/New_York"

# IB's legacy zone spellings seen in time strings, mapped to IANA names.
_ZONE_ALIASES = {
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "ET": "America/New_York",
    "US/Eastern": "America/New_York",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "US/Central": "America/Chicago",
    "GMT": "UTC",
    "UTC": "UTC",
    "Z": "UTC",
}

# IB order status strings → epm's status vocabulary (the ledger FSM maps these to its states).
IB_STATUS_TO_ORDER_STATUS: dict[str, str] = {
    "ApiPending": "PENDING_SUBMIT",
    "PendingSubmit": "PENDING_SUBMIT",
    "PreSubmitted": "ACCEPTED",
    "Submitted": "ACCEPTED",
    "ApiCancelled": "CANCELED",
    "Cancelled": "CANCELED",
    "PendingCancel": "PENDING_CANCEL",
    "Filled": "FILLED",
    "Inactive": "REJECTED",
}

# Execution side as IB spells it in execDetails ("BOT"/"SLD") → order action.
IB_EXEC_SIDE_TO_ACTION: dict[str, str] = {"BOT": "BUY", "SLD": "SELL", "BUY": "BUY", "SELL": "SELL"}

_TIME_RE = re.compile(
    r"^(?P<d>\d{8})(?:[ -]+(?P<t>\d{1,2}:\d{2}(?::\d{2})?)(?:\.(?P<f>\d{1,6}))?)?"
    r"(?:\s+(?P<z>[A-Za-z_/+\-0-9]+))?$"
)


class TranslationError(ValueError):
    """A value from IB that cannot be normalized; carries a stable reason code."""

    def __init__(self, reason: str, value: object) -> None:
        super().__init__(f"{reason}: {value!r}")
        self.reason = reason
        self.value = value


def to_decimal(value: object) -> Decimal | None:
    """Return `value` as an exact Decimal, or None when IB means "unset".

    ibapi 9.81 hands floats; `Decimal(str(x))` keeps the decimal IB sent (`Decimal(x)` would
    expose the binary expansion). 10.x hands Decimal sizes, with 2**127-1 as unset.

    Raises
    ------
    TranslationError
        When the value is not a number at all.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        if value.is_nan() or value.is_infinite() or value == UNSET_DECIMAL:
            return None
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or value >= UNSET_DOUBLE:
            return None
        return Decimal(str(value))
    if isinstance(value, int):
        if value in _UNSET_INTS:
            return None
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        try:
            parsed = Decimal(text)
        except InvalidOperation as e:
            raise TranslationError("INVALID_NUMBER", value) from e
        if parsed.is_nan() or parsed.is_infinite():
            return None
        if parsed >= _UNSET_DOUBLE_TEXT or parsed == UNSET_DECIMAL:
            return None
        if parsed == parsed.to_integral_value() and int(parsed) in _UNSET_INTS:
            return None
        return parsed
    raise TranslationError("INVALID_NUMBER", value)


def to_int(value: object) -> int | None:
    """Return `value` as an int, or None for IB's unset integer/long markers and empty strings."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if value in _UNSET_INTS else value
    if isinstance(value, float | Decimal):
        if isinstance(value, float) and (math.isnan(value) or value >= UNSET_DOUBLE):
            return None
        if value != int(value):
            raise TranslationError("NOT_AN_INTEGER", value)
        return to_int(int(value))
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        try:
            return to_int(int(text))
        except ValueError as e:
            raise TranslationError("NOT_AN_INTEGER", value) from e
    raise TranslationError("NOT_AN_INTEGER", value)


def to_str(value: object) -> str | None:
    """Empty strings are IB's "no value" for text fields."""
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def decimal_str(value: Decimal | None) -> str | None:
    """Decimal → JSON string (the task payload convention), keeping None."""
    return None if value is None else str(value)


def _zone(name: str | None, default_tz: str) -> ZoneInfo:
    key = _ZONE_ALIASES.get(name or "", name or default_tz)
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise TranslationError("UNKNOWN_TIME_ZONE", name) from e


def parse_ib_time(value: object, default_tz: str = DEFAULT_IB_TZ) -> datetime | None:
    """Parse one of IB's time spellings into an aware UTC datetime.

    Accepted: epoch seconds (int or digits, e.g. currentTime, realtimeBar) or milliseconds
    (10.x errorTime), "20261126 09:30:01
    US/Eastern" (zone named), "20261126  09:30:01" (execDetails without a zone: TWS local time,
    `default_tz`), "20261126-14:30:01" (the dash form is UTC by IB's convention), and "20261126"
    (a date: midnight in `default_tz`). Empty → None.

    Raises
    ------
    TranslationError
        For anything else, with reason INVALID_TIMESTAMP or UNKNOWN_TIME_ZONE.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TranslationError("NAIVE_DATETIME", value)
        return value.astimezone(UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return _from_epoch(value)
    text = str(value).strip()
    if text == "":
        return None
    if text.isdigit() and len(text) != 8:
        return _from_epoch(int(text))
    match = _TIME_RE.match(text)
    if match is None:
        raise TranslationError("INVALID_TIMESTAMP", value)
    day, clock, frac, zone_name = match["d"], match["t"], match["f"], match["z"]
    try:
        base = datetime.strptime(day, "%Y%m%d")
        if clock is not None:
            parts = [int(p) for p in clock.split(":")]
            while len(parts) < 3:
                parts.append(0)
            micro = int((frac or "0").ljust(6, "0"))
            base = base.replace(hour=parts[0], minute=parts[1], second=parts[2], microsecond=micro)
    except ValueError as e:
        raise TranslationError("INVALID_TIMESTAMP", value) from e
    if zone_name is not None:
        tz = _zone(zone_name, default_tz)
    elif clock is not None and "-" in text[8:9]:
        tz = ZoneInfo("UTC")
    else:
        tz = _zone(None, default_tz)
    return base.replace(tzinfo=tz).astimezone(UTC)


def _from_epoch(value: int) -> datetime:
    # 10.x's errorTime is epoch milliseconds; seconds stay below 1e11 until the year 5138.
    if value >= 100_000_000_000:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return datetime.fromtimestamp(value, tz=UTC)


def iso_utc(value: datetime | None) -> str | None:
    """Aware datetime → ISO-8601 UTC string (the task payload convention)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise TranslationError("NAIVE_DATETIME", value)
    return value.astimezone(UTC).isoformat()


def ib_filter_time(since: datetime) -> str:
    """The ExecutionFilter.time spelling for `since`, in UTC ("yyyymmdd-hh:mm:ss")."""
    return since.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S")


def order_status(ib_status: str) -> str | None:
    """IB status string → epm status name; None for a status IB added that we do not know."""
    return IB_STATUS_TO_ORDER_STATUS.get(ib_status)


def exec_action(side: str) -> str | None:
    """execDetails side ("BOT"/"SLD") → order action ("BUY"/"SELL")."""
    return IB_EXEC_SIDE_TO_ACTION.get(side.upper()) if side else None


def parse_trading_hours(
    spec: str, time_zone_id: str, default_tz: str = DEFAULT_IB_TZ
) -> list[tuple[datetime, datetime]]:
    """Parse contractDetails.tradingHours/liquidHours into UTC sessions.

    IB spells a day as "20261126:0930-20261126:1600" (ranges separated by ';', a day without trading
    as "20261127:CLOSED"); older gateways use "20261126:0930-1600". Closed days are skipped.
    """
    tz = _zone(time_zone_id or None, default_tz)
    sessions: list[tuple[datetime, datetime]] = []
    for chunk in spec.split(";"):
        chunk = chunk.strip()
        if not chunk or chunk.endswith("CLOSED"):
            continue
        for piece in chunk.split(","):
            try:
                start_s, end_s = piece.split("-")
                start_day, start_hm = start_s.split(":")
                if ":" in end_s:
                    end_day, end_hm = end_s.split(":")
                else:
                    end_day, end_hm = start_day, end_s
                start = datetime.strptime(start_day + start_hm, "%Y%m%d%H%M").replace(tzinfo=tz)
                end = datetime.strptime(end_day + end_hm, "%Y%m%d%H%M").replace(tzinfo=tz)
            except ValueError as e:
                raise TranslationError("INVALID_TRADING_HOURS", piece) from e
            sessions.append((start.astimezone(UTC), end.astimezone(UTC)))
    return sessions


_OCC_RE = re.compile(r"^(?P<root>[A-Z0-9.]{1,6})\s*(?P<ymd>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")


def occ_symbol(symbol: str, expiry: str, right: str, strike: Decimal) -> str:
    """The 21-character OCC symbol (root padded to 6) for an option contract.

    `expiry` is IB's lastTradeDateOrContractMonth ("20261127"); strike × 1000 fills 8 digits.
    """
    right_letter = right[:1].upper()
    if right_letter not in ("C", "P") or len(expiry) < 8:
        raise TranslationError("INVALID_OPTION_FIELDS", (symbol, expiry, right, strike))
    day = date(int(expiry[0:4]), int(expiry[4:6]), int(expiry[6:8]))
    milli = int((strike * 1000).to_integral_value())
    return f"{symbol.upper():<6}{day:%y%m%d}{right_letter}{milli:08d}"


def normalize_occ(text: str) -> str:
    """Either OCC spelling (21 characters or compact) → the 21-character form."""
    match = _OCC_RE.match(text.strip().upper())
    if match is None:
        raise TranslationError("MALFORMED_OCC_SYMBOL", text)
    return f"{match['root']:<6}{match['ymd']}{match['right']}{match['strike']}"


def seconds_between(later: datetime, earlier: datetime) -> Decimal:
    """Exact elapsed seconds as Decimal (latency and staleness fields)."""
    delta: timedelta = later - earlier
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 1_000_000
