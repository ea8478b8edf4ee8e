"""The driver loop: clock → market.advance → fan-out → venue.on_market → routing.

One `step(now)` does everything that simulated time passing makes happen: scenario faults that
fall due, the market moving (and its events going to the market-data subscribers), the venue
reacting to the market (fills, triggers, expiries) with its events routed to the owning clients,
commission reports whose delivery a scenario delayed, and the periodic account pushes (P&L every
second, account values and summaries every three minutes, like TWS).

The driver sees its server through `DriverHost`, the few attributes and fault switches it uses,
so this module does not import the server (the server builds the driver and passes itself).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from tws_sim.market import HistoryError
from tws_sim.server import out
from tws_sim.server.push import (
    DEPTH_ROWS,
    HALTED,
    combo_quote,
    combo_ticks,
    depth_changes,
    portfolio_rows,
    quote_ticks,
    rounded,
    send_account_multi,
    send_account_summary,
    send_account_values,
    send_depth,
    send_option_ticks,
    send_portfolio_row,
    send_ticks,
)
from tws_sim.server.subscriptions import MdKind, MdSub
from tws_sim.types import (
    Bar,
    BarClosed,
    Commissioned,
    DepthLevel,
    Executed,
    Greeks,
    HaltChanged,
    MarketEvent,
    OrderChanged,
    OrderSnapshot,
    PositionChanged,
    Quote,
    QuoteChanged,
    TradePrinted,
    VenueError,
    VenueEvent,
)

if TYPE_CHECKING:
    from tws_sim.engine import Venue
    from tws_sim.market import Catalog, Market
    from tws_sim.server.faults import FaultSchedule
    from tws_sim.server.session import Session
    from tws_sim.server.subscriptions import Subscriptions

log = logging.getLogger("tws_sim.server")

PNL_EVERY = timedelta(seconds=1)  # TWS pushes pnl / pnlSingle about once a second, on change
ACCOUNT_EVERY = timedelta(minutes=3)  # account values and summaries: every three minutes
RT_BAR = timedelta(seconds=5)  # the market's bar (BarClosed.bar.time is its start)


class DriverHost(Protocol):
    """What the driver needs of the server that owns it (`SimServer` is the one implementation).

    The parts are read-only here; `duplicate_status` is the one flag a fault sets directly, the
    other faults go through the server's own switches (they also notify the clients).
    """

    duplicate_status: bool

    @property
    def account(self) -> str: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def market(self) -> Market: ...
    @property
    def venue(self) -> Venue: ...
    @property
    def subs(self) -> Subscriptions: ...
    @property
    def faults(self) -> FaultSchedule: ...
    @property
    def clients(self) -> Mapping[int, Session]: ...
    @property
    def md_farm_ok(self) -> bool: ...
    @property
    def refuse_until(self) -> datetime | None: ...

    def now(self) -> datetime: ...
    def reopen(self) -> None: ...
    def drop_all(self, refuse_s: float) -> None: ...
    def set_md_farm(self, ok: bool) -> None: ...
    def set_connectivity(self, ok: bool) -> None: ...


class Driver:
    """Moves one server through simulated time."""

    def __init__(self, server: DriverHost) -> None:
        self.server = server
        self.last_quote: dict[int, Quote] = {}
        self.pending_commissions: list[tuple[datetime, int, Commissioned]] = []
        self._seq = 0
        self.last_step: datetime | None = None
        self.account_dirty = False
        self.next_pnl: datetime | None = None
        self.next_account: datetime | None = None
        self.md_msgs = 0  # market-data messages written (benchmarks read it)
        # The venue keeps the con_ids of its working orders watched (it indexes them), so the
        # market emits the events that fill them; the driver does not watch for orders.

    # ---------------------------------------------------------------------------------------------

    def step(self, now: datetime) -> None:
        """Everything simulated time reaching `now` makes happen, in the order it happens."""
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
        """One scheduled server fault (`tws_sim.server.faults.server_actions` names the kinds)."""
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

    def fan_out(self, events: list[MarketEvent]) -> None:
        """Market events to their subscribers. While the market-data farm is down (2103)
        nothing is sent, and the last quotes sent stay as they were, so the first update after
        2104 carries every field that changed during the outage."""
        if not self.server.md_farm_ok:
            return
        by_con = self.server.subs.md_by_con
        for ev in events:
            if isinstance(ev, QuoteChanged):
                q = ev.quote
                prev = self.last_quote.get(q.con_id)
                self.last_quote[q.con_id] = q
                subs = by_con.get(q.con_id)
                if subs:
                    self._quote_changed(q, prev, subs)
            elif isinstance(ev, TradePrinted):
                subs = by_con.get(ev.con_id)
                if subs:
                    self._trade_printed(ev, subs)
            elif isinstance(ev, HaltChanged):
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
            elif isinstance(ev, BarClosed):
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
        """A quote's changes to each kind of subscriber; ticks, greeks and depth diffs are computed
        once per quote however many subscribe."""
        ticks = quote_ticks(q, prev)
        bid_ask_changed = (
            prev is None
            or q.bid != prev.bid
            or q.ask != prev.ask
            or q.bid_size != prev.bid_size
            or q.ask_size != prev.ask_size
        )
        changes: list[tuple[DepthLevel, int]] | None = None
        greeks: Greeks | None = None
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
                    depth_book = self.server.subs.depth_book
                    book, changes = depth_changes(depth_book.get(q.con_id, {}), rows)
                    depth_book[q.con_id] = book
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
        """A print to the tick-by-tick Last / AllLast subscribers."""
        for sub in subs:
            if sub.kind is MdKind.TBT_LAST or sub.kind is MdKind.TBT_ALL_LAST:
                all_last = sub.kind is MdKind.TBT_ALL_LAST
                sub.session.send(out.tbt_last(sub.req_id, ev, all_last, sub.session.version))
                self.md_msgs += 1

    # ---------------------------------------------------------------------------------------------
    # venue events

    def route(self, events: list[VenueEvent], now: datetime) -> None:
        """Deliver venue events: order events to the owner and to client-0 auto-open listeners,
        errors to their client, positions to position/account subscribers."""
        if not events:
            return
        server = self.server
        clients = server.clients
        for ev in events:
            if isinstance(ev, OrderChanged):
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
            elif isinstance(ev, Executed):
                ex = ev.execution
                self.account_dirty = True
                for session in self._order_targets(ex.client_id):
                    inst = server.catalog.get(ex.con_id)
                    session.send(out.exec_details(-1, ex, inst, session.version))
            elif isinstance(ev, Commissioned):
                if ev.deliver_at is not None and ev.deliver_at > now:
                    heapq.heappush(self.pending_commissions, (ev.deliver_at, self._seq, ev))
                    self._seq += 1
                else:
                    self._send_commission(ev)
            elif isinstance(ev, VenueError):
                target = clients.get(ev.client_id)
                if target is not None and target.ready:
                    target.send_error(ev.req_id, ev.code, ev.message)
            elif isinstance(ev, PositionChanged):
                self.account_dirty = True
                self._position_changed(ev)

    def _order_targets(self, client_id: int) -> list[Session]:
        """Who hears about a client's order: its owner, and client 0 when it asked for
        reqAutoOpenOrders."""
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
        """A commission report to the sessions that hear about its order."""
        for session in self._order_targets(ev.client_id):
            session.send(out.commission_report(ev.report, session.version))

    def _deliver_due_commissions(self, now: datetime) -> None:
        """Commission reports a scenario delayed, once their time has come (in time order)."""
        heap = self.pending_commissions
        while heap and heap[0][0] <= now:
            self._send_commission(heapq.heappop(heap)[2])

    def _position_changed(self, ev: PositionChanged) -> None:
        """position / positionMulti to their subscribers after a fill or correction."""
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
        """The account pushes on their cadence (P&L each second, the portfolio after fills, account
        values every three minutes), only while someone subscribes."""
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
        """pnl / pnlSingle to their subscribers, when a value moved by a cent or more."""
        server = self.server
        venue = server.venue
        totals: tuple[Decimal, ...] | None = None
        for sub in server.subs.account_subs("pnl"):
            if totals is None:
                totals = tuple(venue.pnl(now))
            key = rounded(totals)
            if key != sub.last_pnl:
                sub.last_pnl = key
                sub.session.send(out.pnl(sub.req_id, totals, sub.session.version))
        for sub in server.subs.account_subs("pnl_single"):
            values = venue.pnl_single(sub.con_id, now)
            if values is None:
                continue
            key = rounded(tuple(values))
            if key != sub.last_pnl:
                sub.last_pnl = key
                sub.session.send(out.pnl_single(sub.req_id, tuple(values), sub.session.version))

    def push_portfolio(self, now: datetime) -> None:
        """After fills: updatePortfolio (and changed account values) to reqAccountUpdates
        subscribers, as TWS does on a position change."""
        server = self.server
        subs = server.subs.account_subs("updates")
        if not subs:
            return
        rows = portfolio_rows(server.venue, server.market, now)
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
