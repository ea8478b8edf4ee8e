"""Intake, the use case: one submission in, admitted or refused once per `signal_id`, the refusal
published. No Celery here: `tasks.intake.submit_intent` and `epm submit --inline` both call
`process_submission`.

Shape (the decisions are all `models.admission`'s):
1. Screen: decode and validate (`models.admission.screen`, pure).
2. In one write transaction, for a submission with a usable `signal_id`: take the strategy's guard
   lock and read its active count (an intent only), read the row stored under the `signal_id`
   (`store.intents`), `models.admission.decide`, and insert what it decided. An insert that lost
   the race for the `signal_id` to another worker loads the winner's row and decides again (a
   duplicate now). A submission without one is decided without the store: it has no key.
3. After commit: a refused submission appends one entry to `signals.exec.reject`.

Nothing about the payload can make this raise; only a database or Redis outage does. The
transaction either committed or left nothing behind, so the caller may simply run it again (the
task does, without limit): the rerun finds the committed row and answers as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import redis
from sqlalchemy.engine import Connection, Engine

from epm.logging import get_logger
from epm.streams import publish_reject
from models import admission
from models.admission import AdmissionOutcome, Screened
from models.intent import DEFAULT_CHECKS, Check, Intent
from models.limits import Limits
from services.audit import audit_intake
from services.risk.current_limits import current_limits
from services.risk.market import market_facts
from services.risk.states import gate_admission
from store import intents as repo
from store.db import write_transaction

__all__ = ["process_submission", "screen"]

log = get_logger(__name__)


def screen(payload: object, *, now: datetime, checks: Sequence[Check]) -> Screened:
    """`models.admission.screen`, guarded: a validation bug still answers the submission.

    `validate_intent` is total by design (property-tested); should a bug slip through, the
    submission becomes an INVALID_VALUE refusal (logged with its traceback) instead of looping
    through redeliveries.
    """
    try:
        return admission.screen(payload, today=now.date(), checks=checks)
    except Exception as e:
        log.exception("intake.validation_bug", error=repr(e))
        return admission.unscreenable(payload, type(e).__name__)


def _save(
    conn: Connection, decision: admission.Admit | admission.Refuse, now: datetime
) -> int | None:
    """Insert what was decided; the new row's id, None when the `signal_id` got a row meanwhile."""
    if isinstance(decision, admission.Admit):
        return repo.insert_validated(
            conn, decision.intent, instrument_text=decision.instrument_text, now=now
        )
    if decision.record is None:  # pragma: no cover - decide() records every keyed refusal
        raise RuntimeError(f"keyed refusal of {decision.reject.signal_id!r} without a record")
    return repo.insert_rejected(
        conn, decision.reject, decision.record, now=now, intent=decision.intent
    )


def _decide_in(
    conn: Connection,
    screened: Screened,
    *,
    now: datetime,
    max_active: Callable[[str], int],
    limits: Limits,
    redis_client: redis.Redis,
) -> AdmissionOutcome:
    """Load → decide → save for a keyed submission, inside the caller's write transaction."""
    verdict = screened.verdict
    guard = None
    market = None
    if isinstance(verdict, Intent):
        repo.lock_strategy(conn, verdict.strategy)
        # Under the strategy's lock: the near-duplicate history includes every admission before.
        market = market_facts(conn, redis_client, verdict, now=now, limits=limits)
        active = repo.count_active(conn, verdict.strategy)
        guard = admission.Guard(verdict.strategy, active, max_active(verdict.strategy))
    stored_form = repo.json_safe(screened.data)
    prior = repo.find_submission(conn, screened.signal_id)
    decision = admission.decide(
        screened, prior=prior, guard=guard, stored_form=stored_form, limits=limits, market=market
    )
    if isinstance(decision, admission.Duplicate):
        return decision.outcome()
    if isinstance(decision, admission.Admit):  # HALTED / REDUCING (services.risk.states)
        position = None if market is None else market.position
        decision = gate_admission(conn, decision, screened.data, position)
    new_id = _save(conn, decision, now)
    if new_id is not None:
        audit_intake(conn, decision, now=now, limits=limits, market=market)
        return decision.outcome(new_id)
    # Another worker stored this signal_id between our lookup and our insert: its row decides.
    raced = repo.find_submission(conn, screened.signal_id)
    if raced is None:  # pragma: no cover - ON CONFLICT guarantees a committed row exists
        raise RuntimeError(f"signal_id {screened.signal_id!r} conflicted but no row is visible")
    again = admission.decide(screened, prior=raced, guard=guard, stored_form=stored_form)
    if not isinstance(again, admission.Duplicate):  # pragma: no cover - a prior always is
        raise RuntimeError(f"signal_id {screened.signal_id!r} has a row but is not a duplicate")
    return again.outcome()


def process_submission(
    payload: object,
    *,
    engine: Engine,
    redis_client: redis.Redis,
    now: datetime,
    max_active: Callable[[str], int],
    checks: Sequence[Check] = DEFAULT_CHECKS,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Admit or refuse one submission (a dict, or its JSON text); its outcome as a dict.

    `now` (aware UTC) stamps the row and the reject entry, and its date decides option expiry.
    `max_active(strategy)` is the strategy's concurrency limit; `limits` the risk limits the
    pre-trade gates apply (default: the shipped `epm/limits/default.toml`, read once).
    Idempotent on `signal_id`.
    """
    screened = screen(payload, now=now, checks=checks)
    if screened.keyed:
        # Only a keyed submission reaches the gates: a refusal without a signal_id needs no
        # database (the limits' overrides live there), so it is answered during an outage.
        limits = limits if limits is not None else current_limits(engine)
        with write_transaction(engine) as conn:
            outcome = _decide_in(
                conn,
                screened,
                now=now,
                max_active=max_active,
                limits=limits,
                redis_client=redis_client,
            )
    else:
        decision = admission.decide(screened, prior=None, guard=None)
        if not isinstance(decision, admission.Refuse):  # pragma: no cover - only refusals
            raise RuntimeError("a submission without a signal_id can only be refused")
        outcome = decision.outcome(None)
    reject = outcome.published
    if reject is not None:
        publish_reject(redis_client, reject, ts=now)
    log.info(
        "intake.outcome",
        signal_id=outcome.signal_id,
        status=outcome.status,
        reason=None if outcome.reason is None else outcome.reason.value,
        intent_id=outcome.intent_id,
        duplicate=outcome.duplicate,
    )
    return outcome.as_dict()
