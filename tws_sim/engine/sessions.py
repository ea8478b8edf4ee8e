"""Time passing for the venue: the regular session opening and closing (the closing auction
for MOC/LOC, the opening one for OPG, DAY orders expiring at the close, waiting orders starting
at the open) and GTD orders expiring at their time.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from tws_sim.engine.fills import Fills
from tws_sim.engine.matching import crosses
from tws_sim.engine.orders import AUCTION_CLOSE_TYPES, WorkingOrder
from tws_sim.types import HaltState, OrderStatusName, VenueEvent

_SUBMITTED = OrderStatusName.SUBMITTED
_PRE = OrderStatusName.PRE_SUBMITTED


class Sessions(Fills):
    """Session transitions, auctions and expiries (see the module docstring)."""

    def _session_transitions(self, now: datetime, out: list[VenueEvent]) -> None:
        """Run the closing or the opening auction when the session flipped since the last call; the
        first call only records the state, so a venue started mid-session runs no auction."""
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
        """Expire GTD orders whose good-till time has come (and forget the ones already done)."""
        for key, order in list(self._gtd.items()):
            gt = order.req.good_till
            if order.done:
                del self._gtd[key]
            elif gt is not None and now >= gt:
                del self._gtd[key]
                self._expire(order, now, out)
