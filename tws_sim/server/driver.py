"""The driver loop: clock → market.advance → fan-out → venue.on_market → routing.

One `step(now)` does everything that simulated time passing makes happen: scenario faults that
fall due, the market moving (and its events going to the market-data subscribers), the venue
reacting to the market (fills, triggers, expiries) with its events routed to the owning clients,
commission reports whose delivery a scenario delayed, and the periodic account pushes (P&L every
second, account values and summaries every three minutes, like TWS).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from tws_sim.market import HistoryError
from tws_sim.server import out
from tws_sim.server.subscriptions import AccountSub, MdKind, MdSub
from tws_sim.types import (
    Bar,
    BarClosed,
    Commissioned,
    Executed,
    HaltChanged,
    Instrument,
    OrderChanged,
    OrderSnapshot,
    PositionChanged,
    Quote,
    QuoteChanged,
    SecType,
    TradePrinted,
    VenueError,
)

if TYPE_CHECKING:
    from tws_sim.server.app import SimServer
    from tws_sim.server.session import Session

log = logging.getLogger("tws_sim.server")

PNL_EVERY = timedelta(seconds=1)  # TWS pushes pnl / pnlSingle about once a second, on change
ACCOUNT_EVERY = timedelta(minutes=3)  # account values and summaries: every three minutes
RT_BAR = timedelta(seconds=5)  # the market's bar (BarClosed.bar.time is its start)

# IB tick types used in fan-out (bid size, bid, ask, ask size, last, last size, high, low,
# volume, close, open, halted).
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


class Driver:
    """Moves one `SimServer` through simulated time."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.last_quote: dict[int, Quote] = {}
        self.pending_commissions: list[tuple[datetime, int, Commissioned]] = []
        self._seq = 0
        self.last_step: datetime | None = None
        self.account_dirty = False
        self.next_pnl: datetime | None = None
        self.next_account: datetime | None = None
        self.md_msgs = 0  # market-data messages written (benchmarks read it)
        # The L2 book last sent per con_id (shared by its depth subscribers; see depth_changes).
        self.depth_book: dict[int, dict[tuple[int, int], Any]] = {}
        # The venue keeps the con_ids of its working orders watched (it indexes them), so the
        # market emits the events that fill them; the driver does not watch for orders.

    # ---------------------------------------------------------------------------------------------

    def step(self, now: datetime) -> None:
        server = self.server
        for action in server.faults.due(now):
            self.apply_fault(action.kind, action.duration_s)
        if server.refuse_until is not None and now >= server.refuse_until:
            server.reopen()
        events = server.market.advance(now)
        if events:
            self.fan_out(events)
        self.route(server.venue.on_market(events, now), now)
        if self.pending_commissions:
            self._deliver_due_commissions(now)
        self._periodic(now)
        self.last_step = now

    def apply_fault(self, kind: str, duration_s: float) -> None:
        server = self.server
        log.info("fault %s (%.1f s) at %s", kind, duration_s, server.now())
        if kind == "disconnect":
            server.drop_all(duration_s)
        elif kind == "md_farm_down":
            server.set_md_farm(False)
        elif kind == "md_farm_up":
            server.set_md_farm(True)
        elif kind == "duplicate_status":
            server.duplicate_status = True
        elif kind == "duplicate_status_off":
            server.duplicate_status = False
        elif kind == "connectivity_lost":
            server.set_connectivity(False)
        elif kind == "connectivity_restored":
            server.set_connectivity(True)

    # ---------------------------------------------------------------------------------------------
    # market data fan-out

    def fan_out(self, events: list[Any]) -> None:
        """Market events to their subscribers. While the market-data farm is down (2103)
        nothing is sent, and the last quotes sent stay as they were, so the first update after
        2104 carries every field that changed during the outage."""
        if not self.server.md_farm_ok:
            return
        by_con = self.server.subs.md_by_con
        for ev in events:
            t = type(ev)
            if t is QuoteChanged:
                q = ev.quote
                prev = self.last_quote.get(q.con_id)
                self.last_quote[q.con_id] = q
                subs = by_con.get(q.con_id)
                if subs:
                    self._quote_changed(q, prev, subs)
            elif t is TradePrinted:
                subs = by_con.get(ev.con_id)
                if subs:
                    self._trade_printed(ev, subs)
            elif t is HaltChanged:
                for sub in by_con.get(ev.con_id, ()):
                    if sub.kind is MdKind.MKT:
                        state = int(ev.state)
                    elif sub.kind is MdKind.COMBO:  # a combo is as halted as its worst leg
                        market = self.server.market
                        state = max(int(market.halt_state(c)) for c, _ in sub.legs)
                    else:
                        continue
                    v = sub.session.version
                    sub.session.send(out.tick_generic(sub.req_id, HALTED, state, v))
                    self.md_msgs += 1
            elif t is BarClosed:
                hist: dict[tuple[int, int, str], Bar | None] | None = None
                for sub in by_con.get(ev.con_id, ()):
                    if sub.kind is MdKind.RT_BARS:
                        sub.session.send(out.realtime_bar(sub.req_id, ev.bar, sub.session.version))
                        self.md_msgs += 1
                    elif sub.kind is MdKind.HIST:
                        if hist is None:
                            hist = {}
                        self._history_update(sub, ev.bar.time + RT_BAR, hist)

    def _history_update(
        self, sub: MdSub, end: datetime, cache: dict[tuple[int, int, str], Bar | None]
    ) -> None:
        """historicalDataUpdate of the bar in progress at `end` (the bar just completed when
        `end` is on the bar grid), as TWS sends one per 5-second bar for keepUpToDate. The
        bar is computed once per (con_id, bar size, whatToShow) and shared by its subscribers."""
        key = (sub.bars_of, sub.bar_s, sub.what)
        if key in cache:
            bar = cache[key]
        else:
            try:
                bars = self.server.market.history(sub.bars_of, end, sub.bar_s, sub.bar_s, sub.what)
            except HistoryError:  # validated when the subscription was made; never expected
                log.exception("history update for %s failed", key)
                bars = []
            bar = cache[key] = bars[-1] if bars else None
        if bar is None:
            return
        session = sub.session
        daily = sub.bar_s >= 86_400
        session.send(
            out.historical_data_update(sub.req_id, bar, sub.format_date, daily, session.version)
        )
        self.md_msgs += 1

    def _quote_changed(self, q: Quote, prev: Quote | None, subs: list[MdSub]) -> None:
        ticks = quote_ticks(q, prev)
        bid_ask_changed = (
            prev is None
            or q.bid != prev.bid
            or q.ask != prev.ask
            or q.bid_size != prev.bid_size
            or q.ask_size != prev.ask_size
        )
        changes: list[tuple[Any, int]] | None = None
        greeks: Any = None
        greeks_done = False
        for sub in subs:
            kind = sub.kind
            session = sub.session
            if kind is MdKind.MKT:
                self.md_msgs += send_ticks(session, sub.req_id, ticks)
                if sub.is_option and ticks:
                    if not greeks_done:
                        greeks = self.server.market.greeks(q.con_id)
                        greeks_done = True
                    if greeks is not None:
                        self.md_msgs += send_option_ticks(session, sub.req_id, q, greeks)
            elif kind is MdKind.TBT_BID_ASK:
                if bid_ask_changed:
                    session.send(out.tbt_bid_ask(sub.req_id, q, session.version))
                    self.md_msgs += 1
            elif kind is MdKind.TBT_MID_POINT:
                if prev is None or q.bid != prev.bid or q.ask != prev.ask:
                    session.send(out.tbt_mid_point(sub.req_id, q, session.version))
                    self.md_msgs += 1
            elif kind is MdKind.COMBO:
                self.md_msgs += self._combo_changed(sub)
            elif kind is MdKind.DEPTH:
                if changes is None:
                    rows = self.server.market.depth(q.con_id, DEPTH_ROWS)
                    book, changes = depth_changes(self.depth_book.get(q.con_id, {}), rows)
                    self.depth_book[q.con_id] = book
                if changes:
                    self.md_msgs += send_depth(session, sub, changes)

    def _combo_changed(self, sub: MdSub) -> int:
        """A leg moved: the combo's net quote from the legs' latest published quotes, and the
        ticks that changed since this subscriber's last one."""
        last_quote = self.last_quote
        market = self.server.market
        q = combo_quote(sub.legs, lambda c: last_quote.get(c) or market.quote(c))
        ticks = combo_ticks(q, sub.last)
        sub.last = q
        return send_ticks(sub.session, sub.req_id, ticks)

    def _trade_printed(self, ev: TradePrinted, subs: list[MdSub]) -> None:
        for sub in subs:
            if sub.kind is MdKind.TBT_LAST or sub.kind is MdKind.TBT_ALL_LAST:
                all_last = sub.kind is MdKind.TBT_ALL_LAST
                sub.session.send(out.tbt_last(sub.req_id, ev, all_last, sub.session.version))
                self.md_msgs += 1

    # ---------------------------------------------------------------------------------------------
    # venue events

    def route(self, events: list[Any], now: datetime) -> None:
        """Deliver venue events: order events to the owner and to client-0 auto-open listeners,
        errors to their client, positions to position/account subscribers."""
        if not events:
            return
        server = self.server
        clients = server.clients
        for ev in events:
            t = type(ev)
            if t is OrderChanged:
                snap: OrderSnapshot = ev.snapshot
                inst = server.catalog.get(snap.request.con_id) if snap.request.con_id else None
                for session in self._order_targets(snap.request.client_id):
                    v = session.version
                    if ev.open_order:
                        session.send(out.open_order(snap, inst, v))
                    if ev.order_status:
                        status = out.order_status(snap, v)
                        session.send(status)
                        if server.duplicate_status:
                            session.send(status)
            elif t is Executed:
                ex = ev.execution
                self.account_dirty = True
                for session in self._order_targets(ex.client_id):
                    inst = server.catalog.get(ex.con_id)
                    session.send(out.exec_details(-1, ex, inst, session.version))
            elif t is Commissioned:
                if ev.deliver_at is not None and ev.deliver_at > now:
                    heapq.heappush(self.pending_commissions, (ev.deliver_at, self._seq, ev))
                    self._seq += 1
                else:
                    self._send_commission(ev)
            elif t is VenueError:
                target = clients.get(ev.client_id)
                if target is not None and target.ready:
                    target.send_error(ev.req_id, ev.code, ev.message)
            elif t is PositionChanged:
                self.account_dirty = True
                self._position_changed(ev)

    def _order_targets(self, client_id: int) -> list[Session]:
        server = self.server
        targets: list[Session] = []
        owner = server.clients.get(client_id)
        if owner is not None and owner.ready:
            targets.append(owner)
        listener = server.clients.get(0)
        if (
            listener is not None
            and listener is not owner
            and listener.ready
            and listener.auto_open_orders
        ):
            targets.append(listener)
        return targets

    def _send_commission(self, ev: Commissioned) -> None:
        for session in self._order_targets(ev.client_id):
            session.send(out.commission_report(ev.report, session.version))

    def _deliver_due_commissions(self, now: datetime) -> None:
        heap = self.pending_commissions
        while heap and heap[0][0] <= now:
            self._send_commission(heapq.heappop(heap)[2])

    def _position_changed(self, ev: PositionChanged) -> None:
        server = self.server
        inst = server.catalog.get(ev.con_id)
        if inst is None:
            return
        for sub in server.subs.account_subs("positions"):
            s = sub.session
            s.send(out.position(ev.account, inst, ev.position, ev.avg_cost, s.version))
        for sub in server.subs.account_subs("positions_multi"):
            s = sub.session
            s.send(
                out.position_multi(
                    sub.req_id, ev.account, sub.model, inst, ev.position, ev.avg_cost, s.version
                )
            )

    # ---------------------------------------------------------------------------------------------
    # periodic pushes

    def _periodic(self, now: datetime) -> None:
        subs = self.server.subs
        if not subs.account:
            self.account_dirty = False
            return
        if self.next_pnl is None or now >= self.next_pnl:
            self.next_pnl = now + PNL_EVERY
            self.push_pnl(now)
        if self.account_dirty:
            self.account_dirty = False
            self.push_portfolio(now)
        if self.next_account is None or now >= self.next_account:
            self.next_account = now + ACCOUNT_EVERY
            self.push_account(now, full=False)

    def push_pnl(self, now: datetime) -> None:
        server = self.server
        venue = server.venue
        totals: tuple[Decimal, ...] | None = None
        for sub in server.subs.account_subs("pnl"):
            if totals is None:
                totals = tuple(venue.pnl(now))
            key = rounded(totals)
            if key != sub.last:
                sub.last = key
                sub.session.send(out.pnl(sub.req_id, totals, sub.session.version))
        for sub in server.subs.account_subs("pnl_single"):
            values = venue.pnl_single(sub.con_id, now)
            if values is None:
                continue
            key = rounded(tuple(values))
            if key != sub.last:
                sub.last = key
                sub.session.send(out.pnl_single(sub.req_id, tuple(values), sub.session.version))

    def push_portfolio(self, now: datetime) -> None:
        """After fills: updatePortfolio (and changed account values) to reqAccountUpdates
        subscribers, as TWS does on a position change."""
        server = self.server
        subs = server.subs.account_subs("updates")
        if not subs:
            return
        rows = portfolio_rows(server, now)
        values = server.venue.account_values(now)
        for sub in subs:
            session = sub.session
            v = session.version
            last_rows = sub.last_push or {}
            for con_id, row in rows.items():
                if last_rows.get(con_id) != row.values():
                    send_portfolio_row(session, server.account, row)
            sub.last_push = {con_id: row.values() for con_id, row in rows.items()}
            send_account_values(session, server.account, values, sub, v)
            session.send(out.update_account_time(now, v))

    def push_account(self, now: datetime, full: bool) -> None:
        """The three-minute cadence: account values and summaries that changed."""
        server = self.server
        values = server.venue.account_values(now)
        for sub in server.subs.account_subs("updates"):
            v = sub.session.version
            send_account_values(sub.session, server.account, values, sub, v, full=full)
            sub.session.send(out.update_account_time(now, v))
        for sub in server.subs.account_subs("summary"):
            send_account_summary(sub.session, sub, server.account, values, full=full)
        for sub in server.subs.account_subs("updates_multi"):
            send_account_multi(sub.session, sub, server.account, values, full=full)


