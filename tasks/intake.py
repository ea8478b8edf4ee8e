"""The intake queue: `tasks.intake.submit_intent`, the door every intent comes through.

A Celery shell over `services.intake.process_submission` (the use case; its decisions are
`models.admission`'s), run on `tasks.app`'s store-outage policy: an outage of PostgreSQL or Redis
is retried without limit, with capped exponential backoff and `intake_retrying` alerts on
`epm:alerts` from `EPM_LEDGER_ALERT_AFTER` attempts on, so an intent is never lost because a store
was down for a while. Each run either committed or left nothing behind, and the rerun finds the
committed row, so the intent is admitted exactly once. Nothing about the payload can make the
task raise; anything else that does (a bug) is logged, alerted (`intake_failed`) and not retried.
"""

from __future__ import annotations

from celery import Task

from epm.calendar import trading_day
from epm.clock import session_now
from models.intent import (
    DEFAULT_CHECKS,
    Check,
    IntentStatus,
    checks_on_session_day,
    parse_payload,
    signal_id_of,
)
from services.intake import process_submission
from tasks.app import TASK_OPTIONS, Outcome, Stores, celery_app, run_through_outages
from tasks.orders import plan_intent

__all__ = ["process_submission", "submit_intent"]

# The keyword a retry carries its `tasks.app.RetryState` in (part of the message format).
RETRY_KWARG = "intake_retry"


def _checks(stores: Stores) -> tuple[Check, ...]:
    """On the venue's clock (`EPM_CLOCK=venue`) an option expires by the venue's trading day."""
    if stores.settings.clock != "venue":
        return DEFAULT_CHECKS
    return checks_on_session_day(
        trading_day(session_now(stores.settings, stores.redis, stores.now))
    )


def _run(stores: Stores, payload: object) -> Outcome:
    outcome = process_submission(
        payload,
        engine=stores.engine,
        redis_client=stores.redis,
        now=stores.now,
        max_active=stores.settings.max_active_for,
        checks=_checks(stores),
    )
    if outcome.get("status") == IntentStatus.VALIDATED.value and outcome.get("intent_id"):
        # Before this task is acknowledged: a crash here redelivers the intake, which finds the
        # intent and asks again (planning is idempotent; beat's tick also plans a lost one).
        plan_intent.delay(int(outcome["intent_id"]))
    return outcome


@celery_app.task(name="tasks.intake.submit_intent", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def submit_intent(self: Task, payload: object, intake_retry: object = None) -> Outcome:
    """Admit or refuse one intent (a dict, or its JSON text); idempotent on `signal_id`."""
    return run_through_outages(
        self,
        lambda stores: _run(stores, payload),
        name="intake",
        retry_state=intake_retry,
        state_kwarg=RETRY_KWARG,
        describe=lambda: {"signal_id": signal_id_of(parse_payload(payload))},
    )
