"""The 17:00 ET report on beat (`docs/operations.md`, "The 17:00 report").

- `tasks.reports.daily_report_tick`, beat every `EPM_REPORT_TICK_S` (300 s): once the report of
  the trading day is due (17:00 ET on a session day, early closes included, never on a weekend or
  holiday: `services.reports.daily.due_day`) and not yet written, write it into
  `EPM_REPORT_DIR` (default `DATA_DIR/reports`). The day is read from the session clock, so a
  simulated session reports on its own day.

Writing is idempotent per day (the same files rewritten with the same bytes), so a redelivered or
doubled tick is harmless; the written manifest is what makes later ticks of the day no-ops.
`epm report --day D` writes any day by hand. With a bucket set (`EPM_OBJECT_STORE_URL`, the
audit snapshots' store) each tick also copies the day's folder to `reports/YYYY-MM-DD/` in it,
manifest last, until the bucket holds that manifest: an upload that failed is redone next tick.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from celery import Task

from epm.clock import session_now
from services.reports.daily import due_day, write_report, written_for
from store.object_store import mirror_folder
from tasks.app import TASK_OPTIONS, Outcome, Stores, celery_app, run_through_outages
from tasks.snapshots import objects_of


def report_dir(stores: Stores) -> Path:
    """Where reports are written: `EPM_REPORT_DIR`, else `DATA_DIR/reports`."""
    raw = os.environ.get("EPM_REPORT_DIR", "").strip()
    return Path(raw) if raw else stores.settings.data_dir / "reports"


def run_tick(stores: Stores) -> Outcome:
    now = session_now(stores.settings, stores.redis, stores.now)
    day = due_day(now)
    if day is None:
        return {"due": False, "session_time": now.isoformat()}
    root = report_dir(stores)
    if written_for(root, day):
        return {"due": True, "day": day.isoformat(), "written": False, **_mirror(stores, root, day)}
    paths = write_report(stores.engine, stores.redis, day, root)
    files = [str(p) for p in paths]
    uploaded = _mirror(stores, root, day)
    return {"due": True, "day": day.isoformat(), "written": True, "files": files, **uploaded}


def _mirror(stores: Stores, root: Path, day: date) -> Outcome:
    if stores.settings.object_store_url is None:
        return {}
    folder = day.isoformat()
    keys = mirror_folder(
        objects_of(stores.settings), root / folder, f"reports/{folder}", "manifest.json"
    )
    return {"uploaded": len(keys)}


@celery_app.task(name="tasks.reports.daily_report_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def daily_report_tick(self: Task, report_retry: object = None) -> Outcome:
    """Beat: the day's report once it is due (a no-op before, and after it was written)."""
    return run_through_outages(
        self, run_tick, name="report", retry_state=report_retry, state_kwarg="report_retry"
    )
