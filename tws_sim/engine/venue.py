"""The venue: matching engine + paper account behind IB's order semantics.

Every public method takes the simulated `now` and returns the `VenueEvent`s the server must deliver,
in delivery order. The venue never reads a clock and draws no random numbers: the same market path
and the same order flow at the same simulated times give the same executions and ids.

Fill model (decided where IB's behaviour is not observable from the API):
- a marketable order walks the displayed book level by level (one execution per level); what it
  takes is remembered until the quote changes, so two orders in the same instant do not both take
  the same displayed size;
- a resting limit (or pegged) order fills when the quote crosses it (taking, at the book's
  prices) or passively, at its own price, from trade prints at or through it (sharing the print's
  size with other resting orders, oldest first);
- stops and trails watch the last trade price (the mid before the first trade);
- MOC / LOC fill at the close auction (the session's last price) when the session closes, OPG at
  the next open; DAY orders then expire, and the day's options (see `tws_sim.engine.sessions`);
- combos (BAG) fill in whole combo units: as many as the displayed size at every leg's touch
  allows (size / ratio, the thinnest leg decides; a scenario may cap the units per execution),
  the rest on later quotes. Each fill is one execution per leg (ratio x units at the leg's touch)
  then the BAG's own execution for the units at the net price (conId 28812380, IB's id for USD
  combos); legs carry commissions, the BAG's report carries 0; orderStatus counts combo units.

The class is split by concern over the modules of this package (`tws_sim.engine.core` lists
them); this module holds the public API: orders in, queries, and the construction of the parts.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tws_sim.engine.entry import OrderEntry
from tws_sim.engine.fees import CommissionFn
from tws_sim.engine.fills import BAG_CON_ID
from tws_sim.engine.orders import (
    AUCTION_CLOSE_TYPES,
    CLOSE_AUCTION_CANCEL_CUTOFF_S,
    ERR_CANCEL_DONE,
    ERR_CANCEL_UNKNOWN,
    ERR_DUPLICATE_ID,
    ERR_MODIFY_FILLED,
    ERR_NOT_CANCELLABLE,
    MSG_DUPLICATE_ID,
    MSG_MODIFY_FILLED,
    WorkingOrder,
    msg_cancel_done,
    msg_cancel_unknown,
    msg_not_cancellable,
)
from tws_sim.engine.persistence import JOURNAL_FILE, Journal
from tws_sim.engine.rules import VenueRules
from tws_sim.engine.sessions import Sessions
from tws_sim.engine.snapshots import Snapshots
from tws_sim.engine.what_if import WhatIf
from tws_sim.types import (
    CommissionReport,
    Execution,
    Instrument,
    OrderRequest,
    OrderSnapshot,
    OrderStatusName,
    QuoteChanged,
    SecType,
    TradePrinted,
    VenueError,
    VenueEvent,
)

__all__ = ["BAG_CON_ID", "Venue"]

ZERO = Decimal(0)
CENT = Decimal("0.01")
_FILLED = OrderStatusName.FILLED


class Venue(OrderEntry, Sessions, Snapshots, WhatIf):
    """IB-like matching engine and paper account for one account (see module docstring)."""

    def __init__(
        self,
        catalog: Any,
        market: Any,
        scenario: object | None,
        account: str = "DU1234567",
        state_dir: Path | None = None,
        exec_log: Path | None = None,
        *,
        rules: VenueRules | None = None,
        commission_fn: CommissionFn | None = None,
        start: datetime | None = None,
        incarnation: int = 0,
    ) -> None:
        """`VenueCore` sets up every part; with a state directory the saved day is then restored."""
        super().__init__(
            catalog,
            market,
            scenario,
            account,
            state_dir,
            exec_log,
            rules=rules,
            commission_fn=commission_fn,
            start=start,
            incarnation=incarnation,
        )
        # Last, once every part is set up: a state directory's journals bring the day back.
        if state_dir is not None:
            self._journal = Journal(state_dir / JOURNAL_FILE)
            self._restore(state_dir, self._journal)

    # ---------------------------------------------------------------------------------------------
    # Orders in

    def place(self, req: OrderRequest, now: datetime) -> list[VenueEvent]:
        """A placeOrder: a new order, or a modification of a working one with the same id.

        As at IB, a new order's id must exceed every id the client used before: an unknown id
        at or below that is 103 (duplicate order id). A placeOrder for a finished id is a
        modification of a finished order: 104 for a filled one, 103 for a cancelled or
        rejected one (IB answers a reused id of a dead order so).
        """
        out: list[VenueEvent] = []
        key = (req.client_id, req.order_id)
        highest = self._max_id.get(req.client_id, 0)
        existing = self._orders.get(key)
        if existing is None and req.order_id <= highest:
            out.append(VenueError(req.client_id, req.order_id, ERR_DUPLICATE_ID, MSG_DUPLICATE_ID))
            return out
        if req.order_id > highest:
            self._max_id[req.client_id] = req.order_id
            self._dirty = True
        if existing is None:
            self._new(req, now, out)
        elif existing.done and existing.status == _FILLED:
            out.append(
                VenueError(req.client_id, req.order_id, ERR_MODIFY_FILLED, MSG_MODIFY_FILLED)
            )
        elif existing.done:
            out.append(VenueError(req.client_id, req.order_id, ERR_DUPLICATE_ID, MSG_DUPLICATE_ID))
        else:
            self._modify(existing, req, now, out)
        self._persist()
        return out

    def cancel(self, client_id: int, order_id: int, now: datetime) -> list[VenueEvent]:
        """A cancelOrder: 202 + Cancelled, or 10147 (unknown id) / 10148 (already done)."""
        out: list[VenueEvent] = []
        order = self._orders.get((client_id, order_id))
        if order is None:
            out.append(
                VenueError(client_id, order_id, ERR_CANCEL_UNKNOWN, msg_cancel_unknown(order_id))
            )
        elif order.done:
            out.append(
                VenueError(
                    client_id,
                    order_id,
                    ERR_CANCEL_DONE,
                    msg_cancel_done(order_id, order.status.value),
                )
            )
        elif self._locked_for_close(order, now):
            out.append(
                VenueError(
                    client_id, order_id, ERR_NOT_CANCELLABLE, msg_not_cancellable(order.perm_id)
                )
            )
        else:
            self._cancel(order, now, out, confirm=True)
        self._persist()
        return out

    def _locked_for_close(self, order: WorkingOrder, now: datetime) -> bool:
        """An MOC/LOC order in the closing cross's cancel cutoff cannot be cancelled."""
        if order.req.order_type not in AUCTION_CLOSE_TYPES:
            return False
        close = self._market.session_close(now)
        if close is None:
            return False
        return close - timedelta(seconds=CLOSE_AUCTION_CANCEL_CUTOFF_S) <= now < close

    def global_cancel(self, now: datetime) -> list[VenueEvent]:
        """reqGlobalCancel: every working order of every client is cancelled (202 each), but
        an MOC/LOC order inside the closing cross's cutoff, which the exchange keeps (161)."""
        out: list[VenueEvent] = []
        for order in list(self._orders.values()):
            if order.done:
                continue
            if self._locked_for_close(order, now):
                req = order.req
                out.append(
                    VenueError(
                        req.client_id,
                        req.order_id,
                        ERR_NOT_CANCELLABLE,
                        msg_not_cancellable(order.perm_id),
                    )
                )
                continue
            self._cancel(order, now, out, confirm=True)
        self._persist()
        return out

    def on_market(self, events: list[Any], now: datetime) -> list[VenueEvent]:
        """Let resting orders react to market events; run auctions and expiries due by `now`."""
        out: list[VenueEvent] = []
        self._session_transitions(now, out)
        if self._gtd:
            self._expire_gtd(now, out)
        live = self._live
        for ev in events:
            cls = type(ev)
            if cls is QuoteChanged:
                quote = ev.quote
                book = live.get(quote.con_id)
                if not book:
                    continue
                ask = quote.ask
                bid = quote.bid
                for order in list(book.values()):
                    if order.is_combo:
                        self._work_combo(order, now, out)
                        continue
                    req = order.req
                    lmt = req.lmt_price
                    if lmt is not None and req.order_type == "LMT" and req.tif != "OPG":
                        # hot path: a resting limit the quote does not reach needs nothing
                        if order.buy:
                            if ask <= 0 or ask > lmt:
                                continue
                        elif bid <= 0 or bid < lmt:
                            continue
                    self._work(order, now, out, quote)
            elif cls is TradePrinted:
                book = live.get(ev.con_id)
                if book:
                    quote = self._market.quote(ev.con_id)
                    budget = [ev.size]
                    px = ev.price
                    for order in list(book.values()):
                        if order.is_combo:
                            continue
                        req = order.req
                        lmt = req.lmt_price
                        if lmt is not None and req.order_type == "LMT" and req.tif != "OPG":
                            # hot path: neither the print nor the quote reaches the limit
                            if order.buy:
                                if px > lmt and (quote.ask <= 0 or quote.ask > lmt):
                                    continue
                            elif px < lmt and (quote.bid <= 0 or quote.bid < lmt):
                                continue
                        self._work(order, now, out, quote, ev, budget)
        self._persist()
        return out

    def correct_execution(
        self,
        exec_id: str,
        now: datetime,
        price: Decimal | None = None,
        shares: Decimal | None = None,
    ) -> list[VenueEvent]:
        """Re-issue execution `exec_id` with a corrected price/qty (``.01`` -> ``.02``).

        The correction replaces the original: the account is rebooked from the corrected
        executions, the order's average price follows, and the original drops out of
        `executions()`. Raises `KeyError` for an id that is unknown or already corrected.
        """
        out: list[VenueEvent] = []
        self._correct(exec_id, now, price, shares, out)
        self._persist()
        return out

    # ---------------------------------------------------------------------------------------------
    # Queries

    def open_orders(self, client_id: int | None = None) -> list[OrderSnapshot]:
        """Working orders (of one client, or all with None), in placement order."""
        return [
            o.snapshot()
            for o in self._orders.values()
            if not o.done and (client_id is None or o.req.client_id == client_id)
        ]

    def completed_orders(self) -> list[OrderSnapshot]:
        """Orders that are done (filled, cancelled, rejected), in placement order."""
        return [o.snapshot() for o in self._orders.values() if o.done]

    def order(self, client_id: int, order_id: int) -> OrderSnapshot | None:
        """One order's current snapshot, if the venue knows it."""
        o = self._orders.get((client_id, order_id))
        return o.snapshot() if o is not None else None

    def executions(
        self, since: datetime | None = None
    ) -> list[tuple[Execution, CommissionReport | None]]:
        """Effective executions (corrections replace what they correct) at or after `since`."""
        return [
            (r.execution, r.commission)
            for r in self._execs
            if not r.superseded and not r.kind and (since is None or r.execution.time >= since)
        ]

    def positions(self) -> list[tuple[Instrument, Decimal, Decimal]]:
        """(instrument, qty, avg cost) for every con_id traded (flat ones included, as IB does)."""
        out = []
        for con_id, pos in self._account.positions.items():
            inst = self._inst(con_id)
            if inst is not None:
                out.append((inst, pos.qty, pos.avg_cost))
        return out

    def pnl(self, now: datetime) -> tuple[Decimal, Decimal, Decimal]:
        """(daily, unrealized, realized) like reqPnL.

        The venue's account starts flat with its starting cash, so the day's P&L is realized +
        unrealized since then (commissions included, as IB's dailyPnL).
        """
        unreal = self._account.unrealized(self._marks())
        realized = self._account.realized
        return realized + unreal, unreal, realized

    def pnl_single(
        self, con_id: int, now: datetime
    ) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal] | None:
        """(position, daily, unrealized, realized, value) like reqPnLSingle; None if never held."""
        pos = self._account.positions.get(con_id)
        if pos is None:
            return None
        mark = self._mark(con_id)
        value = mark * pos.multiplier * pos.qty
        unreal = value - pos.cost if pos.qty else ZERO
        return pos.qty, pos.realized + unreal, unreal, pos.realized, value

    def account_values(self, now: datetime) -> dict[str, tuple[str, str]]:
        """Account summary tags (reqAccountSummary / reqAccountUpdates), values as strings.

        Margin model (a plain Reg-T paper account): stocks 50 % initial / 25 % maintenance of
        market value, long options paid in full (no margin), short options 100 % of premium + 20 %
        of the underlying's value. Buying power is 4x available funds (day-trading).
        """
        acct = self._account
        gross = ZERO
        stock_value = ZERO
        option_value = ZERO
        init = ZERO
        maint = ZERO
        for con_id, pos in acct.positions.items():
            if not pos.qty:
                continue
            inst = self._inst(con_id)
            mark = self._mark(con_id)
            mv = mark * pos.multiplier * pos.qty
            gross += abs(mv)
            if inst is not None and inst.sec_type == SecType.OPT:
                option_value += mv
                if pos.qty < 0:
                    und = inst.underlying_con_id
                    und_px = self._mark(und) if und else ZERO
                    req = abs(mv) + und_px * pos.multiplier * abs(pos.qty) / 5
                    init += req
                    maint += req
            else:
                stock_value += mv
                init += abs(mv) / 2
                maint += abs(mv) / 4
        net_liq = acct.cash + stock_value + option_value
        ewl = acct.cash + stock_value
        available = ewl - init
        excess = ewl - maint
        cushion = excess / net_liq if net_liq else ZERO
        unreal = acct.unrealized(self._marks())

        def money(v: Decimal) -> tuple[str, str]:
            return (str(v.quantize(CENT)), "USD")

        return {
            "AccountType": ("INDIVIDUAL", ""),
            "NetLiquidation": money(net_liq),
            "TotalCashValue": money(acct.cash),
            "SettledCash": money(acct.cash),
            "AccruedCash": money(ZERO),
            "BuyingPower": money(max(available, ZERO) * 4),
            "AvailableFunds": money(available),
            "ExcessLiquidity": money(excess),
            "InitMarginReq": money(init),
            "MaintMarginReq": money(maint),
            "FullInitMarginReq": money(init),
            "FullMaintMarginReq": money(maint),
            "GrossPositionValue": money(gross),
            "EquityWithLoanValue": money(ewl),
            "RealizedPnL": money(acct.realized),
            "UnrealizedPnL": money(unreal),
            "Cushion": (str(cushion.quantize(Decimal("0.000001"))), ""),
            "StockMarketValue": money(stock_value),
            "OptionMarketValue": money(option_value),
            "Currency": ("USD", "USD"),
        }

    def is_expired(self, inst: Instrument) -> bool:
        """Whether `inst` is an option whose expiry the venue has processed (gone, as at IB)."""
        return self._expired(inst)

    @property
    def expired_through(self) -> date | None:
        """The last expiry date whose options have expired (None before the first close)."""
        return self._expired_through

    def next_order_id(self, client_id: int) -> int:
        """Per-client next valid id: the highest order id seen from the client + 1."""
        return self._max_id.get(client_id, 0) + 1

    def close(self) -> None:
        """Close the exec log and the execution journal (every line is already flushed)."""
        if self._log is not None:
            self._log.close()
        for journal in (self._journal, self._order_journal):
            if journal is not None:
                journal.close()
