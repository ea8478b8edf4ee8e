"""`epm report [--day D] [--out DIR]`: write the 17:00 report of a trading day by hand.

The same files the beat task writes (`services.reports.daily`): `OUT/YYYY-MM-DD/report.html`,
the report's tables as CSV and Parquet, the day's extracts under `extracts/` and a
`manifest.json`; one path per line on stdout. The day defaults to today's (New York) trading
day; the directory to `EPM_REPORT_DIR`, else `DATA_DIR/reports`. Without Redis the report is
written without the alert streams (said on stderr). Exit 2 bad input, 3 the ledger cannot be
used.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import typer

from epm.cli import app


def _day(text: str | None) -> date:
    from epm.calendar import trading_day

    if text is None:
        return trading_day(datetime.now(UTC))
    try:
        return date.fromisoformat(text)
    except ValueError:
        typer.echo(f"epm report: --day must be a date like 2026-12-03, not {text!r}", err=True)
        raise typer.Exit(2) from None


@app.command("report")
def report_command(
    day: str | None = typer.Option(None, "--day", help="Trading day YYYY-MM-DD (default today)."),
    out: str | None = typer.Option(
        None, "--out", help="Directory to write into (default EPM_REPORT_DIR or DATA_DIR/reports)."
    ),
) -> None:
    """Write the daily report (HTML with charts, CSV and Parquet) of a trading day."""
    import os

    import redis
    import sqlalchemy as sa

    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from services.reports.daily import ReportError, write_report
    from store.db import make_engine

    wanted = _day(day)
    settings = get_settings()
    env_dir = os.environ.get("EPM_REPORT_DIR", "").strip()
    root = Path(out) if out else Path(env_dir) if env_dir else settings.data_dir / "reports"
    live = get_redis(settings)
    client: redis.Redis | None = live
    try:
        live.ping()
    except redis.RedisError as e:
        typer.echo(f"epm report: Redis unreachable ({type(e).__name__}); no alerts read", err=True)
        client = None
    try:
        paths = write_report(make_engine(settings.resolved_database_url()), client, wanted, root)
    except ReportError as e:
        typer.echo(f"epm report: {e}", err=True)
        raise typer.Exit(2) from e
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm report: the ledger database cannot be used ({type(e).__name__}); "
            "is it migrated (`epm db upgrade`)?",
            err=True,
        )
        raise typer.Exit(3) from e
    for path in paths:
        typer.echo(str(path))
