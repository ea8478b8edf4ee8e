"""Child orders: what a plan holds (`ChildPlan`) and what one becomes when it is due (`price`).

A playbook turns an intent into a plan of children (blueprint §6.2); each child says when it is
due and how it is priced, not at what price: prices come from the market snapshot at send time
(`price`), so a slice due in ten minutes is priced on the market of ten minutes from now. A stale
or one-sided snapshot holds the child (`Hold`), it never prices an order.

Quantities at send time follow the plan's *schedule*: a child sends what its schedule target says
is due by now, less what already filled, never more than the intent has left nor more than the
participation cap (10 % of the last completed 5 s bar, NOTES) — so what one slice did not fill
rolls into the next, and nothing ever exceeds the intent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from models.fills import Side
from models.market import ZERO, MarketSnapshot, band_limit, round_to_tick

# NOTES: a child order's size is capped at 10 % of the latest completed 5 s bar's volume.
PARTICIPATION = Decimal("0.10")
# A snapshot older than this holds the plan (the bridge refreshes top of book many times a second).
DEFAULT_MAX_AGE = timedelta(seconds=5)


class Template(StrEnum):
    """Blueprint §6.2's child-order templates, plus a plain marketable limit."""

    SWEEP = "SWEEP"
    TWAP = "TWAP"
    PEGGED_MID = "PEGGED_MID"
    BRACKET = "BRACKET"
    MARKETABLE_LIMIT = "MARKETABLE_LIMIT"
    # Multi-leg (§6.4): the combo as one BAG order, its legged fallback, the residual hedge.
    COMBO = "COMBO"
    LEG = "LEG"
    HEDGE = "HEDGE"


class Pricing(StrEnum):
    """How a child's limit is set when it is due."""

    TOUCH = "TOUCH"  # marketable: the far side (ask to buy), moved `aggression` toward the band
    MID = "MID"  # the midpoint, `offset_ticks` toward the near side
    PASSIVE = "PASSIVE"  # the near side (bid to buy)
    FIXED = "FIXED"  # the plan's own price (a profit target)
    STOP = "STOP"  # a stop at the plan's `aux_price`
    TRAIL = "TRAIL"  # a trailing stop by `trail_amount` or `trail_percent`


# A child's action is the wire direction, one enum for fills, orders and children.
Action = Side


@dataclass(frozen=True, slots=True)
class ChildPlan:
    """One child as planned. `schedule_qty` is the intent's cumulative quantity due by this
    child (TWAP); None means "whatever is left" (a sweep step, an entry, an exit leg)."""

    key: str
    template: Template
    action: Action
    due_at: datetime
    pricing: Pricing
    schedule_qty: Decimal | None = None
    quantity: Decimal | None = None  # a fixed size (bracket legs), else the schedule decides
    aggression: Decimal = ZERO  # TOUCH: 0 = at the touch, 1 = at the slippage band's edge
    offset_ticks: int = 0
    limit_price: Decimal | None = None
    aux_price: Decimal | None = None
    trail_amount: Decimal | None = None
    trail_percent: Decimal | None = None
    capped: bool = False  # apply the participation cap
    tif: str = "DAY"
    route: str = "SMART"
    parent_key: str | None = None
    transmit: bool = True
    oca_group: str | None = None
    reason: str = ""
    leg: int | None = None  # a combo leg: its index in the intent's `legs`


@dataclass(frozen=True, slots=True)
class ChildOrder:
    """A child priced and sized, ready to be given an IB order id and sent."""

    key: str
    template: Template
    action: Action
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None
    aux_price: Decimal | None
    trail_percent: Decimal | None
    reference_price: Decimal | None
    tif: str
    route: str
    parent_key: str | None
    transmit: bool
    oca_group: str | None


@dataclass(frozen=True, slots=True)
class Hold:
    """The child is not sent now (it stays due): why, in words an operator reads."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Skip:
    """The child will never be sent (nothing left for it to do)."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Progress:
    """Where the intent stands when a child is due: how much filled, how much is left, and
    the reference price its slippage is measured against."""

    filled: Decimal
    target: Decimal
    reference: Decimal | None
    max_slippage_bps: Decimal

    @property
    def remaining(self) -> Decimal:
        return max(self.target - self.filled, ZERO)


def size(
    plan: ChildPlan, progress: Progress, snapshot: MarketSnapshot | None
) -> Decimal | Hold | Skip:
    """The child's quantity now: `Skip` when its share is already done, `Hold` when the
    participation cap leaves nothing this bar."""
    if plan.quantity is not None:
        # A bracket leg protects the whole entry; an entry never exceeds what is left.
        wanted = plan.quantity if plan.parent_key else min(plan.quantity, progress.remaining)
    elif plan.schedule_qty is not None:
        wanted = min(plan.schedule_qty - progress.filled, progress.remaining)
    else:
        wanted = progress.remaining
    wanted = wanted.to_integral_value(rounding="ROUND_FLOOR")
    if wanted <= 0:
        return Skip(plan.key, "nothing left for this child")
    if plan.capped and snapshot is not None and snapshot.bar_volume is not None:
        cap = (snapshot.bar_volume * PARTICIPATION).to_integral_value(rounding="ROUND_FLOOR")
        if cap <= 0:
            return Hold(plan.key, f"participation cap is zero (last bar {snapshot.bar_volume})")
        wanted = min(wanted, cap)
    return wanted


