"""Market events a replay steps through, read from rows of user data (CSV or Parquet).

Three shapes, told apart by their columns (`kind_of`):
- quotes: `ts, symbol, bid, ask` (optional `bid_size, ask_size, last, volume`);
- trades: `ts, symbol, price` (optional `size`): the touch is taken to be the trade price;
- bars: `ts, symbol, open, high, low, close` (optional `volume`): the bar is a quote at its
  close and a range `[low, high]` that resting limits inside it fill at.

`ts` is ISO-8601 with an offset (naive times are refused, as at intake); prices are read as
exact decimals from their text (a float in a Parquet file is refused, not rounded). A bad row
raises `DataError` naming its row number and column, never a traceback deeper down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum


class DataError(ValueError):
    """A row of market data that cannot be replayed, with where it is."""


class Kind(StrEnum):
    QUOTE = "quote"
    TRADE = "trade"
    BAR = "bar"


@dataclass(frozen=True, slots=True)
class MarketEvent:
    """One instrument's market at one instant, as the replay venue and the snapshot see it.

    `volume` is what traded in this event (a trade's size, a bar's volume, a quote row's
    `volume`), used for the 5 s bars the TWAP participation cap reads; `low`/`high` the range a
    bar traded through."""

    ts: datetime
    symbol: str
    kind: Kind
    bid: Decimal | None
    ask: Decimal | None
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None
    last: Decimal | None = None
    volume: Decimal | None = None
    low: Decimal | None = None
    high: Decimal | None = None
    halted: bool = False


_REQUIRED = {
    Kind.QUOTE: ("ts", "symbol", "bid", "ask"),
    Kind.BAR: ("ts", "symbol", "open", "high", "low", "close"),
    Kind.TRADE: ("ts", "symbol", "price"),
}


def kind_of(columns: Iterable[str]) -> Kind:
    """Which shape a file of these columns is (quotes first, then bars, then trades)."""
    have = set(columns)
    for kind in (Kind.QUOTE, Kind.BAR, Kind.TRADE):
        if set(_REQUIRED[kind]) <= have:
            return kind
    raise DataError(
        "market data needs the columns ts, symbol and either bid, ask (quotes), "
        f"open, high, low, close (bars) or price (trades); found {sorted(have)}"
    )


def _decimal(row: Mapping[str, object], name: str, line: int, *, required: bool) -> Decimal | None:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise DataError(f"row {line}: {name} is empty")
        return None
    if isinstance(value, float | bool):
        raise DataError(f"row {line}: {name} is a float ({value!r}); give prices as decimal text")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise DataError(f"row {line}: {name} is not a number: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise DataError(f"row {line}: {name} must be a finite non-negative number: {value!r}")
    return number


def _time(value: object, line: int) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise DataError(f"row {line}: ts is not an ISO-8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise DataError(f"row {line}: ts {value!r} has no UTC offset")
    return moment.astimezone(UTC)


def event_from_row(row: Mapping[str, object], kind: Kind, line: int) -> MarketEvent:
    """One row as a market event (`line` is the row's number in its file, for the error)."""
    ts = _time(row.get("ts"), line)
    symbol = str(row.get("symbol") or "").strip().upper()
    if not symbol:
        raise DataError(f"row {line}: symbol is empty")
    halted = str(row.get("halted") or "").strip().lower() in ("1", "true", "yes")
    if kind is Kind.QUOTE:
        bid = _decimal(row, "bid", line, required=True)
        ask = _decimal(row, "ask", line, required=True)
        if bid is not None and ask is not None and ask < bid:
            raise DataError(f"row {line}: ask {ask} is below bid {bid}")
        return MarketEvent(
            ts,
            symbol,
            kind,
            bid,
            ask,
            bid_size=_decimal(row, "bid_size", line, required=False),
            ask_size=_decimal(row, "ask_size", line, required=False),
            last=_decimal(row, "last", line, required=False),
            volume=_decimal(row, "volume", line, required=False),
            halted=halted,
        )
    if kind is Kind.TRADE:
        price = _decimal(row, "price", line, required=True)
        return MarketEvent(
            ts,
            symbol,
            kind,
            price,
            price,
            last=price,
            volume=_decimal(row, "size", line, required=False),
            halted=halted,
        )
    close = _decimal(row, "close", line, required=True)
    low = _decimal(row, "low", line, required=True)
    high = _decimal(row, "high", line, required=True)
    assert low is not None and high is not None
    if low > high:
        raise DataError(f"row {line}: low {low} is above high {high}")
    return MarketEvent(
        ts,
        symbol,
        kind,
        close,
        close,
        last=close,
        volume=_decimal(row, "volume", line, required=False),
        low=low,
        high=high,
        halted=halted,
    )


def in_time_order(events: Iterable[MarketEvent]) -> list[MarketEvent]:
    """Events by time, then symbol (stable: rows of one instant keep their file order)."""
    return sorted(events, key=lambda e: (e.ts, e.symbol))
