"""`epm limits show`: the risk limits in force, validated (a bad file is a message, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from epm.cli import app

limits_app = typer.Typer(help="Risk limits (see docs/risk.md).", no_args_is_help=True)
app.add_typer(limits_app, name="limits")


@limits_app.command("show")
def show_command(
    file: str | None = typer.Option(
        None, "--file", help="A limits file to validate and show (default: the shipped one)."
    ),
) -> None:
    """Print the limits document as JSON after validating it."""
    from epm.limits import load_limits
    from models.limits import LimitsInvalid

    try:
        limits = load_limits(Path(file) if file is not None else None)
    except LimitsInvalid as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    typer.echo(json.dumps(limits.model_dump(mode="json"), indent=2))
