"""What-if orders (`Order.whatIf`): the margin an order would need, answered without trading.

IB answers a what-if placeOrder with one openOrder whose OrderState carries the account's
initial / maintenance margin and equity with loan before the order, the change and after it
(as strings), status PreSubmitted; the order never rests, fills or gets an orderStatus. The id
counts as used, as any placeOrder's does.

The numbers follow the paper account's own margin model (`Venue.account_values`): stocks 50 %
initial / 25 % maintenance of market value, long options paid in full, short options premium +
20 % of the underlying. "After" assumes the whole order fills at its limit (at the mark without
one; a BAG's net limit spread over its legs at their marks), so the change is what the venue
would hold against the account's equity once it trades.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tws_sim.engine.core import VenueCore
from tws_sim.types import OrderRequest, OrderSnapshot, OrderStatusName, SecType

ZERO = Decimal(0)
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Requirements:
    init: Decimal
    maint: Decimal
    equity_with_loan: Decimal


class WhatIf(VenueCore):
    """The what-if half of the venue's order entry."""

    def _requirements(self, qtys: dict[int, Decimal], cash: Decimal) -> Requirements:
        init = maint = stock_value = ZERO
        for con_id, qty in qtys.items():
            inst = self._inst(con_id)
            if not qty or inst is None:
                continue
            mv = self._mark(con_id) * inst.multiplier * qty
            if inst.sec_type == SecType.OPT:
                if qty < 0:
                    und = inst.underlying_con_id
                    und_px = self._mark(und) if und else ZERO
                    req = abs(mv) + und_px * inst.multiplier * abs(qty) / 5
                    init += req
                    maint += req
            else:
                stock_value += mv
                init += abs(mv) / 2
                maint += abs(mv) / 4
        return Requirements(init, maint, cash + stock_value)

    def _legs(self, req: OrderRequest) -> list[tuple[int, Decimal, Decimal]]:
        """(con_id, signed quantity, price) of what the order would trade if filled whole."""
        sign = 1 if req.action == "BUY" else -1
        if req.sec_type is not SecType.BAG:
            price = req.lmt_price if req.lmt_price is not None else self._mark(req.con_id)
            return [(req.con_id, sign * req.total_qty, price)]
        out: list[tuple[int, Decimal, Decimal]] = []
        for leg in req.combo_legs:
            leg_sign = sign * (1 if leg.action == "BUY" else -1)
            out.append((leg.con_id, leg_sign * leg.ratio * req.total_qty, self._mark(leg.con_id)))
        return out

    def what_if(self, req: OrderRequest) -> OrderSnapshot:
        """The openOrder answering a what-if: margins before / change / after, nothing traded."""
        highest = self._max_id.get(req.client_id, 0)
        if req.order_id > highest:
            self._max_id[req.client_id] = req.order_id
            self._dirty = True
        acct = self._account
        before_qty = {c: p.qty for c, p in acct.positions.items() if p.qty}
        after_qty = dict(before_qty)
        cash = acct.cash
        for con_id, qty, price in self._legs(req):
            inst = self._inst(con_id)
            multiplier = inst.multiplier if inst is not None else 1
            after_qty[con_id] = after_qty.get(con_id, ZERO) + qty
            cash -= qty * price * multiplier
        before = self._requirements(before_qty, acct.cash)
        after = self._requirements(after_qty, cash)

        def money(v: Decimal) -> str:
            return str(v.quantize(CENT))

        # In openOrder's order: before, change, after; each init, maint, equity with loan.
        margins = (
            money(before.init),
            money(before.maint),
            money(before.equity_with_loan),
            money(after.init - before.init),
            money(after.maint - before.maint),
            money(after.equity_with_loan - before.equity_with_loan),
            money(after.init),
            money(after.maint),
            money(after.equity_with_loan),
        )
        return OrderSnapshot(
            request=req,
            perm_id=0,
            status=OrderStatusName.PRE_SUBMITTED,
            filled=ZERO,
            remaining=req.total_qty,
            avg_fill_price=ZERO,
            last_fill_price=ZERO,
            margins=margins,
        )
