"""Pure IB ↔ epm normalizers: numbers, unset sentinels, IB time strings, status tables.

Everything IB hands the wrapper passes through here before it leaves the bridge: ibapi floats (9.81)
and Decimals (10.x) become `Decimal` built from `str`, IB's "unset" sentinels become `None`, and
IB's several time spellings become tz-aware UTC. No I/O and no clock reads: the receive time is
always a parameter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.fills import IB_SIDES

# IB's "no value" markers (TWS_PROTOCOL_NOTES: ints 2**31-1, longs 2**63-1, the largest double;
# 10.x clients add 2**127-1 as the unset Decimal).
UNSET_INTEGER = 2**31 - 1
UNSET_LONG = 2**63 - 1
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_DECIMAL = Decimal(2**127 - 1)
# The largest double as IB writes it on the wire (a string field parsed here).
_UNSET_DOUBLE_TEXT = Decimal("1.7976931348623157E308")
_UNSET_INTS = frozenset({UNSET_INTEGER, UNSET_LONG, -1 * UNSET_INTEGER - 1})

# The zone of contract trading hours when contractDetails names none (US listings). Execution
# times never default to it: TWS writes them in its login zone, which the handshake names
# (`parse_connection_time_zone`).
DEFAULT_IB_TZ = "America/New_York"

# IB's and Java's zone spellings (TWS is a Java program: its handshake and time strings use Java's
# short or long zone names, or IANA ids), upper-cased, mapped to IANA names. Abbreviations stand for
# the DST-observing zone IB's users mean (EST in a winter handshake still means New York in July);
# the ambiguous "CST" is taken as US Central, as IB's own "US/Central" login zone spells it.
_ZONE_ALIASES = {
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "ET": "America/New_York",
    "US/EASTERN": "America/New_York",
    "EASTERN STANDARD TIME": "America/New_York",
    "EASTERN DAYLIGHT TIME": "America/New_York",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "US/CENTRAL": "America/Chicago",
    "CENTRAL STANDARD TIME": "America/Chicago",
    "CENTRAL DAYLIGHT TIME": "America/Chicago",
    "MST": "America/Denver",
    "MDT": "America/Denver",
    "US/MOUNTAIN": "America/Denver",
    "MOUNTAIN STANDARD TIME": "America/Denver",
    "MOUNTAIN DAYLIGHT TIME": "America/Denver",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "US/PACIFIC": "America/Los_Angeles",
    "PACIFIC STANDARD TIME": "America/Los_Angeles",
    "PACIFIC DAYLIGHT TIME": "America/Los_Angeles",
    "GMT": "UTC",
    "UTC": "UTC",
    "UT": "UTC",
    "Z": "UTC",
    "GREENWICH MEAN TIME": "UTC",
    "COORDINATED UNIVERSAL TIME": "UTC",
    "BST": "Europe/London",
    "BRITISH SUMMER TIME": "Europe/London",
    "CET": "Europe/Berlin",
    "CEST": "Europe/Berlin",
    "MET": "Europe/Berlin",
    "MEST": "Europe/Berlin",
    "CENTRAL EUROPEAN TIME": "Europe/Berlin",
    "CENTRAL EUROPEAN STANDARD TIME": "Europe/Berlin",
    "CENTRAL EUROPEAN SUMMER TIME": "Europe/Berlin",
    "HKT": "Asia/Hong_Kong",
    "HONG KONG TIME": "Asia/Hong_Kong",
    "HONG KONG STANDARD TIME": "Asia/Hong_Kong",
    "JST": "Asia/Tokyo",
    "JAPAN STANDARD TIME": "Asia/Tokyo",
    "CHINA STANDARD TIME": "Asia/Shanghai",
    "SGT": "Asia/Singapore",
    "SINGAPORE TIME": "Asia/Singapore",
    "SINGAPORE STANDARD TIME": "Asia/Singapore",
    "AEST": "Australia/Sydney",
    "AEDT": "Australia/Sydney",
    "AUSTRALIAN EASTERN STANDARD TIME": "Australia/Sydney",
    "AUSTRALIAN EASTERN DAYLIGHT TIME": "Australia/Sydney",
    "IST": "Asia/Kolkata",
    "INDIA STANDARD TIME": "Asia/Kolkata",
}
# Java's custom-offset spelling ("GMT+08:00"), also "UTC-5", "GMT+0530".
_OFFSET_ZONE_RE = re.compile(r"^(?:GMT|UTC)\s*(?P<sign>[+-])(?P<h>\d{1,2})(?::?(?P<m>\d{2}))?$")
# The handshake's connection time: "20261203 11:28:21 UTC" (the zone may be several words).
_CONNECTION_TIME_RE = re.compile(r"^\d{8}\s+\d{1,2}:\d{2}(?::\d{2})?\s*(?P<z>.*?)\s*$")

_TIME_RE = re.compile(r"^\d{8}\s+\d{1,2}:\d{2}(?::\d{2})?\s*(?P<z>.*?)\s*$")

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
    r"(?:\s+(?P<z>[A-Za-z_/+\-0-9:]+(?: [A-Za-z_/+\-0-9:]+)*))?$"
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


def resolve_ib_zone(name: str) -> tuple[str, tzinfo] | None:
    """An IB/Java zone spelling → (IANA name or "UTC+hh:mm", tzinfo); None when unknown."""
    text = " ".join(name.split())
    if not text:
        return None
    key = _ZONE_ALIASES.get(text.upper(), text)
    try:
        return key, ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    offset = _OFFSET_ZONE_RE.match(text.upper())
    if offset is None:
        return None
    hours, minutes = int(offset["h"]), int(offset["m"] or "0")
    if hours > 14 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    if offset["sign"] == "-":
        delta = -delta
    sign = "-" if delta < timedelta(0) else "+"
    return f"UTC{sign}{hours:02d}:{minutes:02d}", timezone(delta)


def _zone(name: str | None, default_tz: str | tzinfo | None) -> tzinfo:
    if name is None:
        if default_tz is None:
            raise TranslationError("TIME_ZONE_REQUIRED", name)
        if isinstance(default_tz, tzinfo):
            return default_tz
        name = default_tz
    resolved = resolve_ib_zone(name)
    if resolved is None:
        raise TranslationError("UNKNOWN_TIME_ZONE", name)
    return resolved[1]


@dataclass(frozen=True, slots=True)
class TwsZone:
    """The gateway's time zone (its TWS login zone), as its connection handshake named it.

    `raw` is what the handshake said after the time (None when it said nothing), `name` the IANA
    name (or "UTC+hh:mm") it maps to and `tz` the zone; both None when the spelling is unknown.
    """

    raw: str | None
    name: str | None
    tz: tzinfo | None

    @property
    def known(self) -> bool:
        return self.tz is not None


UNKNOWN_ZONE = TwsZone(raw=None, name=None, tz=None)


def parse_connection_time_zone(connection_time: object) -> TwsZone:
    """The zone of the handshake's connection time (`EClient.twsConnectionTime()`).

    IB's server answers the client's version request with its version and the connection time
    in the TWS login zone, e.g. b"20261203 11:28:21 EST" (ibapi 9.81 keeps the field as bytes),
    "20261203 06:28:21 US/Eastern" or a Java long name ("Central European Summer Time"). An
    unknown spelling or a missing zone gives an unknown `TwsZone` carrying what was said.
    """
    if connection_time is None:
        return UNKNOWN_ZONE
    if isinstance(connection_time, bytes | bytearray):
        text = bytes(connection_time).decode("utf-8", "replace").strip()
    else:
        text = str(connection_time).strip()
    match = _CONNECTION_TIME_RE.match(text)
    raw = (match["z"] if match is not None else text) or None
    if raw is None:
        return UNKNOWN_ZONE
    resolved = resolve_ib_zone(raw)
    if resolved is None:
        return TwsZone(raw=raw, name=None, tz=None)
    return TwsZone(raw=raw, name=resolved[0], tz=resolved[1])


ZoneSource = Literal["named", "session", "unknown"]


def parse_execution_time(
    value: object, zone: TwsZone | None
) -> tuple[datetime | None, ZoneSource, str | None]:
    """execDetails' time → (UTC time, where its zone came from, that zone's name).

    A time that names its zone (or the dash form, UTC by IB's convention, or epoch seconds) is
    "named". A zone-less one ("20261126  09:30:01", TWS local time) is read in the session's
    zone from the handshake ("session"); when that zone is unknown the instant is unknown:
    (None, "unknown", None), never a guess. An empty time is (None, "named", None).

    Raises
    ------
    TranslationError
        For a time that is not one of IB's spellings (or names a zone nobody knows).
    """
    text = "" if value is None else str(value).strip()
    match = _TIME_RE.match(text)
    zone_less = match is not None and match["z"] is None and "-" not in text[8:9]
    if not zone_less:
        named = match["z"] if match is not None else None
        when = parse_ib_time(value)
        if named is not None:
            resolved = resolve_ib_zone(named)
            return when, "named", resolved[0] if resolved is not None else named
        return when, "named", "UTC" if when is not None else None
    if zone is None or zone.tz is None:
        return None, "unknown", None
    return parse_ib_time(value, zone.tz), "session", zone.name


def parse_ib_time(value: object, default_tz: str | tzinfo | None = None) -> datetime | None:
    """Parse one of IB's time spellings into an aware UTC datetime.

    Accepted: epoch seconds (int or digits, e.g. currentTime, realtimeBar) or milliseconds
    (10.x errorTime), "20261126 09:30:01 US/Eastern" (zone named), "20261126-14:30:01" (the
    dash form is UTC by IB's convention), and the zone-less "20261126  09:30:01" (execDetails:
    TWS local time) and "20261126" (a date: midnight), which are read in `default_tz` and need
    it: no zone is ever assumed. Empty → None.

    Raises
    ------
    TranslationError
        For anything else, with reason INVALID_TIMESTAMP, UNKNOWN_TIME_ZONE or
        TIME_ZONE_REQUIRED (a zone-less spelling and no `default_tz`).
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
        tz = UTC
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


def exec_action(side: str) -> str | None:
    """execDetails side ("BOT"/"SLD") → order action ("BUY"/"SELL"), from the one table of it
    (`models.fills.IB_SIDES`); None for a side IB never sends."""
    found = IB_SIDES.get(side.upper()) if side else None
    return None if found is None else found.value


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
