"""`epm ledger dead-letters | replay | reseed-order-ids`: the ledger's operator commands.

- `dead-letters [--all] [--json]`: callbacks parked in `ledger_dead_letters` (open ones unless
  `--all`): id, kind, error, attempts, first/last failure.
- `replay ID | --all`: re-runs each open letter's stored payload through the ledger's write path
  (`tasks.ledger.replay_dead_letter`, idempotent) and marks it resolved; exit 1 if any still fails.
- `reseed-order-ids [--client-id N] [--raise]`: re-creates `ib:order:last_id` above the ledger's
  highest order id and every sent marker after Redis lost it (workers refuse to allocate until
  then); with `--raise` a present but lower counter is raised too.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from epm.cli import app

ledger_app = typer.Typer(
    help="The ledger: dead-lettered callbacks, replay, order-id floor.", no_args_is_help=True
)
app.add_typer(ledger_app, name="ledger")


def _engine() -> Any:
    from epm.settings import get_settings
    from store.db import make_engine

    return make_engine(get_settings().resolved_database_url())


def dead_letter_count() -> int | str:
    """Open dead letters, for `epm status`; a message when the ledger cannot be read."""
    import sqlalchemy as sa

    from epm.settings import get_settings
    from store import dead_letters

    settings = get_settings()
    if settings.database_url is None and not settings.sqlite_path.exists():
        return "no ledger database"
    try:
        with _engine().connect() as conn:
            return dead_letters.count_open(conn)
    except sa.exc.SQLAlchemyError as e:
        return f"unavailable: {type(e).__name__}"


@ledger_app.command("dead-letters")
def dead_letters_command(
    include_resolved: bool = typer.Option(False, "--all", help="Resolved letters too."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List callbacks the ledger parked (a constraint, a bug): replay them once fixed."""
    from store import dead_letters

    with _engine().connect() as conn:
        letters = dead_letters.list_letters(conn, include_resolved=include_resolved)
    if as_json:
        json.dump([letter.as_dict() for letter in letters], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    if not letters:
        typer.echo("no dead letters")
        return
    for letter in letters:
        state = f"resolved {letter.resolved_at.isoformat()}" if letter.resolved_at else "open"
        typer.echo(
            f"#{letter.id} {letter.kind} {letter.error_code} ({letter.error_class}) "
            f"attempts={letter.attempts} first={letter.first_failed_at.isoformat()} "
            f"last={letter.last_failed_at.isoformat()} {state}: {(letter.message or '')[:200]}"
        )


@ledger_app.command("replay")
def replay_command(
    letter_id: int | None = typer.Argument(None, help="Dead letter id (see `dead-letters`)."),
    replay_all: bool = typer.Option(False, "--all", help="Every open dead letter."),
) -> None:
    """Record dead-lettered callbacks through the ledger's write path; resolve those recorded."""
    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from services.ledger.replay import replay_dead_letter
    from store import dead_letters

    if (letter_id is None) == (not replay_all):
        typer.echo("give one dead letter ID or --all", err=True)
        raise typer.Exit(2)
    engine = _engine()
    if replay_all:
        with engine.connect() as conn:
            ids = dead_letters.open_ids(conn)
    else:
        ids = [letter_id] if letter_id is not None else []
    client = get_redis(get_settings())
    failed = 0
    for one in ids:
        result = replay_dead_letter(one, engine=engine, redis_client=client)
        if result.status == "recorded":
            outcome = (result.outcome or {}).get("outcome")
            typer.echo(f"#{one}: recorded ({outcome}), resolved")
        elif result.status == "already_resolved":
            typer.echo(f"#{one}: already resolved, nothing done")
        elif result.status == "not_found":
            typer.echo(f"#{one}: no such dead letter", err=True)
            failed += 1
        else:
            typer.echo(f"#{one}: still failing: {result.error}", err=True)
            failed += 1
    if replay_all and not ids:
        typer.echo("no open dead letters")
    if failed:
        raise typer.Exit(1)


@ledger_app.command("reseed-order-ids")
def reseed_order_ids_command(
    client_id: int | None = typer.Option(
        None, "--client-id", help="IB client id whose ids (default: EPM_IB_CLIENT_ID_ORDERS)."
    ),
    raise_existing: bool = typer.Option(
        False, "--raise", help="Also raise a present counter that is below the floor."
    ),
) -> None:
    """Re-create ib:order:last_id above the ledger's highest IB order id and the sent markers."""
    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from ibgateway_bridge.client_api import highest_sent_order_id, reseed_order_ids
    from store.order_ids import highest_ib_order_id

    settings = get_settings()
    cid = settings.ib_client_id_orders if client_id is None else client_id
    with _engine().connect() as conn:
        floor = highest_ib_order_id(conn, cid)
    client = get_redis(settings)
    sent = highest_sent_order_id(client, cid)
    last = reseed_order_ids(floor, client=client, client_id=cid, raise_existing=raise_existing)
    typer.echo(f"ledger floor {floor}, highest sent marker {sent}: ib:order:last_id {last}")
