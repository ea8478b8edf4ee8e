"""Gamma_Rebalance: hedge in many small increments; partial fills are expected.

Whatever the urgency, the hedge is spread as a TWAP (each slice capped at 10 % of the last 5 s
bar), except Immediate, which sweeps: a hedge that must be on now is taken now.
"""

from __future__ import annotations

from datetime import datetime

from models.child_orders import Template
from models.intent import Intent, Urgency
from models.playbooks.choice import Plan, Refusal, children_for, default_plan


def plan(intent: Intent, now: datetime) -> Plan | Refusal:
    if intent.urgency is Urgency.IMMEDIATE or intent.strategy_params.template is not None:
        return default_plan(intent, now, "Gamma_Rebalance, ")
    reason = f"Gamma_Rebalance, urgency {intent.urgency.value}: hedge increments as a TWAP"
    return Plan(Template.TWAP, reason, children_for(Template.TWAP, intent, now))
