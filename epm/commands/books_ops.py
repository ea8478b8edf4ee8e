"""`epm books import-financing FILE [--dry-run] [--json]`: the books' operator commands.

- `import-financing FILE`: borrow fees from a statement CSV (date, symbol and/or conid,
  quantity, rate, fee; optional strategy, account, currency) into `financing_charges`, each
  line once (`services.books.financing`); `epm pnl` then shows them in `financing` and `net`.
  A bad file is refused whole, every bad line named (exit 2); the ledger unusable: exit 3.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer

from epm.cli import app

books_app = typer.Typer(help="The books: financing import.", no_args_is_help=True)
app.add_typer(books_app, name="books")


@books_app.command("import-financing")
def import_financing_command(
    file: Path = typer.Argument(..., help="The statement CSV."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and show; store nothing."),
    as_json: bool = typer.Option(False, "--json", help="The outcome as JSON."),
) -> None:
    """Import borrow fees from a statement file (idempotent per account, contract and day)."""
    import sqlalchemy as sa

    from epm.settings import get_settings
    from models.financing import FinancingFileError
    from services.books.financing import import_financing
    from store.db import make_engine

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        typer.echo(f"epm books import-financing: cannot read {file}: {e}", err=True)
        raise typer.Exit(2) from None
    try:
        engine = make_engine(get_settings().resolved_database_url())
        result = import_financing(engine, text, datetime.now(UTC), dry_run=dry_run)
    except FinancingFileError as e:
        typer.echo(f"epm books import-financing: {file} refused, nothing imported:", err=True)
        for problem in e.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(2) from None
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm books import-financing: the ledger database cannot be used "
            f"({type(e).__name__}); is it migrated (`epm db upgrade`)?",
            err=True,
        )
        raise typer.Exit(3) from None
    outcome = result.as_dict()
    if as_json:
        json.dump(outcome, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    verb = "would import" if dry_run else "imported"
    typer.echo(
        f"{verb} {len(outcome['charges'])} charge(s) from {result.lines} line(s); "
        f"{len(result.skipped)} line(s) already imported"
    )
    for c in outcome["charges"]:
        typer.echo(
            f"  line {c['line']}: {c['date']} conid {c['conid']} "
            f"{c['strategy'] or '(no strategy)'} {c['amount']} {c['currency']}"
        )
    for conflict in result.conflicts:
        typer.echo(f"  conflict: {conflict}")
    if result.unallocated:
        typer.echo(
            "  no strategy was short on the day of line(s) "
            + ", ".join(str(n) for n in result.unallocated)
            + ": stored without a strategy (in no position's P&L); add a strategy column"
        )
