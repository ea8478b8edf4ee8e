"""`epm kill-switch`, `epm resume`, `epm cancel ORDER_ID`, `epm status`: operator controls.

The kill switch and resume never go through the bridge: they must work when it is hung.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import typer

from epm.cli import app

if TYPE_CHECKING:
    from epm.settings import Settings
    from ibgateway_bridge.killswitch import KillReport, LedgerAudit


def _actor(actor: str | None) -> str:
    return actor or os.environ.get("USER") or "operator"


@contextmanager
def _redis_reached() -> Iterator[None]:
    """An unreachable Redis is an operator-facing message and exit code 2, not a traceback."""
    import redis

    try:
        yield
    except redis.RedisError as e:
        typer.echo(f"Redis not reached: {e}", err=True)
        raise typer.Exit(2) from e


def _ledger_audit(settings: Settings) -> LedgerAudit | None:
    """The ledger's audit writer, when a ledger exists (configured, or the embedded one made)."""
    if settings.database_url is None and not settings.sqlite_path.exists():
        return None
    from services.audit import record_audit

    url = settings.resolved_database_url()
    return lambda actor, action, at, details: record_audit(url, actor, action, at, details)


@app.command("kill-switch")
def kill_switch_command(
    reason: str = typer.Option("manual", "--reason", help="Why; recorded in the audit log."),
    actor: str | None = typer.Option(None, "--actor", help="Who (default: $USER)."),
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds to reach IB as client 99."),
) -> None:
    """Halt all trading: global halt flag, reqGlobalCancel as client 99, purge queued orders."""
    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from ibgateway_bridge.killswitch import kill_switch

    settings = get_settings()
    report = kill_switch(
        get_redis(settings),
        settings.ib_host,
        settings.ib_port,
        client_id=settings.ib_client_id_kill,
        actor=_actor(actor),
        reason=reason,
        ledger_audit=_ledger_audit(settings),
        timeout_s=timeout,
        orders_client_id=settings.ib_client_id_orders,
    )
    code = report_kill(report)
    if code:
        raise typer.Exit(code)


def report_kill(report: KillReport) -> int:
    """Print what the kill switch did; the exit code: 2 when IB or Redis was not reached.

    Shared by the Typer command and the lean path `epm.killswitch_fast`, so both speak alike.
    """
    typer.echo(
        f"global halt set; reqGlobalCancel sent={report.global_cancel_sent}; "
        f"purged {report.purged} queued order command(s); {report.elapsed_s:.3f}s"
    )
    if report.redis_error is not None:
        typer.echo(
            f"Redis not reached ({report.redis_error}): halt flag, purge and audit may be "
            "missing; run the kill switch again once Redis is back",
            err=True,
        )
    if not report.global_cancel_sent:
        typer.echo(f"IB not reached: {report.ib_error}", err=True)
    return 2 if report.redis_error is not None or not report.global_cancel_sent else 0


@app.command("resume")
def resume_command(
    reason: str = typer.Option(..., "--reason", help="Why trading may resume (audited)."),
    actor: str | None = typer.Option(None, "--actor", help="Who (default: $USER)."),
) -> None:
    """Lift the global halt set by the kill switch, with an audit entry."""
    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from ibgateway_bridge.killswitch import resume

    settings = get_settings()
    with _redis_reached():
        was_halted = resume(get_redis(settings), _actor(actor), reason, _ledger_audit(settings))
    typer.echo("global halt lifted" if was_halted else "no global halt was set (audited anyway)")


@app.command("cancel")
def cancel_command(order_id: int = typer.Argument(..., help="IB order id to cancel.")) -> None:
    """Queue a cancel for ORDER_ID on the bridge (it overtakes queued placements)."""
    from epm.commands.audit import audit_operator_action
    from ibgateway_bridge.client_api import enqueue_cancel

    try:
        with _redis_reached():
            stream_id = enqueue_cancel(order_id)
    except ValueError as e:
        typer.echo(f"invalid order id: {e}", err=True)
        raise typer.Exit(2) from e
    audit_operator_action("order_cancel", f"order:ib:{order_id}", {"stream_id": stream_id})
    typer.echo(f"cancel for order {order_id} queued as {stream_id}")


@app.command("status")
def status_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Bridge lease and connections, halts, command backlog, last order id, recent alerts,
    open ledger dead letters."""
    from epm.commands.ledger import dead_letter_count
    from epm.redis_conn import get_redis

    with _redis_reached():
        status = _status(get_redis())
    status["ledger_dead_letters"] = dead_letter_count()
    if as_json:
        json.dump(status, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    for key, value in status.items():
        typer.echo(f"{key}: {json.dumps(value, default=str)}")


def _status(r: Any) -> dict[str, Any]:
    """Everything `epm status` shows, read from Redis."""
    import redis

    from ibgateway_bridge import commands as cmds
    from ibgateway_bridge.ids import OrderIdAllocator
    from ibgateway_bridge.lease import lease_holder
    from ibgateway_bridge.runtime import FARMS_KEY, STATE_KEY

    holder, ttl = lease_holder(r)
    pending = 0
    length = 0
    if r.exists(cmds.COMMAND_STREAM):
        length = int(r.xlen(cmds.COMMAND_STREAM))
        try:
            pending = int(r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"])
        except redis.ResponseError:  # no consumer group yet (NOGROUP): nothing pending
            pending = 0
    halts = {k: r.get(k) for k in r.scan_iter("epm:halt:*")}
    alerts = [f for _id, f in cast(list[Any], r.xrevrange(cmds.ALERT_STREAM, count=5))]
    return {
        "bridge_lease": holder,
        "lease_ttl_ms": ttl,
        "bridge": r.hgetall(STATE_KEY),
        "farms": r.hgetall(FARMS_KEY),
        "halts": halts,
        "commands": {"length": length, "pending": pending},
        "last_order_id": OrderIdAllocator(r).last(),
        "recent_alerts": alerts,
    }
