"""What a planner may know of the market: one instrument's snapshot, with its age.

The bridge publishes top of book, the latest completed 5 s bar, greeks and the halt state to the
Redis hash `md:{conid}` as strings, stamped `ts` (the staleness stamp). `MarketSnapshot.from_fields`
reads that hash's fields; it is pure (the caller fetched them), so the same recorded hash always
gives the same snapshot. A snapshot older than a planner's limit holds the plan: it never prices
an order (issue 11, item 6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

ZERO = Decimal(0)
BPS = Decimal(10_000)
CENT = Decimal("0.01")


def _decimal(value: str | None) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _positive(value: str | None) -> Decimal | None:
    number = _decimal(value)
    return number if number is not None and number > 0 else None


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """One instrument's market as last published; prices None when the venue shows none.

    `bar_volume` is the volume of the latest completed 5 s bar (IB's real-time bars): the
    participation cap of a TWAP slice applies against it (NOTES).
    """

    con_id: int
    as_of: datetime
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None
    halted: bool = False
    bar_volume: Decimal | None = None
    bar_time: datetime | None = None
    delta: Decimal | None = None
    gamma: Decimal | None = None
    min_tick: Decimal = CENT

    @classmethod
    def from_fields(
        cls, con_id: int, fields: Mapping[str, str], min_tick: Decimal = CENT
    ) -> MarketSnapshot | None:
        """The snapshot a `md:{conid}` hash holds; None when it has no usable time stamp."""
        as_of = _time(fields.get("ts"))
        if as_of is None:
            return None
        return cls(
            con_id=con_id,
            as_of=as_of,
            bid=_positive(fields.get("bid")),
            ask=_positive(fields.get("ask")),
            last=_positive(fields.get("last")),
            bid_size=_decimal(fields.get("bid_size")),
            ask_size=_decimal(fields.get("ask_size")),
            halted=fields.get("halted", "0") not in ("", "0"),
            bar_volume=_decimal(fields.get("bar_volume")),
            bar_time=_time(fields.get("bar_time")),
            delta=_decimal(fields.get("model_delta")),
            gamma=_decimal(fields.get("model_gamma")),
            min_tick=min_tick,
        )

    @property
    def two_sided(self) -> bool:
        return self.mid is not None

    @property
    def mid(self) -> Decimal | None:
        bid, ask = self.bid, self.ask
        if bid is None or ask is None or ask < bid:
            return None
        return (bid + ask) / 2

    @property
    def spread_bps(self) -> Decimal | None:
        mid = self.mid
        if mid is None or mid == 0 or self.bid is None or self.ask is None:
            return None
        return (self.ask - self.bid) / mid * BPS

    def touch(self, buy: bool) -> Decimal | None:
        """The price a marketable order meets: the ask for a buy, the bid for a sell."""
        return self.ask if buy else self.bid

    def passive(self, buy: bool) -> Decimal | None:
        """The near side: the bid for a buy, the ask for a sell."""
        return self.bid if buy else self.ask

    def age(self, now: datetime) -> timedelta:
        return now - self.as_of

    def stale(self, now: datetime, max_age: timedelta) -> bool:
        return self.age(now) > max_age


def round_to_tick(price: Decimal, tick: Decimal, buy: bool, *, aggressive: bool) -> Decimal:
    """`price` on the tick grid: an aggressive price rounds toward crossing (up for a buy), a
    passive one away from it, so rounding never makes an order more aggressive than meant
    unless asked to."""
    steps = price / tick
    up = steps.to_integral_value(rounding="ROUND_CEILING")
    down = steps.to_integral_value(rounding="ROUND_FLOOR")
    toward_cross = up if buy else down
    away = down if buy else up
    return (toward_cross if aggressive else away) * tick


def slippage_bps(price: Decimal, reference: Decimal, buy: bool) -> Decimal:
    """How much worse than `reference` a fill at `price` is, in basis points (negative: better)."""
    if reference == 0:
        return ZERO
    worse = price - reference if buy else reference - price
    return worse / reference * BPS


def band_limit(reference: Decimal, max_slippage_bps: Decimal, buy: bool) -> Decimal:
    """The most aggressive price within `max_slippage_bps` of `reference`."""
    shift = reference * max_slippage_bps / BPS
    return reference + shift if buy else reference - shift