# -------------------------------------------------------------------------------------------------
# helpers shared with the request handlers


def rounded(values: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
    cent = Decimal("0.01")
    return tuple(v.quantize(cent) if v.is_finite() else v for v in values)


def quote_ticks(q: Quote, prev: Quote | None) -> list[tuple[int, Decimal, Decimal | None]]:
    """Ticks that changed since `prev` (all of them when None), as (tick_type, value, size).

    Prices go out as tickPrice with their size where IB pairs them (bid/ask/last); sizes that
    change alone go out as tickSize (size None marks a size tick).
    """
    ticks: list[tuple[int, Decimal, Decimal | None]] = []
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


def combo_ticks(q: Quote, prev: Quote | None) -> list[tuple[int, Decimal, Decimal | None]]:
    """Bid/ask price and size ticks of a combo quote (a combo has no prints, volume or range)."""
    return [t for t in quote_ticks(q, prev) if t[0] != VOLUME]


def send_ticks(
    session: Session, req_id: int, ticks: list[tuple[int, Decimal, Decimal | None]]
) -> int:
    v = session.version
    for tick_type, value, size in ticks:
        if size is None:
            session.send(out.tick_size(req_id, tick_type, value, v))
        else:
            session.send(out.tick_price(req_id, tick_type, value, size, v))
    return len(ticks)


def send_option_ticks(session: Session, req_id: int, q: Quote, greeks: Any) -> int:
    """tickOptionComputation for bid, ask and model (ib_async's bid/ask/modelGreeks)."""
    v = session.version
    session.send(out.tick_option(req_id, BID_OPTION, greeks, q.bid, v))
    session.send(out.tick_option(req_id, ASK_OPTION, greeks, q.ask, v))
    session.send(out.tick_option(req_id, MODEL_OPTION, greeks, None, v))
    return 3


DEPTH_ROWS = 10  # rows the driver tracks per side; a subscription sees its first `rows`


def depth_changes(
    old: dict[tuple[int, int], Any], rows: list[Any]
) -> tuple[dict[tuple[int, int], Any], list[tuple[Any, int]]]:
    """(new book by (side, position), [(row, operation)]) — operation 0 insert, 1 update,
    2 delete, as updateMktDepthL2 carries it. Computed once per con_id and book change, then
    sent to every depth subscriber (each filtered to its own row count)."""
    new = {(r.side, r.position): r for r in rows}
    changes: list[tuple[Any, int]] = []
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


def send_depth(session: Session, sub: MdSub, changes: list[tuple[Any, int]]) -> int:
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


def portfolio_rows(server: SimServer, now: datetime) -> dict[int, PortfolioRow]:
    """con_id → its updatePortfolio row, from the venue's P&L (marks are the venue's mids)."""
    rows: dict[int, PortfolioRow] = {}
    venue = server.venue
    for inst, qty, avg_cost in venue.positions():
        single = venue.pnl_single(inst.con_id, now)
        if single is not None and qty:
            _pos, _daily, unrealized, realized, value = single
            price = value / (qty * Decimal(inst.multiplier))
        else:
            realized = single[3] if single is not None else Decimal(0)
            unrealized = value = Decimal(0)
            price = server.market.quote(inst.con_id).mid
        rows[inst.con_id] = PortfolioRow(inst, qty, price, value, avg_cost, unrealized, realized)
    return rows


def send_portfolio_row(session: Session, account: str, row: PortfolioRow) -> None:
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
    values: dict[str, tuple[str, str]],
    sub: AccountSub,
    v: int,
    full: bool = False,
) -> None:
    last: dict[str, tuple[str, str]] = sub.last or {}
    for tag, (value, currency) in values.items():
        if full or last.get(tag) != (value, currency):
            session.send(out.update_account_value(tag, value, currency, account, v))
    sub.last = dict(values)


def send_account_summary(
    session: Session,
    sub: AccountSub,
    account: str,
    values: dict[str, tuple[str, str]],
    full: bool,
) -> None:
    last: dict[str, tuple[str, str]] = sub.last or {}
    tags = sub.tags
    for tag, (value, currency) in values.items():
        if tags and tag not in tags:
            continue
        if full or last.get(tag) != (value, currency):
            session.send(
                out.account_summary(sub.req_id, account, tag, value, currency, session.version)
            )
    sub.last = dict(values)
    if full:
        session.send(out.account_summary_end(sub.req_id, session.version))


def send_account_multi(
    session: Session,
    sub: AccountSub,
    account: str,
    values: dict[str, tuple[str, str]],
    full: bool,
) -> None:
    last: dict[str, tuple[str, str]] = sub.last or {}
    for tag, (value, currency) in values.items():
        if full or last.get(tag) != (value, currency):
            session.send(
                out.account_update_multi(
                    sub.req_id, account, sub.model, tag, value, currency, session.version
                )
            )
    sub.last = dict(values)
    if full:
        session.send(out.account_update_multi_end(sub.req_id, session.version))


def is_option(inst: Any) -> bool:
    return inst is not None and inst.sec_type is SecType.OPT
