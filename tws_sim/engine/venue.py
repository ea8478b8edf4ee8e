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
  the next open; DAY orders then expire;
- combos (BAG) fill atomically: one execution per leg at the leg's touch, then the BAG's own
  execution at the net price (conId 28812380, IB's id for USD combos); legs carry commissions, the
  BAG's report carries 0.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from tws_sim.engine.account import Account
from tws_sim.engine.execids import ExecIdGenerator, PermIds, corrected_id
from tws_sim.engine.execlog import ExecLog
from tws_sim.engine.fees import CommissionFn, default_commission_fn
from tws_sim.engine.matching import (
    Increment,
    combo_prices,
    crosses,
    on_tick,
    peg_price,
    plan_take,
    reference_price,
    side_levels,
    stop_hit,
    trail_stop,
)
from tws_sim.engine.orders import (
    AUCTION_CLOSE_TYPES,
    CLOSE_AUCTION_CANCEL_CUTOFF_S,
    ERR_BAD_TICK,
    ERR_CANCEL_DONE,
    ERR_CANCEL_UNKNOWN,
    ERR_CANCELLED,
    ERR_DUPLICATE_ID,
    ERR_HALTED,
    ERR_MODIFY_FILLED,
    ERR_MODIFY_MISMATCH,
    ERR_NO_SECURITY,
    ERR_NOT_CANCELLABLE,
    ERR_REJECTED,
    ERR_VALIDATION,
    LIMIT_PRICE_TYPES,
    MSG_BAD_TICK,
    MSG_CANCELLED,
    MSG_DUPLICATE_ID,
    MSG_HALTED,
    MSG_MODIFY_FILLED,
    MSG_MODIFY_MISMATCH,
    MSG_NO_SECURITY,
    ORDER_TYPES,
    PEG_TYPES,
    STOP_TYPES,
    TIFS,
    WorkingOrder,
    msg_cancel_done,
    msg_cancel_unknown,
    msg_not_cancellable,
    msg_rejected,
    msg_validation,
)
from tws_sim.engine.persistence import (
    JOURNAL_FILE,
    ORDERS_PREFIX,
    STATE_VERSION,
    Journal,
    decode_commission,
    decode_execution,
    decode_request,
    encode_commission,
    encode_execution,
    encode_request,
    load_state,
    save_state,
)
from tws_sim.engine.rules import VenueRules
from tws_sim.market.catalog import price_increment
from tws_sim.types import (
    Commissioned,
    CommissionReport,
    Executed,
    Execution,
    HaltState,
    Instrument,
    OrderChanged,
    OrderRequest,
    OrderSnapshot,
    OrderStatusName,
    PositionChanged,
    Quote,
    QuoteChanged,
    SecType,
    TradePrinted,
    VenueError,
    VenueEvent,
)

ZERO = Decimal(0)
CENT = Decimal("0.01")
DEPTH_ROWS = 10
BAG_CON_ID = 28812380  # IB reports USD combo executions under this conId
_SUBMITTED = OrderStatusName.SUBMITTED
_PRE = OrderStatusName.PRE_SUBMITTED
_FILLED = OrderStatusName.FILLED
_CANCELLED = OrderStatusName.CANCELLED

Key = tuple[int, int]
# L2 market-maker codes that differ from the exchange name IB puts on executions
_EXEC_EXCHANGE = {"NSDQ": "ISLAND"}


class _ExecRec:
    """An execution as the venue keeps it: the report, its commission, and how to book it."""

    __slots__ = ("commission", "execution", "multiplier", "superseded")

    def __init__(
        self,
        execution: Execution,
        commission: CommissionReport | None,
        multiplier: int,
        superseded: bool = False,
    ) -> None:
        self.execution = execution
        self.commission = commission
        self.multiplier = multiplier
        self.superseded = superseded


class Venue:
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
        self._catalog = catalog
        self._market = market
        if rules is None:
            start = start if start is not None else getattr(market, "start", None)
            rules = VenueRules.from_scenario(scenario, start)
        self._rules = rules
        self._corr_counts = [0] * len(rules.corrections)
        self._account_id = account
        self._commission_fn = commission_fn or default_commission_fn()
        self._state_dir = state_dir
        self._log = ExecLog(exec_log) if exec_log is not None else None
        self._orders: dict[Key, WorkingOrder] = {}
        self._live: dict[int, dict[Key, WorkingOrder]] = {}
        self._gtd: dict[Key, WorkingOrder] = {}
        self._oca: dict[str, list[Key]] = {}
        self._children: dict[Key, list[Key]] = {}
        self._held: dict[Key, list[Key]] = {}
        self._max_id: dict[int, int] = {}
        # Ids are unique per incarnation (see `execids`); a restored state carries its own.
        self._perm = PermIds.for_incarnation(incarnation)
        self._exec_ids = ExecIdGenerator(incarnation=incarnation)
        self._execs: list[_ExecRec] = []
        self._exec_index: dict[str, int] = {}
        self._account = Account(self._rules.starting_cash)
        self._volume: dict[SecType, Decimal] = {}
        self._taken: dict[int, tuple[datetime, dict[tuple[bool, Decimal], Decimal]]] = {}
        self._was_open: bool | None = None
        self._open_cache: tuple[datetime | None, bool] = (None, False)
        self._exec_seq = 0
        self._inst_cache: dict[int, Instrument] = {}
        self._realized_cache: dict[str, Decimal | None] = {}
        self._dirty = False
        self._journal: Journal | None = None
        self._order_journal: Journal | None = None
        self._order_gen = 0
        self._dirty_orders: dict[Key, WorkingOrder] = {}
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
            if not r.superseded and (since is None or r.execution.time >= since)
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

    # ---------------------------------------------------------------------------------------------
    # New orders, modifications, cancels

    def _new(self, req: OrderRequest, now: datetime, out: list[VenueEvent]) -> None:
        multiplier = 1
        con_ids: list[int]
        if req.sec_type == SecType.BAG:
            con_ids = [leg.con_id for leg in req.combo_legs]
            if not con_ids or any(self._inst(c) is None for c in con_ids):
                out.append(
                    VenueError(req.client_id, req.order_id, ERR_NO_SECURITY, MSG_NO_SECURITY)
                )
                return
            inst = None
        else:
            inst = self._inst(req.con_id)
            route = req.route
            if inst is None or (route and route != "SMART" and route not in inst.valid_exchanges):
                # IB answers an unknown contract, or one not listed on the chosen route, with 200
                out.append(
                    VenueError(req.client_id, req.order_id, ERR_NO_SECURITY, MSG_NO_SECURITY)
                )
                return
            con_ids = [req.con_id]
            multiplier = inst.multiplier
        order = WorkingOrder(req, self._perm.next_id(), multiplier)
        self._orders[order.key] = order
        self._dirty = True
        self._dirty_orders[order.key] = order
        problem = self._validate(req, inst)
        if problem is None and req.account and req.account != self._account_id:
            problem = (ERR_VALIDATION, msg_validation(f"Invalid account code {req.account!r}"))
        if problem is None and any(
            self._market.halt_state(c) != HaltState.TRADING for c in con_ids
        ):
            problem = (ERR_HALTED, MSG_HALTED)
        if problem is None:
            problem = self._reject_rule(req, inst, now)
        parent: WorkingOrder | None = None
        if problem is None and req.parent_id:
            parent = self._orders.get((req.client_id, req.parent_id))
            if parent is None:
                problem = (ERR_VALIDATION, msg_validation("Parent order not found"))
            elif parent.status == _CANCELLED or parent.status == OrderStatusName.API_CANCELLED:
                problem = (ERR_REJECTED, msg_rejected("Parent order is being cancelled."))
        if problem is not None:
            self._reject(order, problem[0], problem[1], now, out)
            return
        if parent is not None:
            self._children.setdefault(parent.key, []).append(order.key)
        if req.oca_group:
            self._oca.setdefault(req.oca_group, []).append(order.key)
        root: Key = (req.client_id, req.parent_id or req.order_id)
        if not req.transmit:
            order.held = True
            order.status = _PRE
            self._held.setdefault(root, []).append(order.key)
            self._emit(order, now, out)
            return
        self._release(root, order, now, out)

    def _release(
        self, root: Key, trigger: WorkingOrder | None, now: datetime, out: list[VenueEvent]
    ) -> None:
        """Transmit a group: the held orders of `root` (parent first) and `trigger`."""
        members = [self._orders[k] for k in self._held.pop(root, [])]
        if trigger is not None and trigger not in members:
            members.append(trigger)
        members.sort(key=lambda o: (o.key != root, o.req.order_id))
        for o in members:
            if not o.done:
                self._activate(o, now, out)

    def _activate(self, order: WorkingOrder, now: datetime, out: list[VenueEvent]) -> None:
        order.held = False
        req = order.req
        if req.parent_id:
            parent = self._orders.get((req.client_id, req.parent_id))
            if parent is not None and parent.status != _FILLED:
                order.waiting_parent = True
                order.status = _PRE
                self._emit(order, now, out)
                return
        order.waiting_parent = False
        order.status = _PRE if self._waits(order, now) else _SUBMITTED
        self._index(order)
        self._emit(order, now, out)
        if req.tif == "FOK" and not self._fok_fillable(order, now):
            self._expire(order, now, out)
            return
        if order.is_combo:
            self._work_combo(order, now, out)
        else:
            self._work(order, now, out)
        if req.tif in ("IOC", "FOK") and not order.done:
            self._expire(order, now, out)

    def _waits(self, order: WorkingOrder, now: datetime) -> bool:
        """PreSubmitted (held by the venue) rather than Submitted: an untriggered stop, an
        auction order, or a regular-hours order outside regular hours."""
        req = order.req
        return (
            not order.triggered
            or req.tif == "OPG"
            or req.order_type in AUCTION_CLOSE_TYPES
            or (not req.outside_rth and not self._open(now))
        )

    def _modify(
        self, order: WorkingOrder, req: OrderRequest, now: datetime, out: list[VenueEvent]
    ) -> None:
        old = order.req
        if (
            req.con_id != old.con_id
            or req.action != old.action
            or req.sec_type != old.sec_type
            or req.combo_legs != old.combo_legs
        ):
            out.append(
                VenueError(req.client_id, req.order_id, ERR_MODIFY_MISMATCH, MSG_MODIFY_MISMATCH)
            )
            return
        inst = None if req.sec_type == SecType.BAG else self._inst(req.con_id)
        problem = self._validate(req, inst)
        if problem is None and req.total_qty < order.filled:
            problem = (
                ERR_REJECTED,
                msg_rejected("The order quantity cannot be less than the quantity already filled."),
            )
        if problem is not None:
            out.append(VenueError(req.client_id, req.order_id, problem[0], problem[1]))
            return
        order.req = req
        self._dirty = True
        self._dirty_orders[order.key] = order
        if req.order_type != old.order_type:
            order.triggered = req.order_type not in STOP_TYPES
            order.trail_stop = None
            order.trail_extreme = None
            order.peg_price = None
        elif (
            req.order_type in STOP_TYPES
            and not order.triggered
            and (req.aux_price != old.aux_price or req.trailing_percent != old.trailing_percent)
        ):
            order.trail_stop = None
        self._gtd.pop(order.key, None)
        if req.tif == "GTD" and req.good_till is not None and not order.held:
            self._gtd[order.key] = order
        if order.remaining <= 0:
            self._complete(order, _FILLED, now)
            self._emit(order, now, out)
            self._after_fill(order, ZERO, now, out)
            return
        if order.held and req.transmit:
            self._emit(order, now, out)
            self._release((req.client_id, req.parent_id or req.order_id), order, now, out)
            return
        if not order.held and not order.waiting_parent:
            order.status = _PRE if self._waits(order, now) else _SUBMITTED
        self._emit(order, now, out)
        if not order.held and not order.waiting_parent:
            if order.is_combo:
                self._work_combo(order, now, out)
            else:
                self._work(order, now, out)

    def _cancel(
        self, order: WorkingOrder, now: datetime, out: list[VenueEvent], confirm: bool
    ) -> None:
        """Cancel `order` (+ its bracket children); `confirm` adds IB's error 202."""
        self._complete(order, _CANCELLED, now)
        self._emit(order, now, out, open_order=False)
        if confirm:
            out.append(
                VenueError(order.req.client_id, order.req.order_id, ERR_CANCELLED, MSG_CANCELLED)
            )
        for ck in self._children.get(order.key, ()):
            child = self._orders[ck]
            if not child.done:
                self._cancel(child, now, out, confirm)

    def _expire(self, order: WorkingOrder, now: datetime, out: list[VenueEvent]) -> None:
        """IOC remainder / FOK miss / DAY or GTD expiry: Cancelled without a 202."""
        self._cancel(order, now, out, confirm=False)

    def _reject(
        self, order: WorkingOrder, code: int, message: str, now: datetime, out: list[VenueEvent]
    ) -> None:
        out.append(VenueError(order.req.client_id, order.req.order_id, code, message))
        self._complete(order, _CANCELLED, now)
        self._emit(order, now, out, open_order=False)

    def _validate(self, req: OrderRequest, inst: Instrument | None) -> tuple[int, str] | None:
        ot = req.order_type
        if ot not in ORDER_TYPES:
            return ERR_VALIDATION, msg_validation(f"Unsupported order type {ot!r}")
        if req.tif not in TIFS:
            return ERR_VALIDATION, msg_validation(f"Unsupported time in force {req.tif!r}")
        if req.action not in ("BUY", "SELL"):
            return ERR_VALIDATION, msg_validation(f"Invalid action {req.action!r}")
        if req.total_qty <= 0:
            return ERR_VALIDATION, msg_validation("The order quantity must be positive")
        if req.tif == "GTD" and req.good_till is None:
            return ERR_VALIDATION, msg_validation("GTD order without a good-till time")
        if req.sec_type == SecType.BAG:
            if ot not in ("MKT", "LMT"):
                return ERR_VALIDATION, msg_validation(f"Order type {ot} is not valid for a combo")
            if ot == "LMT" and req.lmt_price is None:
                return ERR_VALIDATION, msg_validation("Missing limit price")
            return None
        if ot in LIMIT_PRICE_TYPES and (req.lmt_price is None or req.lmt_price <= 0):
            return ERR_VALIDATION, msg_validation("Missing or invalid limit price")
        if ot in ("STP", "STP LMT") and (req.aux_price is None or req.aux_price <= 0):
            return ERR_VALIDATION, msg_validation("Missing or invalid stop price")
        if ot in ("TRAIL", "TRAIL LIMIT") and not (
            (req.aux_price is not None and req.aux_price > 0)
            or (req.trailing_percent is not None and req.trailing_percent > 0)
        ):
            return ERR_VALIDATION, msg_validation("Missing trailing amount or percent")
        prices: list[Decimal | None] = []
        if ot in LIMIT_PRICE_TYPES or (ot in PEG_TYPES and req.lmt_price):
            prices.append(req.lmt_price)
        if ot in ("STP", "STP LMT"):
            prices.append(req.aux_price)
        if ot in ("TRAIL", "TRAIL LIMIT"):
            prices.append(req.trail_stop_price)
        for p in prices:
            if p is not None and inst is not None and not on_tick(p, price_increment(inst, p)):
                return ERR_BAD_TICK, MSG_BAD_TICK
        return None

    def _reject_rule(
        self, req: OrderRequest, inst: Instrument | None, now: datetime
    ) -> tuple[int, str] | None:
        rules = self._rules
        if req.sec_type == SecType.BAG:
            symbols = {i.symbol for leg in req.combo_legs if (i := self._inst(leg.con_id))}
            for combo in rules.combos:
                if combo.window.contains(now) and (
                    not combo.symbols or symbols.intersection(combo.symbols)
                ):
                    return combo.code, combo.message
            return None
        if inst is None:
            return None
        for rule in rules.rejects:
            if not rule.window.contains(now) or (rule.symbol and rule.symbol != inst.symbol):
                continue
            if rule.max_qty is not None and req.total_qty > rule.max_qty:
                return rule.code, rule.message or msg_rejected(
                    f"The order size ({req.total_qty}) exceeds the maximum order size "
                    f"({rule.max_qty}) allowed for this account."
                )
            if rule.max_notional is not None:
                price = req.lmt_price or self._mark(req.con_id)
                notional = req.total_qty * price * inst.multiplier
                if notional > rule.max_notional:
                    return rule.code, rule.message or msg_rejected(
                        "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR "
                        f"EQUITY WITH LOAN VALUE [{self._account.cash.quantize(CENT)} USD] MUST "
                        f"EXCEED THE INITIAL MARGIN [{(notional / 2).quantize(CENT)} USD]"
                    )
        return None

    # ---------------------------------------------------------------------------------------------
    # Matching

    def _work(
        self,
        order: WorkingOrder,
        now: datetime,
        out: list[VenueEvent],
        quote: Quote | None = None,
        trade: TradePrinted | None = None,
        budget: list[Decimal] | None = None,
    ) -> None:
        """Give one single-contract order its chance against the current market."""
        if order.done or order.held or order.waiting_parent:
            return
        req = order.req
        con = req.con_id
        ot = req.order_type
        if ot in AUCTION_CLOSE_TYPES or req.tif == "OPG":
            return
        if not req.outside_rth and not self._open(now):
            return
        if self._market.halt_state(con) != HaltState.TRADING:
            return
        if quote is None:
            quote = self._market.quote(con)
        buy = order.buy
        inst = self._inst(con)
        # IB's price-dependent increment (e.g. $0.05 for options >= $3 outside the penny classes),
        # taken at the price being rounded (a stop or peg), never at the quote it follows.
        tick = _increment_of(inst)
        if not order.triggered:
            ref = trade.price if trade is not None else reference_price(quote)
            if ot == "TRAIL" or ot == "TRAIL LIMIT":
                stop = self._update_trail(order, ref, tick)
            else:
                stop = req.aux_price
            if stop is None or not stop_hit(buy, stop, ref):
                return
            order.triggered = True
            self._dirty = True
            self._dirty_orders[order.key] = order
            if ot == "TRAIL LIMIT":
                off = req.lmt_price or ZERO
                order.peg_price = stop + off if buy else stop - off
            if order.status != _SUBMITTED:
                order.status = _SUBMITTED
                self._emit(order, now, out, open_order=False)
        if ot == "MKT" or ot == "STP" or ot == "TRAIL":
            limit: Decimal | None = None
        elif ot in PEG_TYPES:
            limit = peg_price(ot, buy, quote, req.aux_price, req.lmt_price, tick)
            if limit is None:
                return
            order.peg_price = limit
        elif ot == "TRAIL LIMIT":
            limit = order.peg_price
        else:
            limit = req.lmt_price
        if limit is None:
            self._take(order, quote, None, now, out)
        else:
            touch = quote.ask if buy else quote.bid
            if touch > 0 and crosses(buy, limit, touch):
                self._take(order, quote, limit, now, out)
            if (
                trade is not None
                and budget is not None
                and not order.done
                and budget[0] > 0
                and crosses(buy, limit, trade.price)
            ):
                qty = min(order.remaining, budget[0])
                budget[0] -= qty
                self._fill(order, qty, limit, now, out, 1, trade.exchange)

    def _update_trail(self, order: WorkingOrder, ref: Decimal, tick: Increment) -> Decimal | None:
        """Move a trailing stop with a new extreme (never against the order); return the stop."""
        req = order.req
        buy = order.buy
        ext = order.trail_extreme
        moved = False
        if ref > 0 and (ext is None or (ref < ext if buy else ref > ext)):
            order.trail_extreme = ext = ref
            moved = True
        if ext is None or not (moved or order.trail_stop is None):
            return order.trail_stop
        new_stop = trail_stop(buy, ext, req.aux_price, req.trailing_percent, tick)
        cur = order.trail_stop
        if cur is None and req.trail_stop_price:
            cur = req.trail_stop_price
        if cur is None or (new_stop < cur if buy else new_stop > cur):
            cur = new_stop
        if cur != order.trail_stop:
            order.trail_stop = cur
            self._dirty = True
            self._dirty_orders[order.key] = order
        return cur

    def _levels(
        self, con: int, quote: Quote, buy: bool
    ) -> tuple[list[tuple[Decimal, Decimal, str]], dict[tuple[bool, Decimal], Decimal]]:
        """The opposite side net of what earlier orders took from this quote."""
        taken_entry = self._taken.get(con)
        if taken_entry is None or taken_entry[0] != quote.ts:
            taken: dict[tuple[bool, Decimal], Decimal] = {}
            self._taken[con] = (quote.ts, taken)
        else:
            taken = taken_entry[1]
        levels = side_levels(self._market.depth(con, DEPTH_ROWS), quote, buy)
        if taken:
            levels = [
                (p, s - taken.get((buy, p), ZERO), mm)
                for p, s, mm in levels
                if s - taken.get((buy, p), ZERO) > 0
            ]
        return levels, taken

    def _take(
        self,
        order: WorkingOrder,
        quote: Quote,
        limit: Decimal | None,
        now: datetime,
        out: list[VenueEvent],
    ) -> None:
        buy = order.buy
        levels, taken = self._levels(order.req.con_id, quote, buy)
        for price, qty, mm in plan_take(levels, buy, limit, order.remaining):
            if order.done:
                break
            taken[(buy, price)] = taken.get((buy, price), ZERO) + qty
            self._fill(order, qty, price, now, out, 2, mm)

    def _fok_fillable(self, order: WorkingOrder, now: datetime) -> bool:
        req = order.req
        if order.is_combo:
            return self._combo_price_ok(order, now) is not None
        if req.order_type not in ("MKT", "LMT") or (not req.outside_rth and not self._open(now)):
            return False
        if self._market.halt_state(req.con_id) != HaltState.TRADING:
            return False
        quote = self._market.quote(req.con_id)
        levels, _ = self._levels(req.con_id, quote, order.buy)
        limit = req.lmt_price if req.order_type == "LMT" else None
        got = sum((q for _, q, _ in plan_take(levels, order.buy, limit, order.remaining)), ZERO)
        return got >= order.remaining

    def _combo_price_ok(
        self, order: WorkingOrder, now: datetime
    ) -> tuple[Decimal, list[tuple[bool, Decimal]]] | None:
        req = order.req
        if not req.outside_rth and not self._open(now):
            return None
        legs = req.combo_legs
        if any(self._market.halt_state(leg.con_id) != HaltState.TRADING for leg in legs):
            return None
        priced = combo_prices(legs, [self._market.quote(leg.con_id) for leg in legs], order.buy)
        if priced is None:
            return None
        if req.order_type == "LMT" and not crosses(order.buy, req.lmt_price, priced[0]):
            return None
        return priced

    def _work_combo(self, order: WorkingOrder, now: datetime, out: list[VenueEvent]) -> None:
        """Fill a BAG atomically: all legs for the whole remaining quantity, or nothing."""
        if order.done or order.held or order.waiting_parent:
            return
        priced = self._combo_price_ok(order, now)
        if priced is None:
            return
        net, leg_fills = priced
        req = order.req
        qty = order.remaining
        tail: list[VenueEvent] = []
        leg_execs: list[Execution] = []
        for leg, (leg_buys, price) in zip(req.combo_legs, leg_fills, strict=True):
            inst = self._inst(leg.con_id)
            assert inst is not None  # checked when the order was accepted
            shares = qty * leg.ratio
            acc = order.leg_fills.setdefault(leg.con_id, [ZERO, ZERO, ZERO])
            before = self._volume.get(inst.sec_type, ZERO) - acc[0]
            acc[0] += shares
            acc[1] += shares * price
            cum = self._commission_fn(inst, acc[0], acc[1] / acc[0], before)
            comm = max(cum - acc[2], ZERO)
            acc[2] += comm
            order.commission += comm
            ex = self._book(
                order,
                inst.con_id,
                inst.symbol,
                inst.sec_type,
                inst.multiplier,
                leg_buys,
                shares,
                price,
                shares,
                price,
                comm,
                now,
                out,
                tail,
                2,
                leg.exchange or "SMART",
            )
            leg_execs.append(ex)
        order.filled += qty
        order.notional += qty * net
        order.last_fill_price = net
        self._complete(order, _FILLED, now)
        self._book(
            order,
            req.con_id or BAG_CON_ID,
            req.symbol,
            SecType.BAG,
            1,
            order.buy,
            qty,
            net,
            order.filled,
            order.avg_price,
            ZERO,
            now,
            out,
            tail,
            2,
            req.route or "SMART",
            bag=True,
        )
        self._emit(order, now, out)
        out.extend(tail)
        for ex in leg_execs:
            self._scheduled_corrections(ex, now, out)
        self._after_fill(order, qty, now, out)

    def _fill(
        self,
        order: WorkingOrder,
        qty: Decimal,
        price: Decimal,
        now: datetime,
        out: list[VenueEvent],
        liquidity: int,
        exchange: str,
    ) -> None:
        """One execution of a single-contract order."""
        req = order.req
        inst = self._inst(req.con_id)
        assert inst is not None  # checked when the order was accepted
        order.filled += qty
        order.notional += qty * price
        order.last_fill_price = price
        # IB's tier is the month's volume before this order (its earlier fills excluded)
        before = self._volume.get(inst.sec_type, ZERO) - (order.filled - qty)
        cum = self._commission_fn(inst, order.filled, order.avg_price, before)
        comm = max(cum - order.commission, ZERO)
        order.commission += comm
        if order.remaining <= 0:
            self._complete(order, _FILLED, now)
        # the execution's exchange: a direct route, else the venue of the level taken / printed
        if req.route and req.route != "SMART":
            venue = req.route
        elif exchange and exchange != "SMART":
            venue = _EXEC_EXCHANGE.get(exchange, exchange)
        else:
            venue = inst.primary_exchange
        tail: list[VenueEvent] = []
        ex = self._book(
            order,
            inst.con_id,
            inst.symbol,
            inst.sec_type,
            inst.multiplier,
            order.buy,
            qty,
            price,
            order.filled,
            order.avg_price,
            comm,
            now,
            out,
            tail,
            liquidity,
            venue or "SMART",
        )
        self._emit(order, now, out, open_order=order.status == _FILLED)
        out.extend(tail)
        self._scheduled_corrections(ex, now, out)
        self._after_fill(order, qty, now, out)

    def _book(
        self,
        order: WorkingOrder,
        con_id: int,
        symbol: str,
        sec_type: SecType,
        multiplier: int,
        buy: bool,
        shares: Decimal,
        price: Decimal,
        cum_qty: Decimal,
        avg_price: Decimal,
        commission: Decimal,
        now: datetime,
        out: list[VenueEvent],
        tail: list[VenueEvent],
        liquidity: int,
        exchange: str,
        bag: bool = False,
    ) -> Execution:
        """Create, book and log one execution: execDetails goes to `out`, its commission and
        position to `tail`, which the caller appends after the orderStatus (IB's order)."""
        req = order.req
        ex = Execution(
            exec_id=self._exec_ids.next_id(self._account_id, now),
            order_id=req.order_id,
            client_id=req.client_id,
            perm_id=order.perm_id,
            account=self._account_id,
            con_id=con_id,
            symbol=symbol,
            sec_type=sec_type,
            side="BOT" if buy else "SLD",
            shares=shares,
            price=price,
            cum_qty=cum_qty,
            avg_price=avg_price,
            time=now,
            exchange=exchange,
            order_ref=req.order_ref,
            last_liquidity=liquidity,
        )
        realized = None
        if not bag:
            realized = self._account.apply_fill(con_id, multiplier, buy, shares, price, commission)
            self._volume[sec_type] = self._volume.get(sec_type, ZERO) + shares
        report = CommissionReport(ex.exec_id, commission, "USD", realized)
        self._add_exec(_ExecRec(ex, report, 0 if bag else multiplier))
        if self._log is not None:
            self._log.execution(ex)
            self._log.commission(ex, commission, realized)
        out.append(Executed(ex))
        tail.append(Commissioned(req.client_id, report, self._commission_time(now)))
        if not bag:
            pos = self._account.positions[con_id]
            tail.append(PositionChanged(self._account_id, con_id, pos.qty, pos.avg_cost))
        self._exec_seq += 1
        return ex

    def _scheduled_corrections(self, ex: Execution, now: datetime, out: list[VenueEvent]) -> None:
        """Scenario corrections: count matching executions per rule, correct the nth."""
        if not self._rules.corrections:
            return
        for i, rule in enumerate(self._rules.corrections):
            if rule.symbol and rule.symbol != ex.symbol:
                continue
            if rule.start is not None and ex.time < rule.start:
                continue
            self._corr_counts[i] += 1
            if self._corr_counts[i] == rule.nth:
                self._correct(ex.exec_id, now, ex.price + rule.price_delta, rule.shares, out)

    def _commission_time(self, now: datetime) -> datetime | None:
        delay = self._rules.commission_delay(now)
        return now + timedelta(seconds=delay) if delay > 0 else None

    def _after_fill(
        self, order: WorkingOrder, qty: Decimal, now: datetime, out: list[VenueEvent]
    ) -> None:
        """OCA siblings are cancelled (type 1) or reduced (2/3); bracket children activate."""
        req = order.req
        if qty > 0:
            if req.oca_group:
                for k in self._oca.get(req.oca_group, ()):
                    other = self._orders[k]
                    if other is order or other.done:
                        continue
                    if req.oca_type == 1:
                        self._expire(other, now, out)
                    else:
                        self._reduce(other, qty, now, out)
            elif req.parent_id:
                # IB treats a bracket's children as one OCA group that reduces with each fill.
                for k in self._children.get((req.client_id, req.parent_id), ()):
                    other = self._orders[k]
                    if other is not order and not other.done and not other.req.oca_group:
                        self._reduce(other, qty, now, out)
        if order.status == _FILLED:
            for k in self._children.get(order.key, ()):
                child = self._orders[k]
                if child.waiting_parent and not child.done:
                    self._activate(child, now, out)

    def _reduce(
        self, order: WorkingOrder, qty: Decimal, now: datetime, out: list[VenueEvent]
    ) -> None:
        new_total = order.req.total_qty - qty
        if new_total <= order.filled:
            self._expire(order, now, out)
            return
        order.req = replace(order.req, total_qty=new_total)
        self._dirty = True
        self._dirty_orders[order.key] = order
        self._emit(order, now, out)

    # ---------------------------------------------------------------------------------------------
    # Time: sessions, auctions, expiries

    def _open(self, now: datetime) -> bool:
        cached_now, value = self._open_cache
        if cached_now != now:
            value = bool(self._market.session_open(now))
            self._open_cache = (now, value)
        return value

    def _session_transitions(self, now: datetime, out: list[VenueEvent]) -> None:
        is_open = self._open(now)
        was = self._was_open
        if was is None or was == is_open:
            if was is None:
                self._was_open = is_open
                self._dirty = True
            return
        self._was_open = is_open
        self._dirty = True
        if was and not is_open:
            self._close_auction(now, out)
        else:
            self._open_auction(now, out)

    def _auction_price(self, con_id: int, opening: bool) -> Decimal:
        q = self._market.quote(con_id)
        if opening and q.open > 0:
            return q.open
        if q.last > 0:
            return q.last
        return q.mid

    def _auction_fill(
        self,
        order: WorkingOrder,
        opening: bool,
        limited: bool,
        now: datetime,
        out: list[VenueEvent],
    ) -> None:
        """An auction order (MOC/LOC at the close, OPG at the open) fills in full at the auction
        price, or expires: no price, a halt, or a limit (`limited`) the price does not cross."""
        con = order.req.con_id
        price = self._auction_price(con, opening=opening)
        limit = order.req.lmt_price if limited else None
        halted = self._market.halt_state(con) != HaltState.TRADING
        if price > 0 and not halted and crosses(order.buy, limit, price):
            self._fill(order, order.remaining, price, now, out, 2, "")
        else:
            self._expire(order, now, out)

    def _close_auction(self, now: datetime, out: list[VenueEvent]) -> None:
        """At the close: MOC/LOC fill at the closing price, then DAY orders expire."""
        for order in list(self._orders.values()):
            if order.done or order.req.order_type not in AUCTION_CLOSE_TYPES:
                continue
            if order.held or order.waiting_parent:
                continue
            limited = order.req.order_type == "LOC"
            self._auction_fill(order, opening=False, limited=limited, now=now, out=out)
        for order in list(self._orders.values()):
            if not order.done and order.req.tif == "DAY":
                self._expire(order, now, out)

    def _open_auction(self, now: datetime, out: list[VenueEvent]) -> None:
        """At the open: OPG orders trade at the opening price, waiting orders start working."""
        for order in list(self._orders.values()):
            if order.done or order.held or order.waiting_parent or order.req.tif != "OPG":
                continue
            limited = order.req.order_type == "LMT"
            self._auction_fill(order, opening=True, limited=limited, now=now, out=out)
        for order in list(self._orders.values()):
            if order.done or order.held or order.waiting_parent:
                continue
            if (
                order.status == _PRE
                and order.triggered
                and order.req.order_type not in (AUCTION_CLOSE_TYPES)
            ):
                order.status = _SUBMITTED
                self._emit(order, now, out, open_order=False)
            if order.is_combo:
                self._work_combo(order, now, out)
            else:
                self._work(order, now, out)

    def _expire_gtd(self, now: datetime, out: list[VenueEvent]) -> None:
        for key, order in list(self._gtd.items()):
            gt = order.req.good_till
            if order.done:
                del self._gtd[key]
            elif gt is not None and now >= gt:
                del self._gtd[key]
                self._expire(order, now, out)

    # ---------------------------------------------------------------------------------------------
    # Corrections

    def _correct(
        self,
        exec_id: str,
        now: datetime,
        price: Decimal | None,
        shares: Decimal | None,
        out: list[VenueEvent],
    ) -> None:
        idx = self._exec_index.get(exec_id)
        if idx is None or self._execs[idx].superseded:
            raise KeyError(f"no effective execution {exec_id!r}")
        rec = self._execs[idx]
        old = rec.execution
        new_price = old.price if price is None else price
        new_shares = old.shares if shares is None else shares
        new = replace(
            old,
            exec_id=corrected_id(old.exec_id),
            price=new_price,
            shares=new_shares,
            is_correction_of=old.exec_id,
        )
        order = self._orders.get((old.client_id, old.order_id))
        # A combo's own fill is its BAG execution; a leg correction leaves the combo's price alone.
        if order is not None and order.is_combo == (old.sec_type == SecType.BAG):
            order.notional += new_shares * new_price - old.shares * old.price
            order.filled += new_shares - old.shares
            if order.filled:
                order.last_fill_price = new_price
            new = replace(new, cum_qty=order.filled, avg_price=order.avg_price)
        old_comm = rec.commission
        comm = old_comm.commission if old_comm is not None else ZERO
        rec.superseded = True
        new_rec = _ExecRec(new, CommissionReport(new.exec_id, comm, "USD", None), rec.multiplier)
        self._execs.append(new_rec)
        self._rebook()
        self._execs.pop()
        realized = self._realized_of(new.exec_id)
        new_rec.commission = CommissionReport(new.exec_id, comm, "USD", realized)
        self._add_exec(new_rec)
        if self._log is not None:
            self._log.execution(new, kind="correction")
            self._log.commission(new, comm, realized)
        out.append(Executed(new))
        if order is not None:
            self._emit(order, now, out, open_order=False)
        out.append(Commissioned(old.client_id, new_rec.commission, self._commission_time(now)))
        if rec.multiplier:
            pos = self._account.positions[new.con_id]
            out.append(PositionChanged(self._account_id, new.con_id, pos.qty, pos.avg_cost))

    def _add_exec(self, rec: _ExecRec) -> None:
        self._exec_index[rec.execution.exec_id] = len(self._execs)
        self._execs.append(rec)
        self._dirty = True
        if self._journal is not None:
            self._journal.append(
                {
                    "execution": encode_execution(rec.execution),
                    "commission": encode_commission(rec.commission),
                    "multiplier": rec.multiplier,
                }
            )

    def _rebook(self) -> None:
        """Rebuild the account from the effective executions (after a correction or a restart)."""
        self._account = Account(self._rules.starting_cash)
        self._realized_cache = {}
        volume: dict[SecType, Decimal] = {}
        for rec in self._execs:
            if rec.superseded or not rec.multiplier:
                continue
            ex = rec.execution
            comm = rec.commission.commission if rec.commission is not None else ZERO
            self._realized_cache[ex.exec_id] = self._account.apply_fill(
                ex.con_id, rec.multiplier, ex.side == "BOT", ex.shares, ex.price, comm
            )
            volume[ex.sec_type] = volume.get(ex.sec_type, ZERO) + ex.shares
        self._volume = volume

    def _realized_of(self, exec_id: str) -> Decimal | None:
        return self._realized_cache.get(exec_id)

    # ---------------------------------------------------------------------------------------------
    # Helpers

    def _inst(self, con_id: int) -> Instrument | None:
        inst = self._inst_cache.get(con_id)
        if inst is None:
            inst = self._catalog.get(con_id)
            if inst is not None:
                self._inst_cache[con_id] = inst
        return inst

    def _mark(self, con_id: int) -> Decimal:
        q = self._market.quote(con_id)
        if q.bid > 0 and q.ask > 0:
            return q.mid
        if q.last > 0:
            return q.last
        return q.close

    def _marks(self) -> dict[int, Decimal]:
        return {c: self._mark(c) for c, p in self._account.positions.items() if p.qty}

    def _index(self, order: WorkingOrder) -> None:
        if order.is_combo:
            cons = {leg.con_id for leg in order.req.combo_legs}
        else:
            cons = {order.req.con_id}
        live = self._live
        for c in cons:
            book = live.get(c)
            if book is None:
                # the venue needs the con_id's quotes and prints while an order works on it
                book = live[c] = {}
                self._market.watch(c)
            book[order.key] = order
        if order.req.tif == "GTD" and order.req.good_till is not None:
            self._gtd[order.key] = order

    def _complete(self, order: WorkingOrder, status: OrderStatusName, now: datetime) -> None:
        order.status = status
        order.completed_time = now
        order.held = False
        order.waiting_parent = False
        self._dirty = True
        self._dirty_orders[order.key] = order
        if order.is_combo:
            cons = {leg.con_id for leg in order.req.combo_legs}
        else:
            cons = {order.req.con_id}
        for c in cons:
            book = self._live.get(c)
            if book is not None:
                book.pop(order.key, None)
                if not book:
                    del self._live[c]
                    self._market.unwatch(c)
        self._gtd.pop(order.key, None)

    def _emit(
        self, order: WorkingOrder, now: datetime, out: list[VenueEvent], open_order: bool = True
    ) -> None:
        snap = order.snapshot()
        self._dirty_orders[order.key] = order
        out.append(OrderChanged(snap, open_order=open_order))
        if self._rules.duplicate_status and self._rules.duplicates_status(now):
            out.append(OrderChanged(snap, open_order=False))

    # ---------------------------------------------------------------------------------------------
    # Persistence

    def _persist(self) -> None:
        """Append the changed orders to the order journal, then write the counters snapshot."""
        if not self._dirty:
            return
        self._dirty = False
        if self._state_dir is None:
            self._dirty_orders.clear()
            return
        if self._order_journal is None:
            self._order_journal = Journal(self._orders_path(self._order_gen))
        for o in self._dirty_orders.values():
            self._order_journal.append(_encode_order(o))
        self._dirty_orders.clear()
        state = {
            "version": STATE_VERSION,
            "account": self._account_id,
            "perm_last": self._perm.last,
            "exec_prefix": self._exec_ids.prefix,
            "exec_counter": self._exec_ids.counter,
            "exec_seq": self._exec_seq,
            "corr_counts": self._corr_counts,
            "max_ids": {str(k): v for k, v in self._max_id.items()},
            "was_open": self._was_open,
            "exec_count": len(self._execs),
            "order_gen": self._order_gen,
            "order_lines": self._order_journal.lines,
        }
        save_state(self._state_dir, state)

    def _orders_path(self, gen: int) -> Path:
        assert self._state_dir is not None
        return self._state_dir / f"{ORDERS_PREFIX}{gen}.jsonl"

    def _restore(self, state_dir: Path, journal: Journal) -> None:
        state = load_state(state_dir)
        if state is None:
            journal.read(0)  # executions no snapshot covers were never reported: drop them
            return
        self._perm = PermIds(state["perm_last"])
        self._exec_ids = ExecIdGenerator(state["exec_prefix"], state["exec_counter"])
        self._exec_seq = state["exec_seq"]
        counts = state.get("corr_counts", [])
        if len(counts) == len(self._corr_counts):
            self._corr_counts = list(counts)
        self._max_id = {int(k): v for k, v in state["max_ids"].items()}
        self._was_open = state["was_open"]
        for d in journal.read(state["exec_count"]):
            rec = _ExecRec(
                decode_execution(d["execution"]),
                decode_commission(d["commission"]),
                d["multiplier"],
            )
            corrects = rec.execution.is_correction_of
            if corrects is not None and corrects in self._exec_index:
                self._execs[self._exec_index[corrects]].superseded = True
            self._exec_index[rec.execution.exec_id] = len(self._execs)
            self._execs.append(rec)
        self._rebook()
        old_gen = state["order_gen"]
        old = Journal(self._orders_path(old_gen))
        latest: dict[tuple[int, int], dict[str, Any]] = {}
        for d in old.read(state["order_lines"]):
            latest[(d["req"]["client_id"], d["req"]["order_id"])] = d  # last line wins
        for d in latest.values():
            self._load_order(_decode_order(d))
        # compact into a new generation; the snapshot switches to it atomically
        self._order_gen = old_gen + 1
        self._order_journal = Journal(self._orders_path(self._order_gen))
        self._order_journal.write_all(list(latest.values()))
        self._dirty = True
        self._persist()
        old.path.unlink(missing_ok=True)

    def _load_order(self, o: WorkingOrder) -> None:
        req = o.req
        self._orders[o.key] = o
        if req.parent_id:
            self._children.setdefault((req.client_id, req.parent_id), []).append(o.key)
        if req.oca_group:
            self._oca.setdefault(req.oca_group, []).append(o.key)
        if o.done:
            return
        if o.held:
            root = (req.client_id, req.parent_id or req.order_id)
            self._held.setdefault(root, []).append(o.key)
        elif not o.waiting_parent:
            self._index(o)


def _no_grid(price: Decimal) -> Decimal:
    """No increment known (an instrument outside the catalog): prices are left as they are."""
    return ZERO


def _increment_of(inst: Instrument | None) -> Increment:
    """The price-dependent increment of `inst` as a function of price (see `price_increment`)."""
    if inst is None:
        return _no_grid
    return partial(price_increment, inst)


def _encode_order(o: WorkingOrder) -> dict[str, Any]:
    return {
        "req": encode_request(o.req),
        "perm_id": o.perm_id,
        "status": o.status.value,
        "filled": o.filled,
        "notional": o.notional,
        "last_fill_price": o.last_fill_price,
        "commission": o.commission,
        "triggered": o.triggered,
        "trail_stop": o.trail_stop,
        "trail_extreme": o.trail_extreme,
        "peg_price": o.peg_price,
        "held": o.held,
        "waiting_parent": o.waiting_parent,
        "completed_time": o.completed_time,
        "leg_fills": {str(c): v for c, v in o.leg_fills.items()},
        "multiplier": o.instrument_multiplier,
    }


def _decode_order(d: dict[str, Any]) -> WorkingOrder:
    o = WorkingOrder(decode_request(d["req"]), d["perm_id"], d["multiplier"])
    o.status = OrderStatusName(d["status"])
    o.filled = Decimal(d["filled"])
    o.notional = Decimal(d["notional"])
    o.last_fill_price = Decimal(d["last_fill_price"])
    o.commission = Decimal(d["commission"])
    o.triggered = d["triggered"]
    o.trail_stop = _opt_dec(d["trail_stop"])
    o.trail_extreme = _opt_dec(d["trail_extreme"])
    o.peg_price = _opt_dec(d["peg_price"])
    o.held = d["held"]
    o.waiting_parent = d["waiting_parent"]
    ct = d["completed_time"]
    o.completed_time = datetime.fromisoformat(ct) if ct else None
    o.leg_fills = {int(c): [Decimal(x) for x in v] for c, v in d["leg_fills"].items()}
    return o


def _opt_dec(v: str | None) -> Decimal | None:
    return None if v is None else Decimal(v)
