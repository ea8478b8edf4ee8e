"""The audit snapshots on beat (`docs/audit.md`, "Snapshots").

- `tasks.snapshots.snapshot_tick`, beat every `EPM_SNAPSHOT_TICK_S` (60 s): the intents that
  ended since the last run (and `services.audit_snapshots.LOOKBACK` before it, for late fills),
  each as its intent, fills and risk objects under `EPM_OBJECT_STORE_PATH` (default
  `DATA_DIR/objects`). Idempotent: an object is rewritten only when its bytes change.
"""

from __future__ import annotations

from celery import Task

from services.audit_snapshots import snapshot_tick as run_snapshots
from tasks.app import TASK_OPTIONS, Outcome, Stores, celery_app, run_through_outages


def run_tick(stores: Stores) -> Outcome:
    run = run_snapshots(stores.engine, stores.settings.objects_dir)
    return {"intents": run.intents, "written": len(run.written), "unchanged": run.unchanged}


@celery_app.task(name="tasks.snapshots.snapshot_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def snapshot_tick(self: Task, snapshot_retry: object = None) -> Outcome:
    """Beat: snapshot the intents that ended since the last run."""
    return run_through_outages(
        self, run_tick, name="snapshot", retry_state=snapshot_retry, state_kwarg="snapshot_retry"
    )
