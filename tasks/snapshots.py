"""The audit snapshots on beat (`docs/audit.md`, "Snapshots").

- `tasks.snapshots.snapshot_tick`, beat every `EPM_SNAPSHOT_TICK_S` (60 s): the intents that
  ended since the last run (and `services.audit_snapshots.LOOKBACK` before it, for late fills),
  each as its intent, fills and risk objects under `EPM_OBJECT_STORE_PATH` (default
  `DATA_DIR/objects`), or in the bucket `EPM_OBJECT_STORE_URL` (`store/object_store.py`).
  Idempotent: an object is rewritten only when its bytes change.

A worker refuses to start, with one line, when the bucket settings cannot work (boto3 missing,
a malformed URL): better than a beat task failing every minute.
"""

from __future__ import annotations

from celery import Task
from celery.signals import worker_init

from epm.settings import Settings, get_settings
from services.audit_snapshots import snapshot_tick as run_snapshots
from store.object_store import (
    ObjectStore,
    ObjectStoreConfigError,
    check_object_store,
    open_object_store,
)
from tasks.app import TASK_OPTIONS, Outcome, Stores, celery_app, run_through_outages


def objects_of(settings: Settings) -> ObjectStore:
    return open_object_store(
        settings.object_store_url, settings.objects_dir, settings.object_store_endpoint
    )


@worker_init.connect  # type: ignore[untyped-decorator]
def refuse_an_unusable_object_store(**_: object) -> None:
    settings = get_settings()
    try:
        check_object_store(settings.object_store_url, settings.object_store_endpoint)
    except ObjectStoreConfigError as error:
        raise SystemExit(f"epm: {error}") from None


def run_tick(stores: Stores) -> Outcome:
    run = run_snapshots(stores.engine, objects_of(stores.settings))
    return {"intents": run.intents, "written": len(run.written), "unchanged": run.unchanged}


@celery_app.task(name="tasks.snapshots.snapshot_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def snapshot_tick(self: Task, snapshot_retry: object = None) -> Outcome:
    """Beat: snapshot the intents that ended since the last run."""
    return run_through_outages(
        self, run_tick, name="snapshot", retry_state=snapshot_retry, state_kwarg="snapshot_retry"
    )
