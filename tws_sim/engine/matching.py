"""Pure price logic of the matching engine: book walking, stop triggers, trails, pegs, combos.

Nothing here mutates venue state; `fills.py` applies the results. Prices are Decimals; "buy"
means the order buys (it takes asks and rests on the bid side).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from tws_sim.types import ComboLegSpec, DepthLevel, Quote

ZERO = Decimal(0)
HUNDRED = Decimal(100)


def round_to_tick(price: Decimal, tick: Decimal, up: bool) -> Decimal:
    """Round `price` onto the tick grid, up (sell-side pegs, buy stops) or down."""
    if tick <= 0:
        return price
    steps = (price / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return steps * tick


Increment = Callable[[Decimal], Decimal]
"""The market's price-dependent minimum increment (`catalog.price_increment` bound to one
instrument): the grid changes with the price (options $0.05 from $3, stocks $0.0001 below $1)."""


def round_to_increment(price: Decimal, increment: Increment, up: bool) -> Decimal:
    """Round `price` onto the grid that applies at `price` itself, not at some reference price:
    a trailing stop or peg can sit on the other side of a grid boundary than the quote it follows.
    Rounding a price with its own increment lands on a valid price on both sides of a boundary
    (the boundaries, $1 and $3, are multiples of both increments)."""
    return round_to_tick(price, increment(price), up)


def on_tick(price: Decimal, tick: Decimal) -> bool:
    """True when `price` is a multiple of `tick` (IB error 110 otherwise)."""
    return tick <= 0 or (price % tick) == 0


def side_levels(
    depth: Iterable[DepthLevel], quote: Quote, buy: bool
) -> list[tuple[Decimal, Decimal, str]]:
    """The opposite side a `buy` order takes: (price, size, market maker), best first.

    Falls back to the top of book when the market gives no depth for the contract.
    """
    want = 0 if buy else 1
    levels = [
        (lv.price, lv.size, lv.market_maker) for lv in depth if lv.side == want and lv.size > 0
    ]
    if not levels:
        price, size = (quote.ask, quote.ask_size) if buy else (quote.bid, quote.bid_size)
        if price > 0 and size > 0:
            levels = [(price, size, "")]
    levels.sort(key=lambda lv: lv[0], reverse=not buy)
    return levels


def crosses(buy: bool, limit: Decimal | None, price: Decimal) -> bool:
    """True when a `buy` order with `limit` (None = market) may trade at `price`."""
    if limit is None:
        return True
    return price <= limit if buy else price >= limit


def plan_take(
    levels: Sequence[tuple[Decimal, Decimal, str]],
    buy: bool,
    limit: Decimal | None,
    qty: Decimal,
) -> list[tuple[Decimal, Decimal, str]]:
    """Walk `levels` (already net of what was taken) for up to `qty`: (price, size, mm) slices."""
    out: list[tuple[Decimal, Decimal, str]] = []
    left = qty
    for price, size, mm in levels:
        if left <= 0 or not crosses(buy, limit, price):
            break
        take = size if size < left else left
        if take > 0:
            out.append((price, take, mm))
            left -= take
    return out


def reference_price(quote: Quote) -> Decimal:
    """The price stops and trails watch: last trade, else the midpoint."""
    if quote.last > 0:
        return quote.last
    if quote.bid > 0 and quote.ask > 0:
        return quote.mid
    return ZERO


def stop_hit(buy: bool, stop: Decimal, ref: Decimal) -> bool:
    """A buy stop triggers at or above its stop price, a sell stop at or below."""
    if ref <= 0:
        return False
    return ref >= stop if buy else ref <= stop


def trail_stop(
    buy: bool,
    extreme: Decimal,
    amount: Decimal | None,
    percent: Decimal | None,
    increment: Increment,
) -> Decimal:
    """Stop price trailing `extreme` (the high for a sell trail, the low for a buy trail)."""
    if percent is not None and percent > 0:
        dist = extreme * percent / HUNDRED
    else:
        dist = amount if amount is not None else ZERO
    raw = extreme + dist if buy else extreme - dist
    return round_to_increment(raw, increment, up=buy)


def peg_price(
    order_type: str,
    buy: bool,
    quote: Quote,
    offset: Decimal | None,
    cap: Decimal | None,
    increment: Increment,
) -> Decimal | None:
    """Price of a pegged order for this quote: MIDPRICE / PEG MID at mid -/+ offset, REL at the
    near side +/- offset, capped by the limit; None while the quote is one-sided."""
    if quote.bid <= 0 or quote.ask <= 0:
        return None
    off = offset if offset is not None else ZERO
    if order_type == "REL":
        raw = quote.bid + off if buy else quote.ask - off
    else:
        raw = quote.mid - off if buy else quote.mid + off
    price = round_to_increment(raw, increment, up=not buy)
    if cap is not None and cap > 0:
        price = min(price, cap) if buy else max(price, cap)
    return price


def combo_prices(
    legs: Sequence[ComboLegSpec], quotes: Sequence[Quote], buy: bool
) -> tuple[Decimal, list[tuple[bool, Decimal]]] | None:
    """Net price per combo unit and each leg's (leg buys?, price) when the combo trades now.

    Buying the combo buys its BUY legs at the ask and sells its SELL legs at the bid; selling the
    combo does the reverse. None when a leg has no two-sided quote.
    """
    net = ZERO
    fills: list[tuple[bool, Decimal]] = []
    for leg, q in zip(legs, quotes, strict=True):
        if q.bid <= 0 or q.ask <= 0:
            return None
        leg_buys = (leg.action == "BUY") == buy
        price = q.ask if leg_buys else q.bid
        sign = 1 if leg.action == "BUY" else -1
        net += sign * leg.ratio * price
        fills.append((leg_buys, price))
    return net, fills
