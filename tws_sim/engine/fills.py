"""Working orders against the market: activation, stop and trail triggers, pegs, taking the
displayed book, passive fills from prints, combos in whole units, and what a fill does to OCA
siblings and bracket children.

The fill model is the one `tws_sim.engine.venue` describes; the pure price logic it applies
(book walking, triggers, trails, pegs, combo pricing) is `tws_sim.engine.matching`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from functools import partial

from tws_sim.engine.executions import Executions
from tws_sim.engine.matching import (
    Increment,
    combo_prices,
    crosses,
    peg_price,
    plan_take,
    reference_price,
    side_levels,
    stop_hit,
    trail_stop,
)
from tws_sim.engine.orders import AUCTION_CLOSE_TYPES, PEG_TYPES, WorkingOrder
from tws_sim.engine.rules import ComboSliceRule
from tws_sim.market.catalog import price_increment
from tws_sim.types import (
    Execution,
    HaltState,
    Instrument,
    OrderStatusName,
    Quote,
    SecType,
    TradePrinted,
    VenueEvent,
)

ZERO = Decimal(0)
DEPTH_ROWS = 10
BAG_CON_ID = 28812380  # IB reports USD combo executions under this conId
_SUBMITTED = OrderStatusName.SUBMITTED
_PRE = OrderStatusName.PRE_SUBMITTED
_FILLED = OrderStatusName.FILLED

# L2 market-maker codes that differ from the exchange name IB puts on executions
_EXEC_EXCHANGE = {"NSDQ": "ISLAND"}


class Fills(Executions):
    """Orders working against the market (see the module docstring)."""

    # ---------------------------------------------------------------------------------------------
    # Working

    def _activate(self, order: WorkingOrder, now: datetime, out: list[VenueEvent]) -> None:
        """Start a released order working: Submitted (or PreSubmitted while it waits), indexed for
        market events and given its first chance to fill now; IOC and FOK leave nothing resting.
        A bracket child waits, PreSubmitted, until its parent fills."""
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
        """Take displayed liquidity up to `limit`, one execution per level, recording what was taken
        so a later order in the same instant sees the book net of it."""
        buy = order.buy
        levels, taken = self._levels(order.req.con_id, quote, buy)
        for price, qty, mm in plan_take(levels, buy, limit, order.remaining):
            if order.done:
                break
            taken[(buy, price)] = taken.get((buy, price), ZERO) + qty
            self._fill(order, qty, price, now, out, 2, mm)

    def _fok_fillable(self, order: WorkingOrder, now: datetime) -> bool:
        """Whether a fill-or-kill order would fill in full right now; checked before it touches the
        book, since FOK must never fill in part."""
        req = order.req
        if order.is_combo:
            priced = self._combo_price_ok(order, now)
            if priced is None:
                return False
            return self._combo_units(order, now, priced[1], record=False) >= order.remaining
        if req.order_type not in ("MKT", "LMT") or (not req.outside_rth and not self._open(now)):
            return False
        if self._market.halt_state(req.con_id) != HaltState.TRADING:
            return False
        quote = self._market.quote(req.con_id)
        levels, _ = self._levels(req.con_id, quote, order.buy)
        limit = req.lmt_price if req.order_type == "LMT" else None
        got = sum((q for _, q, _ in plan_take(levels, order.buy, limit, order.remaining)), ZERO)
        return got >= order.remaining

    # ---------------------------------------------------------------------------------------------
    # Combos

    def _combo_price_ok(
        self, order: WorkingOrder, now: datetime
    ) -> tuple[Decimal, list[tuple[bool, Decimal]]] | None:
        """The combo's net price and each leg's (side, price) when it can trade now (session open,
        no leg halted, every leg quoted, the limit reached), else None."""
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

    def _combo_units(
        self,
        order: WorkingOrder,
        now: datetime,
        leg_fills: list[tuple[bool, Decimal]],
        record: bool,
    ) -> Decimal:
        """Whole combo units that can trade now: the displayed size at each leg's touch (net of
        what earlier orders took from that quote) over the leg's ratio, the smallest of them,
        capped by the order's remainder and by a scenario's partial-fill rule. With `record` the
        legs' shares are marked as taken, so a later order in the same instant sees the book
        net of them."""
        req = order.req
        units = order.remaining
        books: list[tuple[dict[tuple[bool, Decimal], Decimal], bool, Decimal, int]] = []
        for leg, (leg_buys, price) in zip(req.combo_legs, leg_fills, strict=True):
            quote = self._market.quote(leg.con_id)
            levels, taken = self._levels(leg.con_id, quote, leg_buys)
            size = next((s for p, s, _ in levels if p == price), ZERO)
            units = min(units, Decimal(int(size // leg.ratio)))
            books.append((taken, leg_buys, price, leg.ratio))
        slice_rule = self._combo_slice_rule(order, now)
        if slice_rule is not None:
            last = order.last_fill_time
            if last is not None and (now - last).total_seconds() < slice_rule.interval_s:
                return ZERO
            units = min(units, slice_rule.max_units)
        if units > 0 and record:
            for taken, leg_buys, price, ratio in books:
                taken[(leg_buys, price)] = taken.get((leg_buys, price), ZERO) + units * ratio
        return units

    def _combo_slice_rule(self, order: WorkingOrder, now: datetime) -> ComboSliceRule | None:
        """The scenario's partial-fill rule for this combo at `now`, if one applies."""
        rules = self._rules.combo_slices
        if not rules:
            return None
        symbols = {i.symbol for leg in order.req.combo_legs if (i := self._inst(leg.con_id))}
        for rule in rules:
            if rule.window.contains(now) and (
                not rule.symbols or symbols.intersection(rule.symbols)
            ):
                return rule
        return None

    def _work_combo(self, order: WorkingOrder, now: datetime, out: list[VenueEvent]) -> None:
        """Fill a BAG in whole combo units, as many as every leg's displayed size allows now
        (possibly all of it, possibly none); the rest waits for the market to show more.

        Each fill is one execution per leg (the leg's ratio times the units, at the leg's
        touch; cumulative quantity and average price per leg over the order) followed by the
        BAG's own execution for the units at the net price (conId 28812380); the order's
        filled / remaining count combo units."""
        if order.done or order.held or order.waiting_parent:
            return
        priced = self._combo_price_ok(order, now)
        if priced is None:
            return
        net, leg_fills = priced
        qty = self._combo_units(order, now, leg_fills, record=True)
        if qty <= 0:
            return
        req = order.req
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
                acc[0],
                acc[1] / acc[0],
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
        order.last_fill_time = now
        self._dirty = True
        self._dirty_orders[order.key] = order
        if order.remaining <= 0:
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
        self._emit(order, now, out, open_order=order.status == _FILLED)
        out.extend(tail)
        for ex in leg_execs:
            self._scheduled_corrections(ex, now, out)
        self._after_fill(order, qty, now, out)

    # ---------------------------------------------------------------------------------------------
    # Fills and their consequences

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
        """Reduce an OCA sibling (types 2 and 3) or a bracket child by what just filled elsewhere;
        with nothing left it expires."""
        new_total = order.req.total_qty - qty
        if new_total <= order.filled:
            self._expire(order, now, out)
            return
        order.req = replace(order.req, total_qty=new_total)
        self._dirty = True
        self._dirty_orders[order.key] = order
        self._emit(order, now, out)


def _no_grid(price: Decimal) -> Decimal:
    """No increment known (an instrument outside the catalog): prices are left as they are."""
    return ZERO


def _increment_of(inst: Instrument | None) -> Increment:
    """The price-dependent increment of `inst` as a function of price (see `price_increment`)."""
    if inst is None:
        return _no_grid
    return partial(price_increment, inst)
