"""Request dispatch: one method per decoded request, answering on the session that asked.

`Handlers.handle(session, fields)` decodes with `tws_sim.protocol.incoming.decode` (which never
raises) and calls the handler registered for the request's type. Requests the codec could not read
come back as `BadRequest` / `Unsupported` / `UnknownMessage` carrying IB's code and text; they get
that error on this session only. Order entry goes to the venue and its events are routed at once
(the venue answers synchronously), so an order's openOrder/orderStatus follow its placeOrder.

The handlers see their server through `HandlerHost` (the venue parts, the subscription registry
and the driver that routes venue events), so this module does not import the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from tws_sim.market import HistoryError
from tws_sim.protocol import incoming as rq
from tws_sim.server import out
from tws_sim.server.push import (
    DEPTH_ROWS,
    HALTED,
    combo_quote,
    combo_ticks,
    depth_changes,
    is_option,
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
from tws_sim.server.subscriptions import TBT_KINDS, AccountSub, MdKind, MdSub
from tws_sim.types import Instrument, SecType

if TYPE_CHECKING:
    from ibapi.contract import Contract

    from tws_sim.engine import Venue
    from tws_sim.market import Catalog, Market
    from tws_sim.server.driver import Driver
    from tws_sim.server.session import Session
    from tws_sim.server.subscriptions import Subscriptions

log = logging.getLogger("tws_sim.server")

ERR_NO_SECURITY = 200
MSG_NO_SECURITY = "No security definition has been found for the request"
ERR_AMBIGUOUS = 200
MSG_AMBIGUOUS = "The contract description specified for {sym} is ambiguous."
ERR_DUP_TICKER = 322
MSG_DUP_TICKER = "Error processing request:-'bc' : cause - Duplicate ticker id"
ERR_HIST = 162
MSG_HIST = "Historical Market Data Service error message:{reason}"
ERR_VALIDATING = 321
COMBO_TICK = Decimal("0.01")  # the price increment tickReqParams reports for a combo
ERR_NO_TICKER = 300
MSG_NO_TICKER = "Can't find EId with tickerId:{req_id}"
MSG_LIVE_END_DATE = (
    "Error validating request:-'bX' : cause - End date not supported with live updates"
)

_DURATION_UNITS = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 30 * 86_400, "Y": 365 * 86_400}
_BAR_UNITS = {
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86_400,
    "days": 86_400,
    "week": 7 * 86_400,
    "weeks": 7 * 86_400,
    "month": 30 * 86_400,
    "months": 30 * 86_400,
}


def parse_duration(text: str) -> int:
    """IB durationStr ("1800 S", "1 D", "2 W") → seconds; ValueError when malformed."""
    parts = text.split()
    if len(parts) != 2 or parts[1].upper() not in _DURATION_UNITS:
        raise ValueError(f"invalid duration {text[:40]!r}")
    n = int(parts[0])
    if n <= 0:
        raise ValueError(f"invalid duration {text[:40]!r}")
    return n * _DURATION_UNITS[parts[1].upper()]


def parse_bar_size(text: str) -> int:
    """IB barSizeSetting ("5 secs", "1 min", "1 hour", "1 day") → seconds; ValueError if not."""
    parts = text.split()
    if len(parts) != 2 or parts[1] not in _BAR_UNITS:
        raise ValueError(f"invalid bar size {text[:40]!r}")
    n = int(parts[0])
    if n <= 0:
        raise ValueError(f"invalid bar size {text[:40]!r}")
    return n * _BAR_UNITS[parts[1]]


class HandlerHost(Protocol):
    """What the request handlers need of their server (`SimServer` is the one implementation)."""

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
    def driver(self) -> Driver: ...

    def now(self) -> datetime: ...


class Handlers:
    """Every request the simulator serves, bound to one server."""

    def __init__(self, server: HandlerHost) -> None:
        self.server = server
        self._match_cache: dict[tuple[Any, ...], list[Instrument]] = {}
        self.table: dict[type, Callable[[Session, Any], None]] = {
            rq.ReqCurrentTime: self.req_current_time,
            rq.ReqIds: self.req_ids,
            rq.ReqManagedAccts: self.req_managed_accts,
            rq.ReqContractDetails: self.req_contract_details,
            rq.ReqSecDefOptParams: self.req_sec_def_opt_params,
            rq.ReqMarketDataType: self.req_market_data_type,
            rq.ReqMktData: self.req_mkt_data,
            rq.CancelMktData: self.cancel_mkt_data,
            rq.ReqTickByTickData: self.req_tick_by_tick,
            rq.CancelTickByTickData: self.cancel_tick_by_tick,
            rq.ReqMktDepth: self.req_mkt_depth,
            rq.CancelMktDepth: self.cancel_mkt_depth,
            rq.ReqRealTimeBars: self.req_real_time_bars,
            rq.CancelRealTimeBars: self.cancel_real_time_bars,
            rq.ReqHistoricalData: self.req_historical_data,
            rq.CancelHistoricalData: self.cancel_historical_data,
            rq.PlaceOrder: self.place_order,
            rq.CancelOrder: self.cancel_order,
            rq.ReqGlobalCancel: self.req_global_cancel,
            rq.ReqOpenOrders: self.req_open_orders,
            rq.ReqAllOpenOrders: self.req_all_open_orders,
            rq.ReqAutoOpenOrders: self.req_auto_open_orders,
            rq.ReqCompletedOrders: self.req_completed_orders,
            rq.ReqExecutions: self.req_executions,
            rq.ReqPositions: self.req_positions,
            rq.CancelPositions: self.cancel_positions,
            rq.ReqPositionsMulti: self.req_positions_multi,
            rq.CancelPositionsMulti: self.cancel_positions_multi,
            rq.ReqAccountSummary: self.req_account_summary,
            rq.CancelAccountSummary: self.cancel_account_summary,
            rq.ReqAccountUpdates: self.req_account_updates,
            rq.ReqAccountUpdatesMulti: self.req_account_updates_multi,
            rq.CancelAccountUpdatesMulti: self.cancel_account_updates_multi,
            rq.ReqPnL: self.req_pnl,
            rq.CancelPnL: self.cancel_pnl,
            rq.ReqPnLSingle: self.req_pnl_single,
            rq.CancelPnLSingle: self.cancel_pnl_single,
            rq.SetServerLogLevel: self.ignore,
            rq.StartApi: self.start_api_again,
        }

    def handle(self, session: Session, fields: list[str]) -> None:
        """Decode one message and answer it; a request nobody serves is an error, never a crash."""
        req = rq.decode(fields, session.version, session.client_id or 0)
        handler = self.table.get(type(req))
        if handler is not None:
            handler(session, req)
        elif isinstance(req, rq.BadRequest | rq.Unsupported):
            session.send_error(req.req_id, req.error_code, req.error_text)
        elif isinstance(req, rq.UnknownMessage):
            session.send_error(-1, req.error_code, req.error_text)
        else:  # a request type the codec knows and this table forgot: say so, don't crash
            session.send_error(-1, ERR_VALIDATING, f"Request {type(req).__name__} not supported.")

    # ---------------------------------------------------------------------------------------------
    # helpers

    def now(self) -> datetime:
        return self.server.now()

    def match(self, c: Contract) -> list[Instrument]:
        """Catalog lookup for a wire contract, memoised: the catalog is fixed for the session,
        and a strategy sends the same few contracts over and over (option chains make an
        uncached lookup scan thousands of instruments)."""
        key = (
            c.symbol or "",
            c.secType or "",
            c.lastTradeDateOrContractMonth or "",
            _strike(c.strike),
            c.right or "",
            "" if (c.exchange or "").upper() == "SMART" else (c.exchange or ""),
            c.currency or "",
            c.localSymbol or "",
            int(c.conId or 0),
        )
        found = self._match_cache.get(key)
        if found is None:
            found = self.server.catalog.match(*key)
            if len(self._match_cache) > 100_000:
                self._match_cache.clear()
            self._match_cache[key] = found
        venue = self.server.venue
        if venue.expired_through is not None:
            # options that expired at a session close are gone, as at IB (no definition: 200)
            found = [inst for inst in found if not venue.is_expired(inst)]
        return found

    def resolve(self, session: Session, req_id: int, c: Contract) -> Instrument | None:
        """One instrument for a request's contract, or an error 200 to the session and None."""
        matches = self.match(c)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            session.send_error(req_id, ERR_NO_SECURITY, MSG_NO_SECURITY)
        else:
            session.send_error(req_id, ERR_AMBIGUOUS, MSG_AMBIGUOUS.format(sym=c.symbol))
        return None

    def ignore(self, session: Session, req: Any) -> None:
        return None

    def start_api_again(self, session: Session, req: Any) -> None:
        session.send_error(-1, ERR_VALIDATING, "Error validating request: startApi sent twice.")

    # ---------------------------------------------------------------------------------------------
    # simple requests

    def req_current_time(self, session: Session, req: rq.ReqCurrentTime) -> None:
        session.send(out.current_time(self.now(), session.version))

    def req_ids(self, session: Session, req: rq.ReqIds) -> None:
        cid = session.client_id or 0
        session.send(out.next_valid_id(self.server.venue.next_order_id(cid), session.version))

    def req_managed_accts(self, session: Session, req: rq.ReqManagedAccts) -> None:
        session.send(out.managed_accounts(self.server.account, session.version))

    def req_market_data_type(self, session: Session, req: rq.ReqMarketDataType) -> None:
        # The simulator's data is always "live"; remember the request so reqMktData can echo it.
        session.market_data_type = req.market_data_type

    def req_contract_details(self, session: Session, req: rq.ReqContractDetails) -> None:
        c = req.contract
        matches = self.match(c)
        if not matches:
            session.send_error(req.req_id, ERR_NO_SECURITY, MSG_NO_SECURITY)
            return
        v = session.version
        catalog = self.server.catalog
        for inst in matches:
            session.send(out.contract_data(req.req_id, inst, catalog, v))
        session.send(out.contract_data_end(req.req_id, v))

    def req_sec_def_opt_params(self, session: Session, req: rq.ReqSecDefOptParams) -> None:
        catalog = self.server.catalog
        con_id = req.underlying_con_id
        if not con_id:
            found = catalog.match(req.underlying_symbol, req.underlying_sec_type or "STK")
            con_id = found[0].con_id if found else 0
        v = session.version
        through = self.server.venue.expired_through
        for row in catalog.option_params(con_id):
            exchange, trading_class, multiplier, expirations, strikes = row
            if through is not None:  # expired expiries are no longer listed
                expirations = tuple(e for e in expirations if e > f"{through:%Y%m%d}")
            session.send(
                out.sec_def_opt_params(
                    req.req_id, exchange, con_id, trading_class, multiplier, expirations, strikes, v
                )
            )
        session.send(out.sec_def_opt_params_end(req.req_id, v))

    # ---------------------------------------------------------------------------------------------
    # market data

    def _md_guard(self, session: Session, req_id: int) -> bool:
        subs = self.server.subs
        if subs.has_md(session, req_id):
            session.send_error(req_id, ERR_DUP_TICKER, MSG_DUP_TICKER)
            return False
        return True

    def req_mkt_data(self, session: Session, req: rq.ReqMktData) -> None:
        if not req.snapshot and not self._md_guard(session, req.req_id):
            return
        if (req.contract.secType or "").upper() == "BAG":
            self._req_combo_data(session, req)
            return
        inst = self.resolve(session, req.req_id, req.contract)
        if inst is None:
            return
        server = self.server
        v = session.version
        market = server.market
        market.watch(inst.con_id)
        try:
            session.send(out.tick_req_params(req.req_id, inst.min_tick, v))
            if session.market_data_type != 1:
                session.send(out.market_data_type(req.req_id, 1, v))
            q = market.quote(inst.con_id)
            send_ticks(session, req.req_id, quote_ticks(q, None))
            halted = int(market.halt_state(inst.con_id))
            session.send(out.tick_generic(req.req_id, HALTED, halted, v))
            if is_option(inst):
                greeks = market.greeks(inst.con_id)
                if greeks is not None:
                    send_option_ticks(session, req.req_id, q, greeks)
        finally:
            market.unwatch(inst.con_id)
        if req.snapshot or req.regulatory_snapshot:
            session.send(out.tick_snapshot_end(req.req_id, v))
            return
        server.subs.add_md(
            MdSub(
                session=session,
                req_id=req.req_id,
                kind=MdKind.MKT,
                con_id=inst.con_id,
                is_option=is_option(inst),
                generic_ticks=req.generic_ticks,
            )
        )
        # Later diffs are against the market's last published quote; make sure one exists so
        # this subscriber does not miss the first change.
        server.driver.last_quote.setdefault(inst.con_id, q)

    def _req_combo_data(self, session: Session, req: rq.ReqMktData) -> None:
        """TWS streams combo quotes: the net bid/ask of the legs (see `combo_quote`), updated
        whenever a leg's quote moves, plus the halt tick of the legs (the worst of them).
        Legs the catalog does not know, a zero ratio or no legs at all are error 200."""
        catalog = self.server.catalog
        legs: list[tuple[int, int]] = []
        for leg in req.contract.comboLegs or []:
            ratio = int(leg.ratio or 0)
            if catalog.get(int(leg.conId or 0)) is None or ratio <= 0:
                legs.clear()
                break
            legs.append((int(leg.conId), ratio if (leg.action or "").upper() != "SELL" else -ratio))
        if not legs:
            session.send_error(req.req_id, ERR_NO_SECURITY, MSG_NO_SECURITY)
            return
        server = self.server
        market = server.market
        v = session.version
        combo = tuple(legs)
        last_quote = server.driver.last_quote
        for con_id, _ in combo:
            market.watch(con_id)  # an option is priced only while watched
        try:
            q = combo_quote(combo, market.quote)
            for con_id, _ in combo:
                # later diffs of each leg are against its last published quote (as for reqMktData)
                last_quote.setdefault(con_id, market.quote(con_id))
            halted = max(int(market.halt_state(con_id)) for con_id, _ in combo)
        finally:
            for con_id, _ in combo:
                market.unwatch(con_id)
        session.send(out.tick_req_params(req.req_id, COMBO_TICK, v))
        if session.market_data_type != 1:
            session.send(out.market_data_type(req.req_id, 1, v))
        send_ticks(session, req.req_id, combo_ticks(q, None))
        session.send(out.tick_generic(req.req_id, HALTED, halted, v))
        if req.snapshot or req.regulatory_snapshot:
            session.send(out.tick_snapshot_end(req.req_id, v))
            return
        sub = MdSub(session, req.req_id, MdKind.COMBO, combo[0][0], legs=combo, last=q)
        server.subs.add_md(sub)

    def cancel_mkt_data(self, session: Session, req: rq.CancelMktData) -> None:
        """TWS answers a cancel of a ticker id it does not hold (never asked, already
        cancelled, or a snapshot that has ended) with error 300, not silence."""
        subs = self.server.subs
        removed = subs.remove_md(session, req.req_id, MdKind.MKT) or subs.remove_md(
            session, req.req_id, MdKind.COMBO
        )
        if removed is None:
            session.send_error(req.req_id, ERR_NO_TICKER, MSG_NO_TICKER.format(req_id=req.req_id))

    def req_tick_by_tick(self, session: Session, req: rq.ReqTickByTickData) -> None:
        if not self._md_guard(session, req.req_id):
            return
        kind = TBT_KINDS[req.tick_type]  # the codec admits only the four IB types
        inst = self.resolve(session, req.req_id, req.contract)
        if inst is None:
            return
        self.server.subs.add_md(MdSub(session, req.req_id, kind, inst.con_id, is_option(inst)))
        if kind is MdKind.TBT_BID_ASK:
            q = self.server.market.quote(inst.con_id)
            session.send(out.tbt_bid_ask(req.req_id, q, session.version))
        elif kind is MdKind.TBT_MID_POINT:
            q = self.server.market.quote(inst.con_id)
            session.send(out.tbt_mid_point(req.req_id, q, session.version))

    def cancel_tick_by_tick(self, session: Session, req: rq.CancelTickByTickData) -> None:
        self.server.subs.remove_md(session, req.req_id)

    def req_mkt_depth(self, session: Session, req: rq.ReqMktDepth) -> None:
        if not self._md_guard(session, req.req_id):
            return
        inst = self.resolve(session, req.req_id, req.contract)
        if inst is None:
            return
        rows = max(1, min(int(req.num_rows or 5), 10))
        sub = MdSub(session, req.req_id, MdKind.DEPTH, inst.con_id, is_option(inst), rows=rows)
        self.server.subs.add_md(sub)
        # Start the subscriber from the book the other subscribers of this con_id last got, so
        # the shared diffs that follow apply to what it holds.
        depth_book = self.server.subs.depth_book
        book = depth_book.get(inst.con_id)
        if book is None:
            book, _ = depth_changes({}, self.server.market.depth(inst.con_id, DEPTH_ROWS))
            depth_book[inst.con_id] = book
        send_depth(session, sub, [(row, 0) for row in book.values()])

    def cancel_mkt_depth(self, session: Session, req: rq.CancelMktDepth) -> None:
        self.server.subs.remove_md(session, req.req_id, MdKind.DEPTH)

    def req_real_time_bars(self, session: Session, req: rq.ReqRealTimeBars) -> None:
        if not self._md_guard(session, req.req_id):
            return
        inst = self.resolve(session, req.req_id, req.contract)
        if inst is None:
            return
        sub = MdSub(session, req.req_id, MdKind.RT_BARS, inst.con_id, is_option(inst))
        sub.what = req.what_to_show or "TRADES"
        self.server.subs.add_md(sub)

    def cancel_real_time_bars(self, session: Session, req: rq.CancelRealTimeBars) -> None:
        self.server.subs.remove_md(session, req.req_id, MdKind.RT_BARS)

    def req_historical_data(self, session: Session, req: rq.ReqHistoricalData) -> None:
        """The bars, then (keepUpToDate) a subscription the driver feeds with
        historicalDataUpdate for the bar in progress. Whatever the market cannot serve (a bad
        duration, bar size or whatToShow, too many bars, too far back) is error 162 with the
        reason, as IB's historical data service words it."""
        if req.keep_up_to_date:
            if req.end_date_time.strip():
                session.send_error(req.req_id, ERR_VALIDATING, MSG_LIVE_END_DATE)
                return
            if not self._md_guard(session, req.req_id):
                return
        inst = self.resolve(session, req.req_id, req.contract)
        if inst is None:
            return
        try:
            duration_s = parse_duration(req.duration)
            bar_s = parse_bar_size(req.bar_size)
            end = rq.parse_ib_time(req.end_date_time) if req.end_date_time else None
        except ValueError as e:
            session.send_error(req.req_id, ERR_HIST, MSG_HIST.format(reason=str(e)))
            return
        now = self.now()
        end = min(end or now, now)
        what = (req.what_to_show or "TRADES").upper()
        market = self.server.market
        try:
            bars = market.history(inst.con_id, end, duration_s, bar_s, what)
        except HistoryError as e:
            session.send_error(req.req_id, ERR_HIST, MSG_HIST.format(reason=str(e)))
            return
        start = end - timedelta(seconds=duration_s)
        format_date = req.format_date or 1
        session.send(
            out.historical_data(req.req_id, bars, start, end, format_date, bar_s, session.version)
        )
        if req.keep_up_to_date:
            # The market closes 5-second bars for underlyings only; an option's updates follow
            # its underlying's bars (its own bars are priced from them anyway).
            follow = self.server.catalog.underlying_of(inst).con_id
            sub = MdSub(
                session,
                req.req_id,
                MdKind.HIST,
                follow,
                is_option(inst),
                what=what,
                bar_s=bar_s,
                format_date=format_date,
                bars_of=inst.con_id,
            )
            self.server.subs.add_md(sub)

    def cancel_historical_data(self, session: Session, req: rq.CancelHistoricalData) -> None:
        self.server.subs.remove_md(session, req.req_id, MdKind.HIST)

    # ---------------------------------------------------------------------------------------------
    # orders

    def place_order(self, session: Session, req: rq.PlaceOrder) -> None:
        """Resolve the contract like TWS does (symbol/expiry/strike/right → conId), then hand
        the order to the venue and route what it says at once."""
        request = req.request
        if request.sec_type is not SecType.BAG and not request.con_id:
            inst = self.resolve(session, req.order_id, req.contract)
            if inst is None:
                return
            req.contract.conId = inst.con_id  # openOrder echoes the resolved contract
            request = replace(request, con_id=inst.con_id, symbol=inst.symbol)
        if getattr(request.raw_order, "whatIf", False):
            # Margins only: one openOrder, nothing rests or trades (`tws_sim.engine.what_if`).
            snap = self.server.venue.what_if(request)
            inst = self.server.catalog.get(request.con_id) if request.con_id else None
            session.send(out.open_order(snap, inst, session.version))
            return
        now = self.now()
        events = self.server.venue.place(request, now)
        self.server.driver.route(events, now)

    def cancel_order(self, session: Session, req: rq.CancelOrder) -> None:
        now = self.now()
        events = self.server.venue.cancel(session.client_id or 0, req.order_id, now)
        self.server.driver.route(events, now)

    def req_global_cancel(self, session: Session, req: rq.ReqGlobalCancel) -> None:
        now = self.now()
        self.server.driver.route(self.server.venue.global_cancel(now), now)

    def _send_orders(self, session: Session, client_id: int | None) -> None:
        v = session.version
        catalog = self.server.catalog
        for snap in self.server.venue.open_orders(client_id):
            session.send(out.open_order(snap, catalog.get(snap.request.con_id), v))
            session.send(out.order_status(snap, v))
        session.send(out.open_order_end(v))

    def req_open_orders(self, session: Session, req: rq.ReqOpenOrders) -> None:
        cid = session.client_id or 0
        # Client 0 sees every API client's orders (it is where TWS binds manual orders too).
        self._send_orders(session, None if cid == 0 else cid)

    def req_all_open_orders(self, session: Session, req: rq.ReqAllOpenOrders) -> None:
        self._send_orders(session, None)

    def req_auto_open_orders(self, session: Session, req: rq.ReqAutoOpenOrders) -> None:
        if session.client_id != 0:
            session.send_error(
                -1,
                ERR_VALIDATING,
                "Error validating request:-'bd' : cause - "
                "reqAutoOpenOrders can only be called from client id 0",
            )
            return
        session.auto_open_orders = bool(req.auto_bind)
        if session.auto_open_orders:
            self._send_orders(session, None)

    def req_completed_orders(self, session: Session, req: rq.ReqCompletedOrders) -> None:
        v = session.version
        catalog = self.server.catalog
        for snap in self.server.venue.completed_orders():
            session.send(out.completed_order(snap, catalog.get(snap.request.con_id), v))
        session.send(out.completed_orders_end(v))

    def req_executions(self, session: Session, req: rq.ReqExecutions) -> None:
        """execDetails + commissionReport for every execution of this session day that passes
        the filter, then execDetailsEnd. Includes fills made while the client was away."""
        server = self.server
        f = req.filter
        v = session.version
        want_client = int(f.clientId or 0)
        acct = (f.acctCode or "").strip()
        symbol = (f.symbol or "").strip().upper()
        sec_type = (f.secType or "").strip().upper()
        exchange = (f.exchange or "").strip().upper()
        side = (f.side or "").strip().upper()
        side = {"BUY": "BOT", "SELL": "SLD"}.get(side, side)
        for ex, report in server.venue.executions(req.since):
            if want_client and ex.client_id != want_client:
                continue
            if acct and ex.account != acct:
                continue
            if symbol and ex.symbol != symbol:
                continue
            if sec_type and ex.sec_type.value != sec_type:
                continue
            if exchange and ex.exchange.upper() != exchange:
                continue
            if side and ex.side != side:
                continue
            inst = server.catalog.get(ex.con_id)
            session.send(out.exec_details(req.req_id, ex, inst, v))
            if report is not None:
                session.send(out.commission_report(report, v))
        session.send(out.exec_details_end(req.req_id, v))

    # ---------------------------------------------------------------------------------------------
    # account side

    def _account_sub(self, session: Session, req_id: int, kind: str, **kw: Any) -> AccountSub:
        sub = AccountSub(session=session, req_id=req_id, kind=kind, **kw)
        self.server.subs.add_account(sub)
        return sub

    def req_positions(self, session: Session, req: rq.ReqPositions) -> None:
        server = self.server
        v = session.version
        for inst, qty, avg_cost in server.venue.positions():
            session.send(out.position(server.account, inst, qty, avg_cost, v))
        session.send(out.position_end(v))
        self._account_sub(session, -1, "positions")

    def cancel_positions(self, session: Session, req: rq.CancelPositions) -> None:
        self.server.subs.remove_account(session, -1, "positions")

    def req_positions_multi(self, session: Session, req: rq.ReqPositionsMulti) -> None:
        server = self.server
        v = session.version
        if req.account and req.account != server.account:
            session.send(out.position_multi_end(req.req_id, v))
            return
        for inst, qty, avg_cost in server.venue.positions():
            session.send(
                out.position_multi(
                    req.req_id, server.account, req.model_code, inst, qty, avg_cost, v
                )
            )
        session.send(out.position_multi_end(req.req_id, v))
        self._account_sub(session, req.req_id, "positions_multi", model=req.model_code)

    def cancel_positions_multi(self, session: Session, req: rq.CancelPositionsMulti) -> None:
        self.server.subs.remove_account(session, req.req_id, "positions_multi")

    def req_account_summary(self, session: Session, req: rq.ReqAccountSummary) -> None:
        server = self.server
        tags = tuple(t.strip() for t in req.tags.split(",") if t.strip())
        sub = self._account_sub(session, req.req_id, "summary", tags=tags)
        send_account_summary(
            session, sub, server.account, server.venue.account_values(self.now()), full=True
        )

    def cancel_account_summary(self, session: Session, req: rq.CancelAccountSummary) -> None:
        self.server.subs.remove_account(session, req.req_id, "summary")

    def req_account_updates(self, session: Session, req: rq.ReqAccountUpdates) -> None:
        server = self.server
        if not req.subscribe:
            server.subs.remove_account(session, -1, "updates")
            return
        now = self.now()
        v = session.version
        sub = self._account_sub(session, -1, "updates", account=server.account)
        send_account_values(session, server.account, server.venue.account_values(now), sub, v, True)
        rows = portfolio_rows(server.venue, server.market, now)
        for row in rows.values():
            send_portfolio_row(session, server.account, row)
        sub.last_push = {con_id: row.values() for con_id, row in rows.items()}
        session.send(out.update_account_time(now, v))
        session.send(out.account_download_end(server.account, v))

    def req_account_updates_multi(self, session: Session, req: rq.ReqAccountUpdatesMulti) -> None:
        server = self.server
        sub = self._account_sub(
            session, req.req_id, "updates_multi", account=server.account, model=req.model_code
        )
        send_account_multi(
            session, sub, server.account, server.venue.account_values(self.now()), full=True
        )

    def cancel_account_updates_multi(
        self, session: Session, req: rq.CancelAccountUpdatesMulti
    ) -> None:
        self.server.subs.remove_account(session, req.req_id, "updates_multi")

    def req_pnl(self, session: Session, req: rq.ReqPnL) -> None:
        values = tuple(self.server.venue.pnl(self.now()))
        sub = self._account_sub(session, req.req_id, "pnl", account=req.account)
        sub.last_pnl = rounded(values)
        session.send(out.pnl(req.req_id, values, session.version))

    def cancel_pnl(self, session: Session, req: rq.CancelPnL) -> None:
        self.server.subs.remove_account(session, req.req_id, "pnl")

    def req_pnl_single(self, session: Session, req: rq.ReqPnLSingle) -> None:
        sub = self._account_sub(
            session, req.req_id, "pnl_single", account=req.account, con_id=req.con_id
        )
        values = self.server.venue.pnl_single(req.con_id, self.now())
        if values is None:
            if self.server.catalog.get(req.con_id) is None:
                self.server.subs.remove_account(session, req.req_id, "pnl_single")
                session.send_error(req.req_id, ERR_NO_SECURITY, MSG_NO_SECURITY)
            return
        sub.last_pnl = rounded(tuple(values))
        session.send(out.pnl_single(req.req_id, tuple(values), session.version))

    def cancel_pnl_single(self, session: Session, req: rq.CancelPnLSingle) -> None:
        self.server.subs.remove_account(session, req.req_id, "pnl_single")


def _strike(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        d = Decimal(str(value))
    except ArithmeticError:
        return None
    if not d.is_finite() or d >= Decimal("1E300") or d == 0:
        return None
    return d
