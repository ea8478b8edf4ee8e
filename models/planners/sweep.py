"""Sweep: marketable steps across venues with rising aggressiveness (urgent fills, 0DTE entries).

Step k (of n) is an IOC limit due `k × interval` after the start, priced from the touch toward the
slippage band's edge (`aggression` k/(n-1)), routed to the next venue of `routes` in turn. Each step
takes whatever the intent still needs when it is due, so the sweep ends once filled; a touch beyond
the band holds the step (the playbook then aborts or switches template).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from models.child_orders import Action, ChildPlan, Pricing, Template

DEFAULT_STEPS = 4
DEFAULT_INTERVAL = timedelta(seconds=1)


def sweep(
    action: Action,
    start: datetime,
    *,
    steps: int = DEFAULT_STEPS,
    interval: timedelta = DEFAULT_INTERVAL,
    routes: Sequence[str] = ("SMART",),
    prefix: str = "sweep",
) -> list[ChildPlan]:
    if steps < 1:
        raise ValueError("a sweep has at least one step")
    if not routes:
        raise ValueError("a sweep needs at least one route")
    last = max(steps - 1, 1)
    return [
        ChildPlan(
            key=f"{prefix}-{k + 1}",
            template=Template.SWEEP,
            action=action,
            due_at=start + interval * k,
            pricing=Pricing.TOUCH,
            aggression=Decimal(k) / Decimal(last) if steps > 1 else Decimal(0),
            tif="IOC",
            route=routes[k % len(routes)],
            reason=f"sweep step {k + 1}/{steps}",
        )
        for k in range(steps)
    ]
