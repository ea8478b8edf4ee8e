"""0DTE_Scalp: aggressive entry on SPY/QQQ same-day options.

Immediate and High urgency sweep (the default rule); Normal pegs to the mid; Passive, rare for a
scalp, still runs a TWAP. The flat-by-15:55 ET exit and the scaling exit in tranches are
monitoring rules of the position, not of the entry plan.
"""

from __future__ import annotations

from datetime import datetime

from models.intent import Intent
from models.playbooks.choice import Plan, Refusal, default_plan


def plan(intent: Intent, now: datetime) -> Plan | Refusal:
    return default_plan(intent, now, "0DTE_Scalp, ")
