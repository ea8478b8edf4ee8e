"""`epm books import-financing FILE` and `epm books attribution`: the books' operator commands.

- `import-financing FILE`: borrow fees from a statement CSV (date, symbol and/or conid,
  quantity, rate, fee; optional strategy, account, currency) into `financing_charges`, each
  line once (`services.books.financing`); `epm pnl` then shows them in `financing` and `net`.
  A bad file is refused whole, every bad line named (exit 2); the ledger unusable: exit 3.
- `settle-expiries [--price CONID=PRICE ...] [--json]`: settle the expired option positions now
  (what beat does every minute after the close), with an operator's closing price for an
  underlying whose quote around the close is missing; exit 1 while any position still waits.
- `attribution [--day D] [--force]`: write a closed session day's end-of-day attribution now
  (`services.books.attribution_eod`; beat does it 15 min after each close), the last session
  day by default; a day already written is kept unless `--force`.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from epm.cli import app

books_app = typer.Typer(
    help="The books: financing import, option expiry, end-of-day attribution.",
    no_args_is_help=True,
)
app.add_typer(books_app, name="books")


@books_app.command("import-financing")
def import_financing_command(
    file: str = typer.Argument(..., help="The statement CSV."),
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
        text = Path(file).read_text(encoding="utf-8")
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


def _day(text: str, what: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        typer.echo(f"epm {what}: --day {text!r} is not YYYY-MM-DD", err=True)
        raise typer.Exit(2) from None


def attribution_rows(day_text: str) -> list[dict[str, Any]]:
    """`epm pnl --by signal --day D`: the rows of that day's attribution document (exit 1
    when there is none)."""
    from epm.settings import get_settings
    from services.books.attribution_eod import AttributionUnavailableError, read_day

    day = _day(day_text, "pnl")
    try:
        doc = read_day(get_settings().data_dir / "attribution", day)
    except AttributionUnavailableError as e:
        typer.echo(f"epm pnl: {e}", err=True)
        raise typer.Exit(1) from None
    rows: list[dict[str, Any]] = doc.get("rows", [])
    return rows


@books_app.command("attribution")
def attribution_command(
    day: str | None = typer.Option(None, "--day", help="YYYY-MM-DD; the last closed session."),
    force: bool = typer.Option(False, "--force", help="Rewrite a day already written."),
) -> None:
    """Write a closed session day's P&L by signal (what beat writes after each close)."""
    from datetime import timedelta

    import sqlalchemy as sa

    from epm.calendar import session_close, trading_day
    from epm.settings import get_settings
    from services.books.attribution_eod import SETTLE_DELAY, write_day
    from store.db import make_engine

    now = datetime.now(UTC)
    if day is None:
        chosen = trading_day(now)
        for _ in range(10):
            close = session_close(chosen)
            if close is not None and close + SETTLE_DELAY <= now:
                break
            chosen -= timedelta(days=1)
    else:
        chosen = _day(day, "books attribution")
    settings = get_settings()
    try:
        engine = make_engine(settings.resolved_database_url())
        run = write_day(engine, settings.data_dir / "attribution", chosen, now, force=force)
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm books attribution: the ledger database cannot be used ({type(e).__name__})",
            err=True,
        )
        raise typer.Exit(3) from None
    messages = {
        "written": f"written {run.path}",
        "exists": f"{run.path} exists (--force rewrites it)",
        "not_due": f"{chosen}: the session has not closed (+{SETTLE_DELAY}) yet",
        "no_session": f"{chosen} is not a session day",
    }
    typer.echo(messages[run.outcome])
    if run.outcome in ("not_due", "no_session"):
        raise typer.Exit(1)


@books_app.command("settle-expiries")
def settle_expiries_command(
    price: list[str] = typer.Option(  # noqa: B008
        [], "--price", help="CONID=PRICE: the underlying's closing price (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="The outcome as JSON."),
) -> None:
    """Settle expired option positions now (exercise, assignment, worthless)."""
    from decimal import Decimal, InvalidOperation

    import sqlalchemy as sa

    from services.books.expiry import settle_expiries
    from tasks.app import Stores
    from tasks.pnl import closing_reader

    given: dict[int, Decimal] = {}
    for item in price:
        con_text, _, value = item.partition("=")
        try:
            amount = Decimal(value)
        except InvalidOperation:
            amount = Decimal(0)
        if not con_text.strip().isdigit() or not amount.is_finite() or amount <= 0:
            typer.echo(f"epm books settle-expiries: --price {item!r} is not CONID=PRICE", err=True)
            raise typer.Exit(2)
        given[int(con_text)] = amount
    stores = Stores.open()
    quoted = closing_reader(stores)

    def closing(con_id: int, close: datetime) -> Decimal | None:
        return given[con_id] if con_id in given else quoted(con_id, close)

    try:
        result = settle_expiries(stores.engine, closing, stores.now)
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm books settle-expiries: the ledger database cannot be used ({type(e).__name__})",
            err=True,
        )
        raise typer.Exit(3) from None
    outcome = result.as_dict()
    if as_json:
        json.dump(outcome, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        typer.echo(f"{result.due} due, {len(result.settled)} settled")
        for done in result.settled:
            typer.echo(f"  {done['key']}: {done['kind']} at {done['underlying_close']}")
        for line in (*result.waiting, *result.errors):
            typer.echo(f"  not settled: {line}")
    if result.waiting or result.errors:
        raise typer.Exit(1)
