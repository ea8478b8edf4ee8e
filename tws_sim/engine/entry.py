"""Order entry: a new order or a modification is validated (IB's codes), checked against the
scenario's reject rules, held until its group is transmitted, then released to work.

What IB refuses at entry is decided here, before an order can fill; what happens once it works
is `tws_sim.engine.fills`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from tws_sim.engine.core import Key
from tws_sim.engine.fills import Fills
from tws_sim.engine.matching import on_tick
from tws_sim.engine.orders import (
    ERR_BAD_TICK,
    ERR_HALTED,
    ERR_MODIFY_MISMATCH,
    ERR_NO_SECURITY,
    ERR_REJECTED,
    ERR_VALIDATION,
    LIMIT_PRICE_TYPES,
    MSG_BAD_TICK,
    MSG_HALTED,
    MSG_MODIFY_MISMATCH,
    MSG_NO_SECURITY,
    ORDER_TYPES,
    PEG_TYPES,
    STOP_TYPES,
    TIFS,
    WorkingOrder,
    msg_rejected,
    msg_validation,
)
from tws_sim.market.catalog import price_increment
from tws_sim.types import (
    HaltState,
    Instrument,
    OrderRequest,
    OrderStatusName,
    SecType,
    VenueError,
    VenueEvent,
)

ZERO = Decimal(0)
CENT = Decimal("0.01")
_SUBMITTED = OrderStatusName.SUBMITTED
_PRE = OrderStatusName.PRE_SUBMITTED
_FILLED = OrderStatusName.FILLED
_CANCELLED = OrderStatusName.CANCELLED


class OrderEntry(Fills):
    """New orders, modifications and rejects (see the module docstring)."""

    def _new(self, req: OrderRequest, now: datetime, out: list[VenueEvent]) -> None:
        """A new order: registered with a perm id first (so even a rejected order is a known,
        completed one), then validated, checked against halts, the scenario's reject rules and
        its parent; held while `transmit` is false, else released with its held group."""
        multiplier = 1
        con_ids: list[int]
        if req.sec_type == SecType.BAG:
            con_ids = [leg.con_id for leg in req.combo_legs]
            legs = [self._inst(c) for c in con_ids]
            if not con_ids or any(i is None or self._expired(i) for i in legs):
                out.append(
                    VenueError(req.client_id, req.order_id, ERR_NO_SECURITY, MSG_NO_SECURITY)
                )
                return
            inst = None
        else:
            inst = self._inst(req.con_id)
            route = req.route
            if (
                inst is None
                or self._expired(inst)
                or (route and route != "SMART" and route not in inst.valid_exchanges)
            ):
                # IB answers an unknown (or expired) contract, or one not listed on the chosen
                # route, with 200
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

    def _modify(
        self, order: WorkingOrder, req: OrderRequest, now: datetime, out: list[VenueEvent]
    ) -> None:
        """A placeOrder for a working order: the contract and side may not change (105); the new
        terms are validated, a changed type re-arms its trigger, and the order gets its chance
        against the market at the new terms."""
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

    def _reject(
        self, order: WorkingOrder, code: int, message: str, now: datetime, out: list[VenueEvent]
    ) -> None:
        """Refuse an order with IB's code: the error, then the order goes Cancelled, as IB reports a
        rejected order."""
        out.append(VenueError(order.req.client_id, order.req.order_id, code, message))
        self._complete(order, _CANCELLED, now)
        self._emit(order, now, out, open_order=False)

    def _validate(self, req: OrderRequest, inst: Instrument | None) -> tuple[int, str] | None:
        """IB's field checks (unsupported type, TIF or action, missing prices, prices off the tick
        grid): the (code, message) of the first problem, or None."""
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
        """The scenario's reject rules in force at `now` (maximum size, maximum notional, unfillable
        combos): the (code, message) of the first that applies, or None."""
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