def price(
    plan: ChildPlan,
    progress: Progress,
    snapshot: MarketSnapshot | None,
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> ChildOrder | Hold | Skip:
    """Size and price `plan` on `snapshot` at `now` (see the module docstring)."""
    if progress.remaining <= 0 and plan.parent_key is None:
        return Skip(plan.key, "the intent is filled")
    needs_market = plan.pricing in (Pricing.TOUCH, Pricing.MID, Pricing.PASSIVE) or plan.capped
    if needs_market:
        if snapshot is None:
            return Hold(plan.key, "no market data")
        if snapshot.stale(now, max_age):
            age = snapshot.age(now).total_seconds()
            return Hold(
                plan.key, f"market data {age:.1f}s old (limit {max_age.total_seconds():g}s)"
            )
        if snapshot.halted:
            return Hold(plan.key, "instrument halted")
        if plan.capped and snapshot.bar_volume is None:
            return Hold(plan.key, "no completed 5 s bar for the participation cap")
    quantity = size(plan, progress, snapshot)
    if isinstance(quantity, Hold | Skip):
        return quantity
    limit, order_type = _limit(plan, progress, snapshot)
    if isinstance(limit, Hold):
        return limit
    return ChildOrder(
        key=plan.key,
        template=plan.template,
        action=plan.action,
        quantity=quantity,
        order_type=order_type,
        limit_price=limit,
        aux_price=plan.aux_price if plan.pricing is Pricing.STOP else plan.trail_amount,
        trail_percent=plan.trail_percent if plan.pricing is Pricing.TRAIL else None,
        reference_price=_reference(plan, progress, snapshot),
        tif=plan.tif,
        route=plan.route,
        parent_key=plan.parent_key,
        transmit=plan.transmit,
        oca_group=plan.oca_group,
    )


def _reference(
    plan: ChildPlan, progress: Progress, snapshot: MarketSnapshot | None
) -> Decimal | None:
    if progress.reference is not None:
        return progress.reference
    if snapshot is None:
        return plan.limit_price
    return snapshot.mid or snapshot.last


def _limit(
    plan: ChildPlan, progress: Progress, snapshot: MarketSnapshot | None
) -> tuple[Decimal | Hold | None, str]:
    buy = plan.action.buy
    if plan.pricing is Pricing.FIXED:
        return plan.limit_price, "LMT"
    if plan.pricing is Pricing.STOP:
        return None, "STP"
    if plan.pricing is Pricing.TRAIL:
        return None, "TRAIL"
    if snapshot is None:
        return Hold(plan.key, "no market data"), "LMT"
    tick = snapshot.min_tick
    if plan.pricing is Pricing.TOUCH:
        touch = snapshot.touch(buy)
        if touch is None:
            return Hold(plan.key, "no price on the far side"), "LMT"
        edge = band_limit(
            progress.reference or snapshot.mid or touch, progress.max_slippage_bps, buy
        )
        if touch > edge if buy else touch < edge:
            return Hold(plan.key, f"the touch {touch} is beyond the slippage band {edge}"), "LMT"
        # Between the touch (aggression 0) and the band's edge (1); rounded away from crossing,
        # so the tick grid never takes it past the band.
        target = touch + (edge - touch) * plan.aggression
        return round_to_tick(target, tick, buy, aggressive=False), "LMT"
    if plan.pricing is Pricing.MID:
        mid = snapshot.mid
        if mid is None:
            return Hold(plan.key, "no two-sided quote for the midpoint"), "LMT"
        shifted = mid - tick * plan.offset_ticks if buy else mid + tick * plan.offset_ticks
        return round_to_tick(shifted, tick, buy, aggressive=False), "LMT"
    near = snapshot.passive(buy)
    if near is None:
        return Hold(plan.key, "no price on the near side"), "LMT"
    return near, "LMT"


def with_due(plan: ChildPlan, due_at: datetime) -> ChildPlan:
    """The same child, due at another time (a slice rolled forward)."""
    return replace(plan, due_at=due_at)


def plan_to_json(plan: ChildPlan) -> dict[str, object]:
    """The plan as JSON-safe data (Decimals as strings, times in ISO-8601), for the ledger."""
    data: dict[str, object] = {}
    for name in ChildPlan.__dataclass_fields__:
        value = getattr(plan, name)
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, StrEnum):
            value = value.value
        data[name] = value
    return data


_DECIMAL_FIELDS = frozenset(
    {"schedule_qty", "quantity", "aggression", "limit_price", "aux_price", "trail_amount"}
    | {"trail_percent"}
)


def plan_from_json(data: dict[str, object]) -> ChildPlan:
    """The plan `plan_to_json` stored (raises KeyError / ValueError on anything else)."""
    values: dict[str, object] = {}
    for name in ChildPlan.__dataclass_fields__:
        if name not in data:
            continue
        value = data[name]
        if value is not None and name in _DECIMAL_FIELDS:
            value = Decimal(str(value))
        values[name] = value
    values["template"] = Template(str(data["template"]))
    values["action"] = Action(str(data["action"]))
    values["pricing"] = Pricing(str(data["pricing"]))
    values["due_at"] = datetime.fromisoformat(str(data["due_at"]))
    values["offset_ticks"] = int(str(data.get("offset_ticks", 0)))
    leg = data.get("leg")
    values["leg"] = None if leg is None else int(str(leg))
    return ChildPlan(**values)  # type: ignore[arg-type]
