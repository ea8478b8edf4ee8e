"""Field-level conversions between wire strings and values.

IB's fields are strings. Prices and sizes stay `Decimal` on our side (never float); on the wire they
are plain decimal strings without exponent. IB's "unset" sentinels are 2**31 - 1 for ints,
2**63 - 1 for longs and the largest double for doubles; clients send them either literally or as
empty fields, so both spellings decode to the sentinel.
"""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation
from typing import Final

UNSET_INTEGER: Final = 2**31 - 1
UNSET_LONG: Final = 2**63 - 1
UNSET_DOUBLE: Final = sys.float_info.max
#: how Java's Double.toString spells the largest double; what TWS puts on the wire for an unset
#: double that the client decodes without an "unset" rule (Python's float() reads it back exactly).
UNSET_DOUBLE_STR: Final = "1.7976931348623157E308"
INFINITY_STR: Final = "Infinite"

_DEC_UNSET_THRESHOLD: Final = Decimal("1E308")
_INF = Decimal("Infinity")


class FieldError(ValueError):
    """A field that cannot be read as the type the protocol puts there."""


def fmt_dec(d: Decimal) -> str:
    """A Decimal as a plain string without exponent ("1E+2" → "100", "1E-7" → "0.0000001")."""
    s = str(d)
    if "E" in s:
        if not d.is_finite():
            return INFINITY_STR if d > 0 else "-" + INFINITY_STR
        s = format(d, "f")
    return s


def fmt_size(d: Decimal) -> str:
    """A size/quantity: integral values without fraction ("100", not "100.0").

    ibapi 9.81 decodes many sizes with `int()`, so an integral size must not carry a fraction.
    """
    if d == d.to_integral_value():
        return str(int(d))
    return fmt_dec(d)


def fmt_int_size(d: Decimal) -> str:
    """A size for a field that pre-fractional clients decode as int (truncates a fraction)."""
    return str(int(d))


def fmt_float(v: float) -> str:
    """A float (greeks, model values): repr, with IB's unset spelled the Java way."""
    if v == UNSET_DOUBLE:
        return UNSET_DOUBLE_STR
    if v == float("inf"):
        return INFINITY_STR
    return repr(float(v))


def fmt_bool(b: bool) -> str:
    return "1" if b else "0"


def fmt_any(v: object) -> str:
    """Generic field formatting for values held in ibapi `Order`/`Contract` containers."""
    if v is None:
        return ""
    if v is True:
        return "1"
    if v is False:
        return "0"
    if isinstance(v, Decimal):
        return fmt_dec(v)
    if isinstance(v, float):
        return fmt_float(v)
    return str(v)


def parse_int(s: str, default: int = 0) -> int:
    """An int field; empty → `default`. Accepts "12.0" (some clients format ints as floats)."""
    if s == "":
        return default
    try:
        return int(s)
    except ValueError:
        try:
            d = Decimal(s)
        except InvalidOperation as e:
            raise FieldError(f"not an integer: {s[:40]!r}") from e
        if not d.is_finite() or d != d.to_integral_value():
            raise FieldError(f"not an integer: {s[:40]!r}") from None
        return int(d)


def parse_bool(s: str, default: bool = False) -> bool:
    """A boolean field: "1"/"0" (also "true"/"false", which some clients send)."""
    if s == "":
        return default
    if s in ("1", "0"):
        return s == "1"
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    return parse_int(s) != 0


def parse_dec(s: str) -> Decimal | None:
    """A double field as Decimal; empty or IB's unset max-double → None."""
    if s == "":
        return None
    try:
        d = Decimal(s)
    except InvalidOperation as e:
        if s in (INFINITY_STR, "inf", "Infinity"):
            return _INF
        raise FieldError(f"not a number: {s[:40]!r}") from e
    if d.is_nan():
        raise FieldError("NaN is not a price")
    if d.is_finite() and abs(d) >= _DEC_UNSET_THRESHOLD:
        return None
    return d
