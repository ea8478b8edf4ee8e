"""Momentum_EQ: SMART-routed equity entry; with a trailing stop in its params, one bracket.

With `params.trail_amount` or `params.trail_percent` (and optionally `profit_target`) the entry
goes out as the parent of a bracket: a TRAIL stop and the profit-taking limit as an OCA pair, so
one filling cancels the other (`models.planners.bracket`). The entry takes the touch for
Immediate / High urgency and the midpoint otherwise. Without exit params the entry follows the
default rule (`models.playbooks.choice`).
"""

from __future__ import annotations

from datetime import datetime

from models.child_orders import Pricing, Template
from models.intent import Intent, Urgency
from models.planners import Exit, bracket
from models.playbook_params import MomentumParams
from models.playbooks.choice import Plan, Refusal, action_of, default_plan


def plan(intent: Intent, now: datetime) -> Plan | Refusal:
    params = intent.strategy_params
    if not isinstance(params, MomentumParams) or not params.trails:
        return default_plan(intent, now, "Momentum_EQ, ")
    urgent = intent.urgency in (Urgency.IMMEDIATE, Urgency.HIGH)
    entry = Pricing.TOUCH if urgent else Pricing.MID
    exit_ = Exit(
        profit_target=params.profit_target,
        trail_amount=params.trail_amount,
        trail_percent=params.trail_percent,
    )
    trail = (
        f"trailing {params.trail_amount}"
        if params.trail_amount is not None
        else f"trailing {params.trail_percent}%"
    )
    target = f", target {params.profit_target}" if params.profit_target is not None else ""
    reason = (
        f"Momentum_EQ, urgency {intent.urgency.value}: bracket, entry at the "
        f"{'touch' if urgent else 'midpoint'}, {trail} stop{target}"
    )
    children = bracket(action_of(intent), intent.quantity, now, exit_, entry=entry)
    return Plan(Template.BRACKET, reason, tuple(children))
