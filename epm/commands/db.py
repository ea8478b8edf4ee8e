"""`epm db upgrade` / `epm db current`: apply and inspect the ledger's migration chain."""

from __future__ import annotations

import typer

from epm.cli import app

db_app = typer.Typer(
    help="The ledger database: apply and inspect migrations.", no_args_is_help=True
)
app.add_typer(db_app, name="db")


def _database_url(url: str | None) -> str:
    from epm.settings import get_settings

    return url or get_settings().resolved_database_url()


@db_app.command("upgrade")
def upgrade_command(
    revision: str = typer.Argument("head", help="Target revision (default: the newest)."),
    url: str | None = typer.Option(None, "--url", help="Database URL (default: EPM_DATABASE_URL)."),
) -> None:
    """Apply migrations up to REVISION; safe to run from several processes at once."""
    from store.migrate import current, upgrade

    target = _database_url(url)
    upgrade(target, revision)
    typer.echo(f"database at revision {current(target)}")


@db_app.command("current")
def current_command(
    url: str | None = typer.Option(None, "--url", help="Database URL (default: EPM_DATABASE_URL)."),
) -> None:
    """Print the revision the database is at, and whether it is the newest this code knows."""
    from store.migrate import current, head_revision

    revision = current(_database_url(url))
    head = head_revision()
    state = "up to date" if revision == head else f"behind (head is {head})"
    typer.echo(f"{revision or 'empty'} ({state})")
    if revision != head:
        raise typer.Exit(code=1)
