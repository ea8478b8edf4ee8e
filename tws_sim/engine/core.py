"""The venue's state, and the order bookkeeping every part of the venue shares.

`Venue` is one object with one state, split by concern into classes stacked on `VenueCore`, each
in its own module and each seeing only the parts below it, so no module needs the whole venue:

    VenueCore (core.py)            state; instrument and mark lookups; the live-order index;
                                   completing, cancelling and emitting orders; whether the
                                   session is open
    Executions (executions.py)     booking fills into the account; corrections; rebooking
    Fills (fills.py)               working orders against the market: triggers, takes, fills,
                                   combos, OCA and bracket consequences
    Sessions (sessions.py)         session open/close: auctions, DAY and GTD expiry
    OrderEntry (entry.py)          new orders and modifications: validation, holds, release
    Snapshots (snapshots.py)       the state directory: journals, snapshot, restore
    Venue (venue.py)               the public API: orders in, queries

Cancelling is here rather than with order entry because fills (OCA siblings, IOC remainders)
and sessions (DAY and GTD expiry) cancel orders too.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tws_sim.engine.account import Account
from tws_sim.engine.execids import ExecIdGenerator, PermIds
from tws_sim.engine.execlog import ExecLog
from tws_sim.engine.fees import CommissionFn, default_commission_fn
from tws_sim.engine.orders import ERR_CANCELLED, MSG_CANCELLED, WorkingOrder
from tws_sim.engine.persistence import Journal
from tws_sim.engine.rules import VenueRules
from tws_sim.types import (
    CommissionReport,
    Execution,
    Instrument,
    OrderChanged,
    OrderStatusName,
    SecType,
    VenueError,
    VenueEvent,
)

_CANCELLED = OrderStatusName.CANCELLED

Key = tuple[int, int]  # (client_id, order_id)


class ExecRecord:
    """An execution as the venue keeps it: the report, its commission, and how to book it.

    `kind` is "" for an execution of an order. An option leaving the account at its expiry is
    booked the same way, so the account can be rebuilt from the records, but with its kind
    ("exercise", "assignment", "expiration"): IB reports those as position changes, never as
    executions, so they are not in reqExecutions' answer."""

    __slots__ = ("commission", "execution", "kind", "multiplier", "superseded")

    def __init__(
        self,
        execution: Execution,
        commission: CommissionReport | None,
        multiplier: int,
        superseded: bool = False,
        kind: str = "",
    ) -> None:
        self.execution = execution
        self.commission = commission
        self.multiplier = multiplier
        self.superseded = superseded
        self.kind = kind


class VenueCore:
    """What the venue holds (set up here for every part) and the bookkeeping they all use."""

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
        """Every field of the venue, empty: a flat account with the rules' starting cash. A state
        directory's day is loaded later, by `Venue`, once every part exists."""
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
        self._execs: list[ExecRecord] = []
        self._exec_index: dict[str, int] = {}
        self._account = Account(self._rules.starting_cash)
        self._volume: dict[SecType, Decimal] = {}
        self._taken: dict[int, tuple[datetime, dict[tuple[bool, Decimal], Decimal]]] = {}
        self._was_open: bool | None = None
        # The ET date of the regular session last seen open, the last expiry day whose options
        # were settled, and when the DAY orders kept for after-hours trading expire.
        self._session_day: date | None = None
        self._expired_through: date | None = None
        self._ext_expiry: datetime | None = None
        self._open_cache: tuple[datetime | None, bool] = (None, False)
        self._exec_seq = 0
        self._inst_cache: dict[int, Instrument] = {}
        self._realized_cache: dict[str, Decimal | None] = {}
        self._dirty = False
        self._journal: Journal | None = None
        self._order_journal: Journal | None = None
        self._order_gen = 0
        self._dirty_orders: dict[Key, WorkingOrder] = {}

    # ---------------------------------------------------------------------------------------------
    # Helpers

    def _inst(self, con_id: int) -> Instrument | None:
        """The catalog's instrument for a con_id, cached (the catalog does not change during a run
        and fills ask for it every time)."""
        inst = self._inst_cache.get(con_id)
        if inst is None:
            inst = self._catalog.get(con_id)
            if inst is not None:
                self._inst_cache[con_id] = inst
        return inst

    def _mark(self, con_id: int) -> Decimal:
        """The price a position is valued at: the mid of a two-sided quote, else the last trade,
        else the close, so a one-sided or empty book still marks."""
        q = self._market.quote(con_id)
        if q.bid > 0 and q.ask > 0:
            return q.mid
        if q.last > 0:
            return q.last
        return q.close

    def _marks(self) -> dict[int, Decimal]:
        """The marks of every open position (flat positions carry no value)."""
        return {c: self._mark(c) for c, p in self._account.positions.items() if p.qty}

    def _index(self, order: WorkingOrder) -> None:
        """Put a working order where `on_market` finds it: the live index by con_id (watching a
        con_id on first use, so the market emits its events) and the GTD list when it has an
        expiry."""
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
        """Mark an order done and take it out of the live index (unwatching a con_id no order works
        on any more) and the GTD list; `completed_time` is what reqCompletedOrders reports."""
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
        """Queue the order's openOrder/orderStatus. Inside a scenario's duplicate-status window the
        status goes out twice, as IB sometimes sends it, so clients learn to be idempotent."""
        snap = order.snapshot()
        self._dirty_orders[order.key] = order
        out.append(OrderChanged(snap, open_order=open_order))
        if self._rules.duplicate_status and self._rules.duplicates_status(now):
            out.append(OrderChanged(snap, open_order=False))

    def _expired(self, inst: Instrument) -> bool:
        """Whether `inst` is an option the venue has already expired (its last session closed):
        IB knows no such contract any more."""
        through = self._expired_through
        return through is not None and inst.expiry is not None and inst.expiry <= through

    def _open(self, now: datetime) -> bool:
        """Whether the regular session is open at `now`, asked of the market once per simulated
        instant (every order asks)."""
        cached_now, value = self._open_cache
        if cached_now != now:
            value = bool(self._market.session_open(now))
            self._open_cache = (now, value)
        return value

    # ---------------------------------------------------------------------------------------------
    # Cancels

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
