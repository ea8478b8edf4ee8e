"""`epm replace-order CLIENT_ORDER_ID`: change a working child, in place or cancel-and-replace."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import typer

from epm.cli import app


def _decimal(text: str | None, name: str) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        typer.echo(f"{name} {text!r} is not a number", err=True)
        raise typer.Exit(code=2) from None
    if not value.is_finite():
        typer.echo(f"{name} {text!r} is not a number", err=True)
        raise typer.Exit(code=2)
    return value


@app.command("replace-order")
def replace_order_command(
    client_order_id: str = typer.Argument(..., help="The child's key (orderRef), epm-N-…"),
    order_type: str = typer.Option(None, "--order-type", help="LMT or MKT."),
    limit: str = typer.Option(None, "--limit", help="New limit price."),
    tif: str = typer.Option(None, "--tif", help="DAY, IOC or GTC."),
    route: str = typer.Option(None, "--route", help="SMART or a direct exchange."),
    quantity: str = typer.Option(None, "--quantity", help="New total quantity."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
    actor: str = typer.Option(None, "--actor", help="Who (default: the OS user)."),
) -> None:
    """Price/size: modified in place. Type, TIF or route: cancelled, then replaced (audited)."""
    from epm.commands.orders import _engine
    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from models.replace import Changes
    from services.orders.replace import request_replace
    from tasks.orders import BridgeVenue

    changes = Changes(
        order_type=order_type.upper() if order_type else None,
        limit_price=_decimal(limit, "--limit"),
        tif=tif.upper() if tif else None,
        route=route.upper() if route else None,
        quantity=_decimal(quantity, "--quantity"),
    )
    settings = get_settings()
    engine = _engine()
    venue = BridgeVenue(engine, get_redis(settings), settings.ib_client_id_orders)
    who = actor or f"cli:{getpass.getuser()}"
    done = request_replace(
        engine, venue, client_order_id, changes, actor=who, reason=reason, now=datetime.now(UTC)
    )
    if done.outcome == "not_found":
        typer.echo(f"no order {client_order_id!r}", err=True)
        raise typer.Exit(code=1)
    if done.outcome == "refused":
        typer.echo(f"{client_order_id}: refused {done.code}: {done.message}", err=True)
        raise typer.Exit(code=1)
    if done.outcome == "modified":
        typer.echo(f"{client_order_id}: modified in place")
        return
    typer.echo(
        f"{client_order_id}: cancel sent for IB order id {done.cancelled_ib_order_id}; "
        f"{done.replacement} goes out once the venue confirms it"
    )
