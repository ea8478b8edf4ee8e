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
    from epm.metrics.multiproc import enable_multiprocess

    enable_multiprocess()  # before any metric exists: prefork children share the directory
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
def flower(
    port: int = typer.Option(5555, "--port"),
    address: str = typer.Option("127.0.0.1", "--address"),
    insecure_no_auth: bool = typer.Option(
        False, "--insecure-no-auth", help="Run without credentials (loopback address only)."
    ),
) -> None:
    """Run Flower behind basic auth from EPM_FLOWER_BASIC_AUTH (user:password, epm/flower.py)."""
    from epm.flower import FlowerConfigError, flower_argv
    from epm.settings import get_settings

    try:
        argv = flower_argv(
            port=port,
            address=address,
            auth=get_settings().flower_basic_auth,
            insecure_no_auth=insecure_no_auth,
        )
    except FlowerConfigError as e:
        typer.echo(f"epm flower: {e}", err=True)
        raise typer.Exit(2) from None
    from tasks.app import celery_app

    celery_app.start(argv)
