"""Pegged mid: one working limit at the midpoint (less an offset), re-priced in place.

IB's own PEG MID exists only on some venues; a midpoint limit re-priced by epm works everywhere
SMART routes. `reprice` says when the working order should move (same order id, a modify): the mid
moved by at least a tick, and not more often than `throttle` — or the spread widened past
`wide_spread_bps`, which moves it at once to the more passive price.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from models.child_orders import Action, ChildPlan, Pricing, Template
from models.market import MarketSnapshot, round_to_tick

DEFAULT_THROTTLE = timedelta(seconds=2)
WIDE_SPREAD_BPS = Decimal(50)


def pegged_mid(
    action: Action, start: datetime, *, offset_ticks: int = 0, key: str = "peg"
) -> list[ChildPlan]:
    return [
        ChildPlan(
            key=key,
            template=Template.PEGGED_MID,
            action=action,
            due_at=start,
            pricing=Pricing.MID,
            offset_ticks=offset_ticks,
            tif="DAY",
            reason=f"midpoint less {offset_ticks} tick(s)",
        )
    ]


def target_price(action: Action, snapshot: MarketSnapshot, offset_ticks: int) -> Decimal | None:
    mid = snapshot.mid
    if mid is None:
        return None
    tick = snapshot.min_tick
    shifted = mid - tick * offset_ticks if action.buy else mid + tick * offset_ticks
    return round_to_tick(shifted, tick, action.buy, aggressive=False)


def reprice(
    action: Action,
    working_price: Decimal,
    snapshot: MarketSnapshot,
    now: datetime,
    last_priced_at: datetime,
    *,
    offset_ticks: int = 0,
    throttle: timedelta = DEFAULT_THROTTLE,
    wide_spread_bps: Decimal = WIDE_SPREAD_BPS,
    max_age: timedelta = timedelta(seconds=5),
) -> Decimal | None:
    """The new limit for the working order, or None to leave it where it is."""
    if snapshot.stale(now, max_age) or snapshot.halted:
        return None
    wanted = target_price(action, snapshot, offset_ticks)
    if wanted is None or wanted == working_price:
        return None
    spread = snapshot.spread_bps
    widened = spread is not None and spread > wide_spread_bps
    if widened:
        # Further from crossing than the mid: back off at once.
        near = snapshot.passive(action.buy)
        more_passive = near if near is not None else wanted
        if (more_passive < working_price) if action.buy else (more_passive > working_price):
            return more_passive
    if now - last_priced_at < throttle:
        return None
    if abs(wanted - working_price) < snapshot.min_tick:
        return None
    return wanted
