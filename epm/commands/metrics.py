"""`epm metrics --port N [--host H]`: the Prometheus exposition of epm (docs/operations.md).

One process per deployment: the §12.1 gauges computed from the ledger and Redis at each scrape,
the histograms the workers observed (multi-process files under `PROMETHEUS_MULTIPROC_DIR`, or
`<EPM_DATA_DIR>/prometheus`), the bridge's published state and each Celery queue's depth.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from epm.cli import app


@app.command()
def metrics(
    port: int = typer.Option(9464, "--port", min=0, max=65535, help="0: an OS-chosen port"),
    host: str = typer.Option("127.0.0.1", "--host"),
) -> None:
    """Serve /metrics for Prometheus until stopped (SIGTERM/SIGINT)."""
    from celeryconfig import Queue
    from epm.metrics.multiproc import multiproc_dir
    from epm.metrics.server import build_registry, serve
    from epm.redis_conn import celery_broker_url, get_redis
    from epm.settings import get_settings
    from store.db import make_engine

    settings = get_settings()
    directory = multiproc_dir(settings.data_dir)
    registry = build_registry(
        make_engine(settings.resolved_database_url()),
        get_redis(settings),
        celery_broker_url(settings),
        [q.value for q in Queue],
        directory,
    )
    try:
        server, _thread = serve(registry, port, host)
    except OSError as e:
        typer.echo(f"epm metrics: cannot listen on {host}:{port}: {e.strerror or e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"epm metrics: serving http://{host}:{server.server_port}/metrics", err=True)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
    server.shutdown()
    server.server_close()
