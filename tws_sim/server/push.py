"""What the server pushes, shaped for one session: ticks, combo quotes, depth diffs, account rows.

Both the driver (streaming updates as simulated time passes) and the request handlers (the first
snapshot a subscription gets) send the same messages computed the same way; this module holds
those computations so neither imports the other for them. It sits beside `out` (which turns one
server value into one message's fields) and only composes `out` calls: it knows the change
detection (only ticks that moved, only account values that changed), not the wire layout.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from tws_sim.server import out
from tws_sim.types import DepthLevel, Greeks, Instrument, Quote, SecType

if TYPE_CHECKING:
    from tws_sim.engine import Venue
    from tws_sim.market import Market
    from tws_sim.server.session import Session
    from tws_sim.server.subscriptions import AccountSub, MdSub

# IB tick types the server sends (bid size, bid, ask, ask size, last, last size, high, low,
# volume, close, open, halted; the option computations for bid, ask, last and model).
BID_SIZE, BID, ASK, ASK_SIZE, LAST, LAST_SIZE, HIGH, LOW, VOLUME, CLOSE = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
)
OPEN, HALTED = 14, 49
BID_OPTION, ASK_OPTION, LAST_OPTION, MODEL_OPTION = 10, 11, 12, 13

#: one tick as (tick type, value, size); size None marks a tickSize, else a tickPrice
Tick = tuple[int, Decimal, Decimal | None]
#: an L2 book by (side, position), as last sent to a con_id's depth subscribers
DepthBook = dict[tuple[int, int], DepthLevel]
#: (row, operation) for updateMktDepthL2: 0 insert, 1 update, 2 delete
DepthChange = tuple[DepthLevel, int]
#: tag → (value, currency), the venue's account values
AccountValues = dict[str, tuple[str, str]]


# -------------------------------------------------------------------------------------------------
# market data


def quote_ticks(q: Quote, prev: Quote | None) -> list[Tick]:
    """Ticks that changed since `prev` (all of them when None), as (tick_type, value, size).

    Prices go out as tickPrice with their size where IB pairs them (bid/ask/last); sizes that
    change alone go out as tickSize (size None marks a size tick).
    """
    ticks: list[Tick] = []
    if prev is None or q.bid != prev.bid:
        ticks.append((BID, q.bid, q.bid_size))
    elif q.bid_size != prev.bid_size:
        ticks.append((BID_SIZE, q.bid_size, None))
    if prev is None or q.ask != prev.ask:
        ticks.append((ASK, q.ask, q.ask_size))
    elif q.ask_size != prev.ask_size:
        ticks.append((ASK_SIZE, q.ask_size, None))
    if q.last > 0 and (prev is None or q.last != prev.last):
        ticks.append((LAST, q.last, q.last_size))
    elif prev is not None and q.last_size != prev.last_size and q.last > 0:
        ticks.append((LAST_SIZE, q.last_size, None))
    if prev is None or q.volume != prev.volume:
        ticks.append((VOLUME, q.volume, None))
    if q.high > 0 and (prev is None or q.high != prev.high):
        ticks.append((HIGH, q.high, Decimal(0)))
    if q.low > 0 and (prev is None or q.low != prev.low):
        ticks.append((LOW, q.low, Decimal(0)))
    if prev is None:
        if q.close > 0:
            ticks.append((CLOSE, q.close, Decimal(0)))
        if q.open > 0:
            ticks.append((OPEN, q.open, Decimal(0)))
    return ticks


NO_PRICE = Decimal(-1)  # a combo side that cannot be priced (a leg without that side)


def combo_quote(legs: tuple[tuple[int, int], ...], quote_of: Callable[[int], Quote]) -> Quote:
    """The net quote of a combo from its legs' quotes: what selling one combo unit gets (bid)
    and buying one costs (ask). A bought leg (ratio > 0) is sold at its bid when the combo is
    sold; a sold leg (ratio < 0) is bought back at its ask. Net prices may be negative
    (credit combos), as IB quotes them. The size of a side is the number of whole combo units
    the legs' displayed sizes cover; a side some leg does not quote is -1 with size 0."""
    bid = ask = Decimal(0)
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None
    bid_ok = ask_ok = True
    ts = None
    for con_id, ratio in legs:
        q = quote_of(con_id)
        ts = q.ts if ts is None or q.ts > ts else ts
        n = abs(ratio)
        # (price, size) of the leg trade that selling (bid) / buying (ask) the combo makes
        sell_px, sell_sz = (q.bid, q.bid_size) if ratio > 0 else (q.ask, q.ask_size)
        buy_px, buy_sz = (q.ask, q.ask_size) if ratio > 0 else (q.bid, q.bid_size)
        bid_ok = bid_ok and sell_px > 0
        ask_ok = ask_ok and buy_px > 0
        bid += ratio * sell_px
        ask += ratio * buy_px
        units = sell_sz // n
        bid_size = units if bid_size is None else min(bid_size, units)
        units = buy_sz // n
        ask_size = units if ask_size is None else min(ask_size, units)
    zero = Decimal(0)
    return Quote(
        con_id=0,
        ts=ts if ts is not None else datetime.min.replace(tzinfo=UTC),
        bid=bid if bid_ok else NO_PRICE,
        ask=ask if ask_ok else NO_PRICE,
        bid_size=(bid_size or zero) if bid_ok else zero,
        ask_size=(ask_size or zero) if ask_ok else zero,
        last=zero,
        last_size=zero,
        volume=zero,
        high=zero,
        low=zero,
        close=zero,
        open=zero,
    )


