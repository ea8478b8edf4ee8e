"""A Celery app with one no-op task: the bare task round trip `bench/bridge_latency.py` compares
the bridge's latencies with (same broker, its own queue and worker)."""

from __future__ import annotations

import os

from celery import Celery

_url = os.environ.get("EPM_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench_noop", broker=_url, backend=_url)
app.conf.task_serializer = "json"
app.conf.accept_content = ["json"]


@app.task(name="bench.noop")
def noop() -> int:
    """Do nothing; the caller times send → run → result."""
    return 1
