"""`epm limits show|set|unset`: the risk limits in force and the audited operator overrides.

`show` prints the file's values, the overrides in force (who, when, why) and the effective
limits; `set PATH VALUE --reason` / `unset PATH --reason` validate against the limits model
before writing, and write the override and its audit row in one transaction. Exit 2: a bad
path, value or limits file (nothing written); 3: the ledger cannot be used.

`require_valid_limits` is the start-up gate of `epm worker`, `epm beat` and `epm bridge`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from epm.cli import app

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

limits_app = typer.Typer(help="Risk limits (see docs/risk.md).", no_args_is_help=True)
app.add_typer(limits_app, name="limits")

T = TypeVar("T")


def _one_line(message: str) -> str:
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


def require_valid_limits(process: str) -> None:
    """Refuse to start `process` (one line on stderr, exit 2) when the limits file does not
    validate: it never runs with half a config."""
    from epm.limits import load_limits
    from epm.settings import get_settings
    from models.limits import LimitsInvalid

    try:
        load_limits(get_settings().limits_file)
    except LimitsInvalid as e:
        typer.echo(f"epm {process}: not starting, limits invalid: {_one_line(str(e))}", err=True)
        raise typer.Exit(2) from e


def _ledger(what: str, use: Callable[[Engine], T]) -> T:
    import sqlalchemy as sa

    from epm.settings import get_settings
    from models.limits import LimitsInvalid
    from store.db import make_engine

    try:
        return use(make_engine(get_settings().resolved_database_url()))
    except LimitsInvalid as e:
        typer.echo(f"epm limits {what}: {_one_line(str(e))} (nothing written)", err=True)
        raise typer.Exit(2) from e
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm limits {what}: the ledger database cannot be used ({type(e).__name__}); "
            "is it migrated (`epm db upgrade`)?",
            err=True,
        )
        raise typer.Exit(3) from e


def _actor(actor: str | None) -> str:
    return actor or os.environ.get("USER") or "operator"


def _has_ledger() -> bool:
    from epm.settings import get_settings

    settings = get_settings()
    return settings.database_url is not None or settings.sqlite_path.exists()


def _dump(limits: Any) -> dict[str, Any]:
    doc: dict[str, Any] = limits.model_dump(mode="json", exclude_none=True)
    return doc


@limits_app.command("show")
def show_command(
    file: str | None = typer.Option(
        None,
        "--file",
        help="Validate and show this file only (default: EPM_LIMITS_FILE or the shipped one, "
        "with the ledger's overrides).",
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of text."),
) -> None:
    """Print the file's limits, the overrides in force (who/when/why) and the effective limits."""
    from epm.limits import load_limits
    from models.limits import LimitsInvalid

    if file is not None:
        try:
            limits = load_limits(Path(file))
        except LimitsInvalid as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(2) from e
        typer.echo(json.dumps(_dump(limits), indent=2))
        return
    from services.risk.current_limits import limits_view

    try:
        view = _ledger("show", limits_view) if _has_ledger() else limits_view(None)
    except LimitsInvalid as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    overrides = [
        {
            "path": r.path,
            "value": r.value,
            "actor": r.actor,
            "reason": r.reason,
            "set_at": r.set_at.isoformat(),
        }
        for r in sorted(view.overrides.values(), key=lambda r: r.path)
    ]
    doc = {
        "source": view.source,
        "file": _dump(view.file),
        "overrides": overrides,
        "effective": _dump(view.effective),
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"limits file: {view.source}")
    typer.echo(json.dumps(doc["file"], indent=2))
    if overrides:
        typer.echo("overrides in force:")
        for o in overrides:
            typer.echo(
                f"  {o['path']} = {o['value']}  (by {o['actor']} at {o['set_at']}: {o['reason']})"
            )
    else:
        typer.echo("overrides in force: none")
    typer.echo("effective:")
    typer.echo(json.dumps(doc["effective"], indent=2))


@limits_app.command("set")
def set_command(
    path: str = typer.Argument(..., help="e.g. strategies.Momentum_EQ.max_position_quantity"),
    value: str = typer.Argument(..., help="The new value (a decimal, or an integer count)."),
    reason: str = typer.Option(..., "--reason", help="Why; recorded with the override."),
    actor: str | None = typer.Option(None, "--actor", help="Who (default: $USER)."),
) -> None:
    """Override one limit in the ledger (validated first; audited in the same transaction)."""
    from services.risk.current_limits import set_override

    who = _actor(actor)
    _ledger(
        "set",
        lambda engine: set_override(
            engine, path=path, value=value, actor=who, reason=reason, now=datetime.now(UTC)
        ),
    )
    typer.echo(f"{path} = {value.strip()} (override by {who}: {reason})")


@limits_app.command("unset")
def unset_command(
    path: str = typer.Argument(..., help="The overridden path to put back to the file's value."),
    reason: str = typer.Option(..., "--reason", help="Why; recorded with the change."),
    actor: str | None = typer.Option(None, "--actor", help="Who (default: $USER)."),
) -> None:
    """Remove an override: the file's value applies again (audited)."""
    from services.risk.current_limits import unset_override

    who = _actor(actor)
    _ledger(
        "unset",
        lambda engine: unset_override(
            engine, path=path, actor=who, reason=reason, now=datetime.now(UTC)
        ),
    )
    typer.echo(f"{path}: override removed by {who} ({reason}); the file's value applies")