def combo_ticks(q: Quote, prev: Quote | None) -> list[Tick]:
    """Bid/ask price and size ticks of a combo quote (a combo has no prints, volume or range)."""
    return [t for t in quote_ticks(q, prev) if t[0] != VOLUME]


def send_ticks(session: Session, req_id: int, ticks: list[Tick]) -> int:
    """tickPrice / tickSize for each tick; → the number of messages sent."""
    v = session.version
    for tick_type, value, size in ticks:
        if size is None:
            session.send(out.tick_size(req_id, tick_type, value, v))
        else:
            session.send(out.tick_price(req_id, tick_type, value, size, v))
    return len(ticks)


def send_option_ticks(session: Session, req_id: int, q: Quote, greeks: Greeks) -> int:
    """tickOptionComputation for bid, ask and model (ib_async's bid/ask/modelGreeks)."""
    v = session.version
    session.send(out.tick_option(req_id, BID_OPTION, greeks, q.bid, v))
    session.send(out.tick_option(req_id, ASK_OPTION, greeks, q.ask, v))
    session.send(out.tick_option(req_id, MODEL_OPTION, greeks, None, v))
    return 3


DEPTH_ROWS = 10  # rows the driver tracks per side; a subscription sees its first `rows`


def depth_changes(old: DepthBook, rows: list[DepthLevel]) -> tuple[DepthBook, list[DepthChange]]:
    """(new book by (side, position), [(row, operation)]) — operation 0 insert, 1 update,
    2 delete, as updateMktDepthL2 carries it. Computed once per con_id and book change, then
    sent to every depth subscriber (each filtered to its own row count)."""
    new = {(r.side, r.position): r for r in rows}
    changes: list[DepthChange] = []
    for key, row in new.items():
        prev = old.get(key)
        if prev is None:
            changes.append((row, 0))
        elif (
            prev.price != row.price
            or prev.size != row.size
            or prev.market_maker != row.market_maker
        ):
            changes.append((row, 1))
    for key, row in old.items():
        if key not in new:
            changes.append((row, 2))
    return new, changes


def send_depth(session: Session, sub: MdSub, changes: list[DepthChange]) -> int:
    """updateMktDepthL2 for the changed rows within this subscription's row count."""
    v = session.version
    req_id = sub.req_id
    limit = sub.rows
    sent = 0
    for row, op in changes:
        if row.position < limit:
            session.send(out.depth_l2(req_id, row, op, v))
            sent += 1
    return sent


