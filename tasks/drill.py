"""The nightly paper drill (blueprint §13.2): `tasks.drill.nightly_drill`, on beat only when
`EPM_DRILL_FILE` names the recorded intents (`celeryconfig.py`).

It runs `epm drill $EPM_DRILL_FILE --expect $EPM_DRILL_EXPECT` (default: the signals file with
`.expected.json` for its suffix) in a child process — the drill steps the simulator in-process
and a task must not import it — and raises a `drill_failed` alert on `epm:alerts` with the
first differences when the outcome is not the expected one. Running it twice is harmless: each
run replays into its own fresh ledger under `DATA_DIR/drill`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from celery import Task

from epm.logging import get_logger
from tasks.app import Stores, celery_app, raise_alert

log = get_logger(__name__)

DRILL_TIMEOUT_S = 3_600


def drill_argv(signals: str, expect: str | None) -> list[str]:
    expected = expect or str(Path(signals).with_suffix(".expected.json"))
    return [sys.executable, "-m", "epm", "drill", signals, "--expect", expected]


@celery_app.task(name="tasks.drill.nightly_drill", bind=True)  # type: ignore[untyped-decorator]
def nightly_drill(self: Task) -> dict[str, Any]:
    """Run the configured drill; its exit code and the tail of its report."""
    signals = os.environ.get("EPM_DRILL_FILE")
    if not signals:
        return {"outcome": "not_configured"}
    argv = drill_argv(signals, os.environ.get("EPM_DRILL_EXPECT"))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=DRILL_TIMEOUT_S)
    report = (done.stdout + done.stderr).strip().splitlines()[-20:]
    outcome = "matched" if done.returncode == 0 else "failed"
    log.info("drill.finished", outcome=outcome, exit_code=done.returncode)
    if done.returncode != 0:
        stores = Stores.open()
        raise_alert(
            stores.redis,
            "drill_failed",
            f"paper drill {signals} exit {done.returncode}: " + " | ".join(report[-5:]),
            stores.now,
        )
    return {"outcome": outcome, "exit_code": done.returncode, "report": report}
