"""Time passing for the venue: the regular session opening and closing (the closing auction
for MOC/LOC, the opening one for OPG, DAY orders expiring at the close, options expiring that
day settled, waiting orders starting at the open of the next session) and GTD orders expiring
at their time.

At the close of a session day, as at IB:
- MOC/LOC orders trade in the closing auction;
- DAY orders expire (Cancelled, no 202), but a stock's DAY order with outsideRth, which keeps
  working after hours and expires at the end of the extended session (20:00 ET, 17:00 on an
  early-close day);
- options expiring that day expire: working orders for them (any TIF, combos with such a leg)
  are cancelled, and positions in them settle at the underlying's closing price, as OCC's
  exercise by exception does: an option in the money by $0.01 or more is exercised (long) or
  assigned (short), the underlying bought or sold at the strike (multiplier x contracts); the
  rest expire worthless. The option leaves the account at 0 and no commission is charged; the
  client sees position changes (position, updatePortfolio, the account), not executions, and
  the expired contract is unknown from then on (200).
The next session is the next XNYS session day (weekends and holidays skipped, 13:00 ET on
early-close days): at its open OPG orders trade and waiting orders start working.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from tws_sim.engine.fills import Fills
from tws_sim.engine.matching import crosses
from tws_sim.engine.orders import AUCTION_CLOSE_TYPES, WorkingOrder
from tws_sim.market.clock import ET, extended_bounds
from tws_sim.types import HaltState, Instrument, OrderStatusName, Right, SecType, VenueEvent

ZERO = Decimal(0)
CENT = Decimal("0.01")

_SUBMITTED = OrderStatusName.SUBMITTED
_PRE = OrderStatusName.PRE_SUBMITTED


class Sessions(Fills):
    """Session transitions, auctions and expiries (see the module docstring)."""

    def _session_transitions(self, now: datetime, out: list[VenueEvent]) -> None:
        """Run the closing or the opening auction when the session flipped since the last call; the
        first call only records the state, so a venue started mid-session runs no auction. DAY
        orders kept for after-hours trading expire when the extended session ends."""
        is_open = self._open(now)
        if is_open:
            day = now.astimezone(ET).date()
            if day != self._session_day:
                self._session_day = day
                self._dirty = True
        ext = self._ext_expiry
        if ext is not None and now >= ext:
            self._ext_expiry = None
            self._dirty = True
            for order in list(self._orders.values()):
                if not order.done and order.req.tif == "DAY" and order.req.outside_rth:
                    self._expire(order, now, out)
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
        """The auction's price: the open for the opening auction, else the last trade, else the mid
        (the simulator has no real cross to compute)."""
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
        """At the close: MOC/LOC fill at the closing price, DAY orders expire (a stock's with
        outsideRth at the end of the extended session), then the day's options expire."""
        for order in list(self._orders.values()):
            if order.done or order.req.order_type not in AUCTION_CLOSE_TYPES:
                continue
            if order.held or order.waiting_parent:
                continue
            limited = order.req.order_type == "LOC"
            self._auction_fill(order, opening=False, limited=limited, now=now, out=out)
        day = self._session_day or now.astimezone(ET).date()
        ext = extended_bounds(day)
        after_hours = ext[1] if ext is not None and now < ext[1] else None
        for order in list(self._orders.values()):
            if order.done or order.req.tif != "DAY":
                continue
            req = order.req
            if after_hours is not None and req.outside_rth and req.sec_type == SecType.STK:
                self._ext_expiry = after_hours
                self._dirty = True
                continue
            self._expire(order, now, out)
        self._expire_options(day, now, out)

    def _expire_options(self, day: date, now: datetime, out: list[VenueEvent]) -> None:
        """The options expiring on `day` (or before, not yet expired) leave: their working
        orders are cancelled, then every position in them settles (module docstring)."""
        through = self._expired_through
        if through is not None and day <= through:
            return
        self._expired_through = day
        self._dirty = True
        for order in list(self._orders.values()):
            if order.done:
                continue
            req = order.req
            cons = [leg.con_id for leg in req.combo_legs] if order.is_combo else [req.con_id]
            if any((i := self._inst(c)) is not None and self._expired(i) for c in cons):
                self._expire(order, now, out)
        spots: dict[int, Decimal] = {}
        for con_id, pos in list(self._account.positions.items()):
            inst = self._inst(con_id)
            if not pos.qty or inst is None or inst.sec_type != SecType.OPT:
                continue
            if not self._expired(inst) or inst.underlying_con_id is None:
                continue
            und = inst.underlying_con_id
            if und not in spots:
                spots[und] = self._auction_price(und, opening=False)
            self._settle(inst, pos.qty, spots[und], now, out)

    def _settle(
        self, inst: Instrument, qty: Decimal, spot: Decimal, now: datetime, out: list[VenueEvent]
    ) -> None:
        """One expiring option position at the underlying's closing price `spot`: exercised or
        assigned when in the money by a cent or more (the underlying at the strike), else it
        expires worthless; the option leaves the account at 0 either way."""
        strike = inst.strike or ZERO
        call = inst.right == Right.CALL
        intrinsic = spot - strike if call else strike - spot
        itm = spot > 0 and intrinsic >= CENT
        long = qty > 0
        kind = ("exercise" if long else "assignment") if itm else "expiration"
        ref = f"{kind}.{inst.con_id}.{now.astimezone(ET):%Y%m%d}"
        contracts = abs(qty)
        self._book_settlement(kind, inst, not long, contracts, ZERO, ref, now, out)
        und = self._inst(inst.underlying_con_id or 0)
        if itm and und is not None:
            # a long call or a short put buys the underlying; a long put or a short call sells it
            buys = call == long
            shares = contracts * inst.multiplier
            self._book_settlement(kind, und, buys, shares, strike, ref + ".und", now, out)

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
        """Expire GTD orders whose good-till time has come (and forget the ones already done)."""
        for key, order in list(self._gtd.items()):
            gt = order.req.good_till
            if order.done:
                del self._gtd[key]
            elif gt is not None and now >= gt:
                del self._gtd[key]
                self._expire(order, now, out)