# -------------------------------------------------------------------------------------------------
# account


def rounded(values: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
    """P&L values to the cent: what decides whether a pnl / pnlSingle push is a change."""
    cent = Decimal("0.01")
    return tuple(v.quantize(cent) if v.is_finite() else v for v in values)


class PortfolioRow(NamedTuple):
    """One updatePortfolio message's worth of a position."""

    instrument: Instrument
    position: Decimal
    market_price: Decimal
    market_value: Decimal
    avg_cost: Decimal
    unrealized: Decimal
    realized: Decimal

    def values(self) -> tuple[Decimal, ...]:
        """Everything but the instrument: what change detection compares."""
        return tuple(self[1:])


def portfolio_rows(venue: Venue, market: Market, now: datetime) -> dict[int, PortfolioRow]:
    """con_id → its updatePortfolio row, from the venue's P&L (marks are the venue's mids); a
    flat position, or one the venue has no P&L for, is marked at the market's mid."""
    rows: dict[int, PortfolioRow] = {}
    for inst, qty, avg_cost in venue.positions():
        single = venue.pnl_single(inst.con_id, now)
        if single is not None and qty:
            _pos, _daily, unrealized, realized, value = single
            price = value / (qty * Decimal(inst.multiplier))
        else:
            realized = single[3] if single is not None else Decimal(0)
            unrealized = value = Decimal(0)
            price = market.quote(inst.con_id).mid
        rows[inst.con_id] = PortfolioRow(inst, qty, price, value, avg_cost, unrealized, realized)
    return rows


def send_portfolio_row(session: Session, account: str, row: PortfolioRow) -> None:
    """One updatePortfolio for a position row."""
    session.send(
        out.update_portfolio(
            account,
            row.instrument,
            row.position,
            row.market_price,
            row.market_value,
            row.avg_cost,
            row.unrealized,
            row.realized,
            session.version,
        )
    )


def send_account_values(
    session: Session,
    account: str,
    values: AccountValues,
    sub: AccountSub,
    v: int,
    full: bool = False,
) -> None:
    """updateAccountValue for each tag that changed since this subscriber's last push (every tag
    when `full`)."""
    last: AccountValues = sub.last_values or {}
    for tag, (value, currency) in values.items():
        if full or last.get(tag) != (value, currency):
            session.send(out.update_account_value(tag, value, currency, account, v))
    sub.last_values = dict(values)


def send_account_summary(
    session: Session,
    sub: AccountSub,
    account: str,
    values: AccountValues,
    full: bool,
) -> None:
    """accountSummary rows for the subscribed tags that changed (all of them when `full`, then
    accountSummaryEnd, which ends the request's first answer)."""
    last: AccountValues = sub.last_values or {}
    tags = sub.tags
    for tag, (value, currency) in values.items():
        if tags and tag not in tags:
            continue
        if full or last.get(tag) != (value, currency):
            session.send(
                out.account_summary(sub.req_id, account, tag, value, currency, session.version)
            )
    sub.last_values = dict(values)
    if full:
        session.send(out.account_summary_end(sub.req_id, session.version))


def send_account_multi(
    session: Session,
    sub: AccountSub,
    account: str,
    values: AccountValues,
    full: bool,
) -> None:
    """accountUpdateMulti rows that changed (all of them when `full`, then accountUpdateMultiEnd,
    which ends the request's first answer)."""
    last: AccountValues = sub.last_values or {}
    for tag, (value, currency) in values.items():
        if full or last.get(tag) != (value, currency):
            session.send(
                out.account_update_multi(
                    sub.req_id, account, sub.model, tag, value, currency, session.version
                )
            )
    sub.last_values = dict(values)
    if full:
        session.send(out.account_update_multi_end(sub.req_id, session.version))


def is_option(inst: Instrument | None) -> bool:
    """Whether a subscription's instrument gets tickOptionComputation with its quotes."""
    return inst is not None and inst.sec_type is SecType.OPT
