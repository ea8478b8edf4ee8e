"""Spread_Roll: a multi-leg roll (the legs to close plus the legs to open) as one BAG combo.

The intent's `legs` define the combo per unit (`quantity` is in combo units). The combo goes
out first as one BAG limit at the net touch of its legs (Immediate / High urgency) or at their
net midpoint; if it has not filled within
`params.combo_window_s` (default 30 s), or the venue refuses it, it is cancelled and what is left
is sent leg by leg, the riskier leg first (`models.combos.fallback_order`: buys before sells, so
the book is never short an uncovered option), each a marketable limit; the delta the legs leave
is then hedged in the underlying (the orders path plans that hedge from the legs' fills).
Without legs a roll cannot be said: the intent is refused with `COMBO_LEGS_REQUIRED`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from models.child_orders import ChildPlan, Pricing, Template
from models.combos import fallback_order
from models.intent import Intent, Urgency
from models.playbook_params import RollParams
from models.playbooks.choice import Plan, Refusal, action_of


def plan(intent: Intent, now: datetime) -> Plan | Refusal:
    if not intent.legs:
        return Refusal(
            "COMBO_LEGS_REQUIRED",
            f"Spread_Roll needs the roll's legs; intent {intent.signal_id} names one instrument",
        )
    params = intent.strategy_params
    window = timedelta(seconds=params.combo_window_s if isinstance(params, RollParams) else 30)
    side = action_of(intent)
    urgent = intent.urgency in (Urgency.IMMEDIATE, Urgency.HIGH)
    where = "the net touch" if urgent else "the net midpoint"
    children = [
        ChildPlan(
            key="combo",
            template=Template.COMBO,
            action=side,
            due_at=now,
            pricing=Pricing.TOUCH if urgent else Pricing.MID,
            # Urgent: half-way from the net touch into the slippage band, so a quote that moves
            # a tick while the order travels does not leave the combo resting.
            aggression=Decimal("0.5") if urgent else Decimal(0),
            tif="DAY",
            reason=f"the roll as one BAG of {len(intent.legs)} legs at {where}",
        )
    ]
    order = fallback_order([(leg.action, leg.ratio) for leg in intent.legs], side)
    for rank, index in enumerate(order):
        leg = intent.legs[index]
        children.append(
            ChildPlan(
                key=f"leg-{index + 1}",
                template=Template.LEG,
                action=leg.action if side.buy else leg.action.opposite,
                due_at=now + window,
                pricing=Pricing.TOUCH,
                tif="DAY",
                leg=index,
                reason=f"legged fallback {rank + 1}/{len(order)}: {leg.instrument.text}",
            )
        )
    reason = (
        f"Spread_Roll, urgency {intent.urgency.value}: combo of {len(intent.legs)} legs, "
        f"legged after {int(window.total_seconds())} s"
    )
    return Plan(Template.COMBO, reason, tuple(children))
