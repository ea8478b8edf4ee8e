"""Bracket: an entry with a profit taker and a protective stop, as IB links them.

The parent and the profit taker go out with `transmit` off and the stop last with `transmit` on:
nothing of the bracket works until the last child arrives (TWS protocol notes). The children name
the parent (IB `parentId`) and share an OCA group, so one filling cancels the other; both carry
the entry's full size (they protect whatever the entry filled, IB scales them to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from models.child_orders import Action, ChildPlan, Pricing, Template


@dataclass(frozen=True, slots=True)
class Exit:
    """The bracket's exits: a profit target price (optional) and a stop — fixed (`stop_price`)
    or trailing (`trail_amount` or `trail_percent`)."""

    profit_target: Decimal | None = None
    stop_price: Decimal | None = None
    trail_amount: Decimal | None = None
    trail_percent: Decimal | None = None

    def __post_init__(self) -> None:
        stops = [v for v in (self.stop_price, self.trail_amount, self.trail_percent) if v]
        if len(stops) != 1:
            raise ValueError("a bracket needs exactly one stop: a price, an amount or a percent")


def bracket(
    action: Action,
    quantity: Decimal,
    start: datetime,
    exit_: Exit,
    *,
    entry: Pricing = Pricing.TOUCH,
    entry_limit: Decimal | None = None,
    key: str = "bracket",
) -> list[ChildPlan]:
    oca = f"{key}-oca"
    plans = [
        ChildPlan(
            key=f"{key}-entry",
            template=Template.BRACKET,
            action=action,
            due_at=start,
            pricing=entry,
            quantity=quantity,
            limit_price=entry_limit,
            transmit=False,
            reason="bracket entry",
        )
    ]
    if exit_.profit_target is not None:
        plans.append(
            ChildPlan(
                key=f"{key}-target",
                template=Template.BRACKET,
                action=action.opposite,
                due_at=start,
                pricing=Pricing.FIXED,
                quantity=quantity,
                limit_price=exit_.profit_target,
                tif="GTC",
                parent_key=f"{key}-entry",
                transmit=False,
                oca_group=oca,
                reason="profit target",
            )
        )
    trailing = exit_.trail_amount is not None or exit_.trail_percent is not None
    plans.append(
        ChildPlan(
            key=f"{key}-stop",
            template=Template.BRACKET,
            action=action.opposite,
            due_at=start,
            pricing=Pricing.TRAIL if trailing else Pricing.STOP,
            quantity=quantity,
            aux_price=exit_.stop_price,
            trail_amount=exit_.trail_amount,
            trail_percent=exit_.trail_percent,
            tif="GTC",
            parent_key=f"{key}-entry",
            transmit=True,
            oca_group=oca,
            reason="trailing stop" if trailing else "protective stop",
        )
    )
    return plans
