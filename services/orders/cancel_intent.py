"""Use case: an operator cancels an intent (`epm cancel-intent SIGNAL_ID`), audited.

load the intent (locked) → `wind_down` its children → the intent CANCELLED, an `audit_log` row
with who and why → after commit, the bridge is asked to cancel each child that may be working.
Idempotent: an intent already ended is reported as it is, and nothing is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from epm.logging import get_logger
from models.intent import ACTIVE_STATUSES, IntentStatus
from services.orders.venue import Venue
from services.orders.wind_down import wind_down
from store import intent_life
from store.audit import insert_audit
from store.db import write_transaction

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What the cancel did: `outcome` cancelled / already_ended / not_found."""

    outcome: str
    signal_id: str
    status: str | None = None
    cancels_sent: list[int] = field(default_factory=list)


def cancel_intent(
    engine: Engine, venue: Venue, signal_id: str, *, actor: str, reason: str, now: datetime
) -> Cancelled:
    """Cancel the intent's working children and end it CANCELLED (see the module docstring)."""
    with write_transaction(engine) as conn:
        found = intent_life.by_signal_id(conn, signal_id)
        row = None if found is None else intent_life.lock(conn, found.id)
        if row is None:
            return Cancelled("not_found", signal_id)
        if IntentStatus(row.status) not in ACTIVE_STATUSES:
            return Cancelled("already_ended", signal_id, row.status)
        to_cancel = wind_down(
            conn, row.id, f"intent cancelled by {actor}: {reason}", now, exits=True
        )
        intent_life.set_status(
            conn,
            row.id,
            IntentStatus.CANCELLED.value,
            now,
            reason="CANCELLED_BY_OPERATOR",
            message=f"{actor}: {reason}",
        )
        insert_audit(
            conn,
            ts=now,
            actor=actor,
            action="cancel_intent",
            target=f"intent:{signal_id}",
            details={"reason": reason, "cancels": ",".join(str(i) for i in to_cancel)},
        )
    for ib_order_id in to_cancel:
        venue.cancel(ib_order_id)
    log.info("orders.intent_cancelled", signal_id=signal_id, actor=actor, cancels=to_cancel)
    return Cancelled("cancelled", signal_id, IntentStatus.CANCELLED.value, to_cancel)
