"""What the audit log says about an intake decision, pure: the action, target and details of
one `audit_log` row per stored submission, so a reviewer sees why an intent went through or not
with the numbers the gates compared, without joining the intents table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.admission import Admit, Refuse
from models.intent import Intent
from models.limits import Limits, instrument_limits, strategy_limits
from models.risk import MarketFacts, check_order, order_facts

__all__ = ["AuditRecord", "intake_record"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    action: str
    target: str
    details: dict[str, Any]


def _intent_terms(intent: Intent) -> dict[str, Any]:
    return {
        "strategy": intent.strategy,
        "instrument": intent.instrument.text,
        "side": intent.side.value,
        "quantity": intent.quantity,
        "target_price": intent.target_price,
        "urgency": intent.urgency.value,
    }


def _caps(intent: Intent, limits: Limits) -> dict[str, Any]:
    inst = instrument_limits(limits, intent.instrument.text)
    strat = strategy_limits(limits, intent.strategy)
    return {
        "max_order_quantity": inst.max_order_quantity,
        "max_order_notional": inst.max_order_notional,
        "max_position_quantity": strat.max_position_quantity,
    }


def intake_record(
    decision: Admit | Refuse, *, limits: Limits | None, market: MarketFacts | None
) -> AuditRecord:
    """The row for an intent received and decided: `intent_admitted` with the caps it was checked
    against, or `intent_refused` with the code, message and the gate's numbers when a gate
    refused it (recomputed here: the gates are pure, so this is the same breach)."""
    if isinstance(decision, Admit):
        intent = decision.intent
        details: dict[str, Any] = {"status": "VALIDATED", **_intent_terms(intent)}
        if limits is not None:
            details["limits"] = _caps(intent, limits)
        return AuditRecord("intent_admitted", f"intent:{intent.signal_id}", details)
    reject = decision.reject
    details = {
        "status": "REJECTED",
        "reason": reject.reason.value,
        "message": reject.message,
    }
    if reject.field is not None:
        details["field"] = reject.field
    refused = decision.intent
    if refused is not None:
        details.update(_intent_terms(refused))
        if limits is not None:
            breach = check_order(order_facts(refused), limits, market or MarketFacts())
            if breach is not None and breach.reason == reject.reason:
                details["numbers"] = dict(breach.numbers)
    return AuditRecord("intent_refused", f"intent:{reject.signal_id}", details)
