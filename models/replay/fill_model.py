"""The replay venue's fill model: deterministic, a function of the orders and the events only.

- A marketable order (MKT, or a limit at or through the touch) fills at the touch (the ask for
  a buy, the bid for a sell), up to the displayed size when the data has sizes, else in full.
- A limit that is not marketable rests; it fills at the touch when a later quote crosses it, or
  at its own price when a bar's range `[low, high]` trades through it.
- A stop (STP) becomes a market order once the last price (else the touch) reaches it.
- IOC: what does not fill at once is cancelled. DAY/GTC rest until filled or cancelled.
- Nothing fills while the instrument is halted or one-sided.
- Order types the model does not know (trailing stops, MOC/LOC, combos) are refused at entry
  with a reason, so a replay never pretends to have filled what it cannot model.

Fills are whole units; the sizes it consumes are per event (the next quote shows fresh size).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from models.replay.events import Kind, MarketEvent

ZERO = Decimal(0)
SUPPORTED_TYPES = frozenset({"MKT", "LMT", "STP"})


@dataclass(slots=True)
class SimOrder:
    """One order as the replay venue works it."""

    ib_order_id: int
    client_order_id: str
    symbol: str
    buy: bool
    quantity: Decimal
    order_type: str
    limit: Decimal | None
    stop: Decimal | None
    tif: str
    filled: Decimal = ZERO
    notional: Decimal = ZERO
    triggered: bool = False
    done: bool = False

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def avg_price(self) -> Decimal | None:
        return None if self.filled == ZERO else self.notional / self.filled


@dataclass(frozen=True, slots=True)
class Fill:
    ib_order_id: int
    shares: Decimal
    price: Decimal


def refusal(order_type: str, tif: str) -> str | None:
    """Why the model cannot work an order of this type and time in force, or None."""
    if order_type not in SUPPORTED_TYPES:
        return f"the replay venue does not model {order_type} orders"
    if tif not in ("DAY", "IOC", "GTC", "GTD"):
        return f"the replay venue does not model time in force {tif}"
    return None


def _take(order: SimOrder, price: Decimal, available: Decimal | None) -> Fill | None:
    shares = order.remaining if available is None else min(order.remaining, available)
    shares = shares.to_integral_value(rounding="ROUND_FLOOR")
    if shares <= ZERO:
        return None
    order.filled += shares
    order.notional += shares * price
    if order.remaining == ZERO:
        order.done = True
    return Fill(order.ib_order_id, shares, price)


def match(order: SimOrder, event: MarketEvent | None, used: dict[bool, Decimal]) -> Fill | None:
    """Work `order` against `event` (None: no market yet); `used` is the size already taken
    from each side of this event by earlier orders (True: the ask side), updated here."""
    if order.done or event is None or event.halted:
        return None
    touch = event.ask if order.buy else event.bid
    if touch is None or touch <= ZERO or event.bid is None or event.ask is None:
        return None
    if order.order_type == "STP" and not order.triggered:
        last = event.last if event.last is not None else touch
        assert order.stop is not None
        if (order.buy and last < order.stop) or (not order.buy and last > order.stop):
            return None
        order.triggered = True
    displayed = event.ask_size if order.buy else event.bid_size
    available = None if displayed is None else max(displayed - used.get(order.buy, ZERO), ZERO)
    marketable = order.order_type in ("MKT", "STP") or (
        order.limit is not None and (touch <= order.limit if order.buy else touch >= order.limit)
    )
    fill: Fill | None = None
    if marketable:
        fill = _take(order, touch, available)
    elif event.kind is Kind.BAR and order.limit is not None and event.low is not None:
        assert event.high is not None
        through = event.low < order.limit if order.buy else event.high > order.limit
        if through:
            fill = _take(order, order.limit, None)
    if fill is not None and available is not None:
        used[order.buy] = used.get(order.buy, ZERO) + fill.shares
    return fill
