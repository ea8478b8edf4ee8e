"""Momentum_EQ: SMART-routed equity entry by the default rule.

The trailing stop and profit target (one bracket / OCA group) need the intent's `params`, which
the schema does not carry yet; until then the entry is planned alone.
"""

from __future__ import annotations

from datetime import datetime

from models.intent import Intent
from models.playbooks.choice import Plan, Refusal, default_plan


def plan(intent: Intent, now: datetime) -> Plan | Refusal:
    return default_plan(intent, now, "Momentum_EQ, ")
