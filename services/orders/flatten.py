"""Use case: 0DTE positions flat before the close (blueprint §4.3), on beat.

For every open 0DTE_Scalp position whose option expires today: from 5 minutes before the
session's close (the exchange calendar's: 15:55 ET, 12:55 on an early-close day), unless the
intent that opened it asked to hold it to expiry, an Immediate intent closing it is submitted
through intake (`services.intake.process_submission`) and planned at once (a sweep). One
attempt at a time: attempt n+1 only once attempt n has ended and the position is still open,
so a partial close is retried and a working one never doubled. The decisions are
`models.playbooks.zero_dte_scalp` (`must_flatten`, `flatten_payload`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import redis
from sqlalchemy.engine import Connection, Engine

from epm.logging import get_logger
from models.clock import WALL_CLOCK, SessionClock
from models.intent import ACTIVE_STATUSES, IntentStatus, checks_on_session_day
from models.playbooks.zero_dte_scalp import flatten_payload, must_flatten
from services.intake import process_submission
from services.orders.plan_intent import plan_admitted
from services.orders.venue import Venue
from store import contracts as contracts_repo
from store import intent_life
from store import positions as positions_repo

log = get_logger(__name__)

STRATEGY = "0DTE_Scalp"
# The flatten intents are the desk's own risk action: the strategy's concurrency guard, meant
# for signal producers, must never refuse them.
UNGUARDED = 1_000_000


def _expiry(value: object) -> date | None:
    text = str(value or "")[:8]
    if len(text) != 8 or not text.isdigit():
        return None
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def _holds(conn: Connection, con_id: int) -> bool:
    latest = intent_life.latest_for(conn, STRATEGY, con_id)
    if latest is None:
        return False
    payload = latest.payload or {}
    params = payload.get("params") or {}
    return payload.get("expiry_policy") == "hold_to_expiry" or bool(params.get("hold_to_expiry"))


def flatten_expiring(
    engine: Engine,
    venue: Venue,
    redis_client: redis.Redis,
    now: datetime,
    *,
    today: date,
    close: datetime | None,
    client_id: int,
    plan: Callable[..., object] = plan_admitted,
    clock: SessionClock = WALL_CLOCK,
) -> list[str]:
    """Submit (and plan) the closing intents due now; their signal_ids.

    The flat-by rule reads the session's clock (`clock`: the venue's, under an accelerated
    simulator); `now` (the wall clock) stamps what is submitted and planned.
    """
    rule_now = clock.session_at(now)
    submitted: list[str] = []
    with engine.connect() as conn:
        positions = positions_repo.open_of(conn, STRATEGY)
        due: list[dict[str, object]] = []
        for position in positions:
            contract = contracts_repo.described(conn, position.con_id) or {}
            expiry = _expiry(contract.get("expiry"))
            hold = _holds(conn, position.con_id)
            if not must_flatten(expiry=expiry, today=today, now=rule_now, close=close, hold=hold):
                continue
            prefix = f"flat-{today:%Y%m%d}-{position.con_id}-"
            attempts = intent_life.with_prefix(conn, prefix)
            if any(IntentStatus(a.status) in ACTIVE_STATUSES for a in attempts):
                continue  # an attempt is still working
            occ = str(contract.get("local_symbol") or "")
            due.append(
                flatten_payload(
                    today=today,
                    con_id=position.con_id,
                    attempt=len(attempts) + 1,
                    occ=occ,
                    quantity=position.quantity,
                )
            )
    for payload in due:
        outcome = process_submission(
            payload,
            engine=engine,
            redis_client=redis_client,
            now=now,
            max_active=lambda _s: UNGUARDED,
            # The contract expires on the session's day, which is live until its close.
            checks=checks_on_session_day(today),
        )
        log.info("orders.flatten_submitted", **{k: str(v) for k, v in outcome.items()})
        if outcome.get("status") == IntentStatus.VALIDATED.value and outcome.get("intent_id"):
            plan(
                engine,
                venue,
                int(outcome["intent_id"]),
                client_id=client_id,
                now=now,
                clock=clock,
            )
        submitted.append(str(payload["signal_id"]))
    return submitted
