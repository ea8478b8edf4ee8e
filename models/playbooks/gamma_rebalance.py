"""Gamma_Rebalance: hedge in many small increments; partial fills are expected.

Whatever the urgency, the hedge is spread as a TWAP (each slice capped at 10 % of the last 5 s
bar), except Immediate, which sweeps: a hedge that must be on now is taken now. With
`params.increment` no slice is larger (the count follows); `target_delta` and
`hedge_instrument` are recorded for the books, the intent's quantity being the hedge itself.
"""

from __future__ import annotations

from datetime import datetime

from models.child_orders import Template
from models.intent import Intent, Urgency
from models.playbook_params import GammaParams
from models.playbooks.choice import Plan, Refusal, children_for, default_plan


def plan(intent: Intent, now: datetime) -> Plan | Refusal:
    if intent.urgency is Urgency.IMMEDIATE or intent.strategy_params.template is not None:
        return default_plan(intent, now, "Gamma_Rebalance, ")
    params = intent.strategy_params
    increment = params.increment if isinstance(params, GammaParams) else None
    if increment is not None and params.slices is None:
        # As many slices as increments fit (each at most `increment`, spread evenly), at the
        # TWAP's cadence.
        slices = max(1, -(-int(intent.quantity) // int(increment)))
        sized = intent.model_copy(
            update={"params": {**(intent.params or {}), "slices": min(slices, 500)}}
        )
        reason = (
            f"Gamma_Rebalance, urgency {intent.urgency.value}: {slices} hedge increments of "
            f"at most {increment} as a TWAP"
        )
        return Plan(Template.TWAP, reason, children_for(Template.TWAP, sized, now))
    reason = f"Gamma_Rebalance, urgency {intent.urgency.value}: hedge increments as a TWAP"
    return Plan(Template.TWAP, reason, children_for(Template.TWAP, intent, now))
