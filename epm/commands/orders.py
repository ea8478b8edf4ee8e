"""`epm intents`, `epm intent SIGNAL_ID`, `epm cancel-intent SIGNAL_ID`: the intents' life."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import Any

import typer

from epm.cli import app


def _engine() -> Any:
    from epm.settings import get_settings
    from store.db import make_engine

    return make_engine(get_settings().resolved_database_url())


def _line(report: dict[str, Any]) -> str:
    ended = f" {report['reason']}" if report.get("reason") else ""
    price = f" @ {report['avg_price']}" if report.get("avg_price") else ""
    return (
        f"{report['signal_id']:<24} {report['strategy'] or '-':<16} {report['side'] or '-':<5} "
        f"{report['instrument'] or '-':<22} {report['filled']}/{report['quantity']}{price} "
        f"{report['status']}{ended} [{report['template'] or '-'} x{report['children']}]"
    )


@app.command()
def intents(
    limit: int = typer.Option(50, "--limit", min=1, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per intent."),
) -> None:
    """List intents: status, filled quantity and average price, the template running them."""
    from services.orders.intent_report import list_intents

    for report in list_intents(_engine(), limit):
        typer.echo(json.dumps(report, sort_keys=True) if as_json else _line(report))


@app.command()
def intent(
    signal_id: str = typer.Argument(..., help="The intent's signal_id."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one intent in full: why it runs as it does, and every child order."""
    from services.orders.intent_report import describe_intent

    report = describe_intent(_engine(), signal_id)
    if report is None:
        typer.echo(f"no intent with signal_id {signal_id!r}", err=True)
        raise typer.Exit(code=1)
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True, indent=2))
        return
    typer.echo(_line(report))
    if report.get("why"):
        typer.echo(f"  plan: {report['why']}")
    if report.get("message"):
        typer.echo(f"  note: {report['message']}")
    for child in report["child_orders"]:
        price = child["limit_price"] or child["order_type"] or "-"
        held = f" held: {child['held']}" if child.get("held") else ""
        typer.echo(
            f"  {child['client_order_id']:<28} ib {child['ib_order_id'] or '-':<8} "
            f"{child['state']:<16} {child['action']} {child['quantity'] or '?'} @ {price} "
            f"{child['tif'] or ''} filled {child['filled']}"
            f"{' @ ' + child['avg_fill_price'] if child['avg_fill_price'] else ''}{held}"
        )


@app.command("cancel-intent")
def cancel_intent_command(
    signal_id: str = typer.Argument(..., help="The intent's signal_id."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
    actor: str = typer.Option(None, "--actor", help="Who (default: the OS user)."),
) -> None:
    """Cancel an intent's working child orders and end it CANCELLED (audited)."""
    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from services.orders.cancel_intent import cancel_intent
    from tasks.orders import BridgeVenue

    settings = get_settings()
    engine = _engine()
    venue = BridgeVenue(engine, get_redis(settings), settings.ib_client_id_orders)
    who = actor or f"cli:{getpass.getuser()}"
    done = cancel_intent(engine, venue, signal_id, actor=who, reason=reason, now=datetime.now(UTC))
    if done.outcome == "not_found":
        typer.echo(f"no intent with signal_id {signal_id!r}", err=True)
        raise typer.Exit(code=1)
    if done.outcome == "already_ended":
        typer.echo(f"{signal_id}: already {done.status}; nothing sent")
        return
    sent = ", ".join(str(i) for i in done.cancels_sent) or "none working"
    typer.echo(f"{signal_id}: CANCELLED by {who}; cancels sent for IB order ids: {sent}")
