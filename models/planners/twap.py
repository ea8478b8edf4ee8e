"""TWAP: slices at a fixed cadence until a deadline (low urgency, large size).

The intent's quantity is spread over `ceil((deadline - start) / cadence)` slices (at least one),
whole shares, earlier slices taking the remainder. Each slice is a marketable IOC limit (at the
touch, within the slippage band) capped at 10 % of the last completed 5 s bar; its size is the
schedule's cumulative target less what already filled, so what one slice did not get rolls into
the next, and the last slice, due at the deadline, asks for everything left, priced up to the
edge of the slippage band so the schedule finishes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from models.child_orders import Action, ChildPlan, Pricing, Template

DEFAULT_CADENCE = timedelta(seconds=15)


def slice_quantities(quantity: Decimal, slices: int) -> list[Decimal]:
    """`quantity` in `slices` whole parts that differ by at most one, largest first."""
    if slices < 1:
        raise ValueError("at least one slice")
    whole = int(quantity)
    base, extra = divmod(whole, slices)
    return [Decimal(base + (1 if k < extra else 0)) for k in range(slices)]


def slice_count(start: datetime, deadline: datetime, cadence: timedelta) -> int:
    """Slices at `start`, `start + cadence`, … up to the deadline (at least one)."""
    if cadence <= timedelta(0):
        raise ValueError("the cadence must be positive")
    span = deadline - start
    return 1 if span <= timedelta(0) else span // cadence + 1


def twap(
    action: Action,
    quantity: Decimal,
    start: datetime,
    deadline: datetime,
    *,
    cadence: timedelta = DEFAULT_CADENCE,
    slices: int | None = None,
    prefix: str = "twap",
) -> list[ChildPlan]:
    """Slices every `cadence` from `start` up to `deadline`; `slices` instead fixes the count
    and spreads them evenly from `start` to `deadline` (both included)."""
    count = slices if slices is not None else slice_count(start, deadline, cadence)
    if count < 1:
        raise ValueError("at least one slice")
    if slices is None:
        step = cadence
    else:
        step = (deadline - start) / (count - 1) if count > 1 else timedelta(0)
    parts = slice_quantities(quantity, count)
    plans: list[ChildPlan] = []
    cumulative = Decimal(0)
    for k, part in enumerate(parts):
        cumulative += part
        last = k == count - 1
        plans.append(
            ChildPlan(
                key=f"{prefix}-{k + 1}",
                template=Template.TWAP,
                action=action,
                due_at=min(start + step * k, deadline) if count > 1 else start,
                pricing=Pricing.TOUCH,
                # The last slice asks for all that is left, as far as the slippage band allows:
                # the schedule ends at the deadline.
                schedule_qty=None if last else cumulative,
                aggression=Decimal(1) if last and count > 1 else Decimal(0),
                capped=True,
                tif="IOC",
                reason=f"slice {k + 1}/{count}",
            )
        )
    return plans
