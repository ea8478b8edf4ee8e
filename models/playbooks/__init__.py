"""Playbooks (blueprint §4.3): what each strategy sends for an intent, looked up by strategy.

`plan_intent(intent, now)` is the one entry: the strategy's playbook chooses a child-order
template (`models.playbooks.choice`) and the template's planner (`models.planners`) lays out the
children with due times and pricing rules. It returns a `Plan` (which template, why, the children)
or a `Refusal` with a reason code; it never raises for an intent intake admitted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType

from models.child_orders import Template
from models.intent import Intent
from models.playbooks.choice import Plan, Refusal
from models.playbooks.gamma_rebalance import plan as gamma_rebalance
from models.playbooks.momentum_eq import plan as momentum_eq
from models.playbooks.spread_roll import plan as spread_roll
from models.playbooks.zero_dte_scalp import plan as zero_dte_scalp

Playbook = Callable[[Intent, datetime], Plan | Refusal]

PLAYBOOKS: Mapping[str, Playbook] = MappingProxyType(
    {
        "0DTE_Scalp": zero_dte_scalp,
        "Spread_Roll": spread_roll,
        "Momentum_EQ": momentum_eq,
        "Gamma_Rebalance": gamma_rebalance,
    }
)


def on_slippage(intent: Intent, running: Template) -> Template | None:
    """What a slippage breach does to the rest of the plan (blueprint §6.5): the template to
    switch to, or None to abort. Momentum_EQ's sweep gives way to a pegged mid (it still wants
    the position, at a price that waits); every other plan stops."""
    if intent.strategy == "Momentum_EQ" and running is Template.SWEEP:
        return Template.PEGGED_MID
    return None


def plan_intent(intent: Intent, now: datetime) -> Plan | Refusal:
    """The plan of children for an admitted intent, or why there is none."""
    playbook = PLAYBOOKS.get(intent.strategy)
    if playbook is None:
        return Refusal("NO_PLAYBOOK", f"strategy {intent.strategy} has no playbook")
    return playbook(intent, now)


__all__ = ["PLAYBOOKS", "Plan", "Playbook", "Refusal", "on_slippage", "plan_intent"]
