"""`epm audit verify` and `epm audit show`: the hash-chained audit log (docs/audit.md).

`verify` exits 0 when every chained row holds (rows from before the chain are counted as
"unchained"), 1 naming the first row that breaks it, 3 when the ledger cannot be read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import typer

from epm.cli import app

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

audit_app = typer.Typer(
    help="The audit log: verify its hash chain, list rows.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")

T = TypeVar("T")


def _with_ledger(what: str, use: Callable[[Engine], T]) -> T:
    import sqlalchemy as sa

    from epm.settings import get_settings
    from store.db import make_engine

    try:
        return use(make_engine(get_settings().resolved_database_url()))
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm audit {what}: the ledger database cannot be used ({type(e).__name__}); "
            "is it migrated (`epm db upgrade`)?",
            err=True,
        )
        raise typer.Exit(3) from e


@audit_app.command("verify")
def verify_command(
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of text."),
    expect: str | None = typer.Option(
        None, "--expect", help="A head hash noted earlier: fail if no row has it any more."
    ),
) -> None:
    """Check the audit log's hash chain; exit 1 naming the first modified, deleted or inserted
    row."""
    from services.audit import verify_audit

    report = _with_ledger("verify", lambda engine: verify_audit(engine, expect))
    if as_json:
        doc = {
            "ok": report.ok,
            "chained": report.chained,
            "unchained": report.unchained,
            "head_id": report.head_id,
            "head_hash": report.head_hash,
            "broken_row": None if report.broken is None else report.broken.row_id,
            "reason": None if report.broken is None else report.broken.reason,
        }
        typer.echo(json.dumps(doc))
    elif report.broken is None:
        typer.echo(
            f"audit chain intact: {report.chained} chained rows, {report.unchained} unchained "
            f"(written before the chain); head row {report.head_id} hash {report.head_hash}"
        )
    else:
        typer.echo(
            f"audit chain BROKEN at row {report.broken.row_id}: {report.broken.reason} "
            f"({report.chained} rows verified before it)",
            err=True,
        )
    if not report.ok:
        raise typer.Exit(1)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 time: {text!r}", param_hint="--since") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@audit_app.command("show")
def show_command(
    limit: int = typer.Option(50, "--limit", min=1, help="How many of the newest rows."),
    action: str | None = typer.Option(None, "--action", help="Only this action."),
    target: str | None = typer.Option(None, "--target", help="Only this target."),
    since: str | None = typer.Option(None, "--since", help="ISO time (UTC if no offset)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
) -> None:
    """List the newest audit rows, oldest first."""
    from services.audit import list_audit

    after = _since(since)
    rows = _with_ledger(
        "show",
        lambda engine: list_audit(engine, limit=limit, action=action, target=target, since=after),
    )
    if as_json:
        for r in rows:
            doc = {
                "id": r.id,
                "ts": r.ts.isoformat(),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "details": r.details,
                "row_hash": r.row_hash,
            }
            sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "ts (UTC)", "actor", "action", "target", "details", "hash")
    for r in rows:
        details = json.dumps(r.details, sort_keys=True) if r.details else ""
        table.add_row(
            str(r.id),
            r.ts.isoformat(timespec="seconds"),
            r.actor,
            r.action,
            r.target or "",
            details,
            (r.row_hash or "unchained")[:12],
        )
    Console().print(table)


def audit_operator_action(action: str, target: str, details: dict[str, str]) -> None:
    """The ledger's audit row of an operator command that acted outside a ledger transaction
    (`epm cancel`), when a ledger exists; a ledger that cannot be written is a warning on stderr,
    as the command itself already took effect."""
    import os

    import sqlalchemy as sa

    from epm.settings import get_settings
    from services.audit import record_audit

    settings = get_settings()
    if settings.database_url is None and not settings.sqlite_path.exists():
        return
    actor = os.environ.get("USER") or "operator"
    try:
        record_audit(
            settings.resolved_database_url(),
            actor,
            action,
            datetime.now(UTC),
            details,
            target=target,
        )
    except sa.exc.SQLAlchemyError as e:
        typer.echo(f"warning: not written to the audit log ({type(e).__name__})", err=True)
