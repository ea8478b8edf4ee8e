"""Spread_Roll: a multi-leg roll (close legs + open legs) as one BAG combo order.

An intent names one instrument today: the schema has no `legs` yet, so a roll cannot be said,
and sending one leg of a roll would leave the book unhedged. The intent is refused with
`COMBO_LEGS_REQUIRED` rather than traded as something it is not.
"""

from __future__ import annotations

from datetime import datetime

from models.intent import Intent
from models.playbooks.choice import Plan, Refusal


def plan(intent: Intent, now: datetime) -> Plan | Refusal:
    return Refusal(
        "COMBO_LEGS_REQUIRED",
        f"Spread_Roll needs the roll's legs; intent {intent.signal_id} names one instrument",
    )
