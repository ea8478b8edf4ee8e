"""Choosing a child-order template from the intent (blueprint §6.2), and what a plan is.

The default rule, shared by the playbooks that do not override it:

| urgency | template | why |
|---|---|---|
| Immediate, High | Sweep | take liquidity now, rising aggressiveness inside the slippage band |
| Normal | Pegged Mid | rest at the midpoint, improve on the spread |
| Passive | TWAP | spread the size over time, capped at 10 % of the last 5 s bar |

A TWAP runs until the intent's `good_till` (GTD) or `DEFAULT_TWAP_SPAN` after it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from models.child_orders import Action, ChildPlan, Pricing, Template
from models.intent import Intent, TimeInForce, Urgency
from models.planners import pegged_mid, sweep, twap
from models.planners.twap import DEFAULT_CADENCE

DEFAULT_TWAP_SPAN = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Plan:
    """The children a playbook sends for an intent, the template they follow and why."""

    template: Template
    reason: str
    children: tuple[ChildPlan, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    """No plan: the intent is rejected with `code` (an intent never waits for nothing)."""

    code: str
    message: str


def action_of(intent: Intent) -> Action:
    """IB's action for the intent's side (BUY_TO_COVER buys, SELL_SHORT sells)."""
    return intent.wire_action


def deadline_of(intent: Intent, start: datetime, span: timedelta = DEFAULT_TWAP_SPAN) -> datetime:
    """When a schedule must be done: the intent's GTD time, else `span` after it starts."""
    if intent.time_in_force is TimeInForce.GTD and intent.good_till is not None:
        return max(intent.good_till, start)
    return start + span


def template_for(intent: Intent) -> tuple[Template, str]:
    """The template the intent's params name, else the default for its urgency."""
    named = intent.strategy_params.template
    if named is not None:
        return named, f"params name {named.value}"
    return by_urgency(intent)


def by_urgency(intent: Intent) -> tuple[Template, str]:
    """The default template for the intent's urgency (the table above)."""
    if intent.urgency in (Urgency.IMMEDIATE, Urgency.HIGH):
        return Template.SWEEP, f"urgency {intent.urgency.value}: sweep"
    if intent.urgency is Urgency.NORMAL:
        return Template.PEGGED_MID, "urgency Normal: pegged to the midpoint"
    return Template.TWAP, "urgency Passive: TWAP"


def children_for(template: Template, intent: Intent, now: datetime) -> tuple[ChildPlan, ...]:
    """The template's planner applied to the intent, starting now."""
    action = action_of(intent)
    if template is Template.SWEEP:
        return tuple(sweep(action, now))
    if template is Template.PEGGED_MID:
        return tuple(pegged_mid(action, now))
    if template is Template.TWAP:
        params = intent.strategy_params
        cadence = timedelta(seconds=params.cadence_s or DEFAULT_CADENCE.total_seconds())
        if params.slices is not None:
            # A fixed count at the cadence; a GTD deadline still ends it.
            deadline = min(deadline_of(intent, now), now + cadence * (params.slices - 1))
            return tuple(
                twap(action, intent.quantity, now, deadline, cadence=cadence, slices=params.slices)
            )
        return tuple(twap(action, intent.quantity, now, deadline_of(intent, now), cadence=cadence))
    if template is Template.MARKETABLE_LIMIT:
        return (
            ChildPlan(
                key="limit",
                template=Template.MARKETABLE_LIMIT,
                action=action,
                due_at=now,
                pricing=Pricing.TOUCH,
                tif="DAY",
                reason="a marketable limit at the touch",
            ),
        )
    raise ValueError(f"no default planner for {template}")


def default_plan(intent: Intent, now: datetime, why: str = "") -> Plan | Refusal:
    """The plan by the default rule (or the template the params name); `why` prefixes the
    reason with the playbook's own word."""
    template, reason = template_for(intent)
    if template is Template.BRACKET:
        return Refusal(
            "INVALID_PARAMS", f"{intent.strategy} cannot run a bracket: it has no exit rules"
        )
    return Plan(template, f"{why}{reason}", children_for(template, intent, now))
