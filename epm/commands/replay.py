"""`epm export`, `epm drill`, `epm replay`: the ledger's day as files, paper drills and replays.

- `epm export [--day D] [--out DIR] [--format csv|parquet]`: the extracts
  (`services.extracts`) of the configured ledger; prints one path per line. Exit 2 bad input,
  3 the ledger cannot be used.

The drill and replay commands are documented in `docs/replay.md`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from epm.cli import app


def _parse_day(text: str | None, command: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        typer.echo(f"epm {command}: --day must be a date like 2026-12-03, not {text!r}", err=True)
        raise typer.Exit(2) from None


@app.command("export")
def export_command(
    day: str | None = typer.Option(
        None, "--day", "--date", help="Only this exchange day's orders and fills (YYYY-MM-DD)."
    ),
    out: str | None = typer.Option(
        None, "--out", help="Directory to write into (default: DATA_DIR/extracts)."
    ),
    fmt: str | None = typer.Option(None, "--format", help="csv or parquet only (default: both)."),
) -> None:
    """Write orders, fills, positions and P&L by strategy and signal as CSV and Parquet."""
    import sqlalchemy as sa

    from epm.settings import get_settings
    from services.extracts import FORMATS, ExtractError, write_extracts

    wanted = FORMATS if fmt is None else (fmt,)
    settings = get_settings()
    target = Path(out) if out is not None else settings.data_dir / "extracts"
    try:
        paths = write_extracts(
            settings.resolved_database_url(), target, day=_parse_day(day, "export"), formats=wanted
        )
    except ExtractError as e:
        typer.echo(f"epm export: {e}", err=True)
        raise typer.Exit(2) from e
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm export: the ledger database cannot be used ({type(e).__name__}); "
            "is it migrated (`epm db upgrade`)?",
            err=True,
        )
        raise typer.Exit(3) from e
    for path in paths:
        typer.echo(str(path))
