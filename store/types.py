"""Column types that keep money exact and timestamps aware on both PostgreSQL and SQLite.

`Money` is unbounded `NUMERIC` on PostgreSQL (exact, keeps the scale it was given) and `TEXT` on
SQLite, whose NUMERIC affinity would store a REAL and so round-trip through a float. Both
dialects therefore give back exactly the `Decimal` that went in (`Decimal("1.50")` stays
`1.50`), which is what replay determinism across the two dialects needs. The price of TEXT on
SQLite: money must not be summed or compared in SQL there; epm does that arithmetic in Python.

`UtcDateTime` accepts only aware datetimes and always returns aware UTC. On SQLite it is stored
as fixed-width UTC text (`YYYY-MM-DD HH:MM:SS.ffffff`), so comparing two stored values (or a
stored value with a bound parameter, which takes the same path) orders them by time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class MoneyValueError(ValueError):
    """A value bound to a `Money` column is not an exact finite decimal (float, NaN, garbage)."""


class NaiveDatetimeError(ValueError):
    """A naive datetime was bound to a `UtcDateTime` column; epm never guesses a time zone."""


def to_decimal(value: object) -> Decimal:
    """Convert `value` to a finite Decimal without ever passing through a float.

    Raises
    ------
    MoneyValueError
        For floats (already inexact), bools, NaN/infinity and strings that are not numbers.
    """
    if isinstance(value, bool | float):
        raise MoneyValueError(f"money must be Decimal, int or str, not {type(value).__name__}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as e:
            raise MoneyValueError(f"not a decimal number: {value!r}") from e
    else:
        raise MoneyValueError(f"money must be Decimal, int or str, not {type(value).__name__}")
    if not result.is_finite():
        raise MoneyValueError(f"money must be finite, got {value!r}")
    return result


class Money(TypeDecorator[Decimal]):
    """Exact decimal column: NUMERIC on PostgreSQL, TEXT on SQLite; always returns `Decimal`."""

    impl = sa.Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.Numeric(asdecimal=True))

    def process_bind_param(self, value: object, dialect: Dialect) -> Any:
        if value is None:
            return None
        number = to_decimal(value)
        if dialect.name == "sqlite":
            # Plain notation: "1E+2" would be exact too, but humans read these files.
            return format(number, "f")
        return number

    def process_result_value(self, value: object, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        # SQLite: our own TEXT; a value written by hand as a number comes back as int/str.
        return to_decimal(value if isinstance(value, int) else str(value))

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal


class UtcDateTime(TypeDecorator[datetime]):
    """Aware-UTC timestamp: naive values are rejected on the way in, UTC comes back out."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: object, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise NaiveDatetimeError(f"expected an aware datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveDatetimeError(f"naive datetime {value.isoformat()} has no time zone")
        utc = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite's DateTime stores text and would drop the offset; store UTC wall time.
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: object, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise NaiveDatetimeError(f"stored timestamp is not a datetime: {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @property
    def python_type(self) -> type[datetime]:
        return datetime
