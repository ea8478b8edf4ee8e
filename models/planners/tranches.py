"""Scaling exit: a position taken off in tranches spaced in time, each tranche a sweep.

Tranche t (of n) is due `t × spacing` after the start and asks for the intent's cumulative
share up to it (the last for whatever is left), as sweep steps of rising aggressiveness; what a
tranche did not get rolls into the next, and a tranche whose share is already done is skipped.
The 0DTE_Scalp playbook runs it for an exit with `params.tranches` > 1.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from models.child_orders import Action, ChildPlan
from models.planners.sweep import DEFAULT_INTERVAL, DEFAULT_STEPS, sweep
from models.planners.twap import slice_quantities

DEFAULT_SPACING = timedelta(seconds=60)


def tranches(
    action: Action,
    quantity: Decimal,
    start: datetime,
    *,
    count: int,
    spacing: timedelta = DEFAULT_SPACING,
    steps: int = DEFAULT_STEPS,
    interval: timedelta = DEFAULT_INTERVAL,
) -> list[ChildPlan]:
    """`quantity` out in `count` tranches every `spacing`, each a sweep of `steps`."""
    if count < 1:
        raise ValueError("at least one tranche")
    if spacing <= timedelta(0):
        raise ValueError("tranches are spaced by a positive time")
    plans: list[ChildPlan] = []
    cumulative = Decimal(0)
    for t, part in enumerate(slice_quantities(quantity, count)):
        cumulative += part
        last = t == count - 1
        for step in sweep(
            action, start + spacing * t, steps=steps, interval=interval, prefix=f"tranche{t + 1}"
        ):
            plans.append(
                replace(
                    step,
                    schedule_qty=None if last else cumulative,
                    reason=f"tranche {t + 1}/{count} ({part}), {step.reason}",
                )
            )
    return plans
