"""`epm worker`, `epm beat`, `epm flower`: the Celery processes, started with epm's settings."""

from __future__ import annotations

import typer

from epm.cli import app
from epm.commands.limits import require_valid_limits


def _celery_argv(*args: str) -> list[str]:
    return ["celery", "-A", "tasks.app", *args]


@app.command()
def worker(
    queues: str = typer.Option("intake,orders,ledger,pnl,recon", "-Q", "--queues"),
    concurrency: int = typer.Option(2, "-c", "--concurrency"),
    loglevel: str = typer.Option("INFO", "--loglevel"),
) -> None:
    """Run a Celery worker consuming QUEUES (comma-separated)."""
    require_valid_limits("worker")
    from tasks.app import celery_app

    celery_app.worker_main(
        ["worker", "-Q", queues, "-c", str(concurrency), "--loglevel", loglevel, "-E"]
    )


@app.command()
def beat(loglevel: str = typer.Option("INFO", "--loglevel")) -> None:
    """Run Celery beat (exactly one per deployment)."""
    require_valid_limits("beat")
    from tasks.app import celery_app

    celery_app.start(["beat", "--loglevel", loglevel])


@app.command()
def flower(port: int = typer.Option(5555, "--port")) -> None:
    """Run Flower, the operators' view of tasks (basic auth: EPM_FLOWER_BASIC_AUTH)."""
    from epm.settings import get_settings
    from tasks.app import celery_app

    argv = ["flower", f"--port={port}", "--address=127.0.0.1"]
    auth = get_settings().flower_basic_auth
    if auth:
        argv.append(f"--basic-auth={auth}")
    celery_app.start(argv)
