"""The alert tick (beat, recon queue): epm's own evaluation of the §12.3 conditions, published to
the Redis stream `ops.alerts` and the log (`services.alerts.tick`, docs/operations.md).

Idempotent: the open set in Redis decides what is new, so a redelivered or doubled tick
publishes nothing twice.
"""

from __future__ import annotations

from celery import Task

from services.alerts.tick import run_tick
from tasks.app import TASK_OPTIONS, Outcome, Stores, celery_app, run_through_outages


def _tick(stores: Stores) -> Outcome:
    result = run_tick(stores.engine, stores.redis, stores.now)
    return {
        "ran": result.ran,
        "fired": list(result.fired),
        "resolved": list(result.resolved),
        "open": result.open,
    }


@celery_app.task(name="tasks.alerts.alert_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def alert_tick(self: Task, alerts_retry: object = None) -> Outcome:
    """Beat: evaluate the alert conditions once."""
    return run_through_outages(
        self, _tick, name="alerts", retry_state=alerts_retry, state_kwarg="alerts_retry"
    )
