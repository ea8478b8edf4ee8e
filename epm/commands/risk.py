"""`epm risk status|halt|reduce|resume [STRATEGY|--global] --reason TEXT --actor WHO`.

Trading states (docs/risk.md, "Trading states"): `status` prints the global and per-strategy
states with who set them and why, and the rules' causes standing now; `halt` / `reduce` tighten
(any named actor may stop trading); `resume` (→ ACTIVE) and `reduce` of a HALTED scope loosen,
allowed only to an actor listed in `EPM_RISK_OPERATORS` (comma-separated) and only while no
rule's cause persists. Every change is audited with the actor and reason.

Exit codes: 0 done (or already in that state), 2 bad arguments, 3 the ledger cannot be used,
4 refused (not authorised, or the cause persists: the message says which).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from epm.cli import app

if TYPE_CHECKING:
    import redis
    from sqlalchemy.engine import Engine

    from models.strategy_state import Cause

risk_app = typer.Typer(
    help="Trading states and circuit breakers (docs/risk.md).", no_args_is_help=True
)
app.add_typer(risk_app, name="risk")

OPERATORS_ENV = "EPM_RISK_OPERATORS"


def operators() -> frozenset[str]:
    """The actors allowed to loosen a trading state (`EPM_RISK_OPERATORS`, comma-separated)."""
    raw = os.environ.get(OPERATORS_ENV, "")
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def _stores() -> tuple[Engine, redis.Redis, int]:
    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from store.db import make_engine

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url())
    return engine, get_redis(settings), settings.ib_client_id_orders


def _causes(engine: Engine, client: redis.Redis, orders_id: int, now: datetime) -> list[Cause]:
    from services.risk import breakers, post_trade
    from tasks.risk import day_start, disconnect_limit, limits_in_force

    with engine.connect() as conn:
        trades = post_trade.standing_causes(conn, limits_in_force(conn), day_start(now))
        return trades + breakers.standing_causes(
            conn,
            client,
            orders_client_id=orders_id,
            disconnect_limit=disconnect_limit(),
            now=now,
        )


def _ledger_error(what: str, e: Exception) -> typer.Exit:
    typer.echo(
        f"epm risk {what}: the ledger database cannot be used ({type(e).__name__}); "
        "is it migrated (`epm db upgrade`)?",
        err=True,
    )
    return typer.Exit(3)


def _record(r: Any) -> dict[str, Any]:
    return {
        "scope": r.scope,
        "state": r.state.value,
        "reason": r.reason,
        "actor": r.actor,
        "changed_at": None if r.changed_at is None else r.changed_at.isoformat(),
        "version": r.version,
    }


@risk_app.command("status")
def status_command(as_json: bool = typer.Option(False, "--json", help="JSON.")) -> None:
    """The global and per-strategy trading states, and the causes standing now."""
    import sqlalchemy as sa

    from models.strategy_state import GLOBAL_SCOPE
    from store import strategy_states

    now = datetime.now(UTC)
    engine, client, orders_id = _stores()
    try:
        with engine.connect() as conn:
            desk = strategy_states.get(conn, GLOBAL_SCOPE)
            rows = [r for r in strategy_states.all_states(conn) if r.scope != GLOBAL_SCOPE]
        causes = _causes(engine, client, orders_id, now)
    except sa.exc.SQLAlchemyError as e:
        raise _ledger_error("status", e) from e
    doc: dict[str, Any] = {
        "global": _record(desk),
        "strategies": [_record(r) for r in rows],
        "causes": [
            {"scope": c.scope, "state": c.state.value, "code": c.code, "message": c.message}
            for c in causes
        ],
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    for rec in [doc["global"], *doc["strategies"]]:
        since = f" since {rec['changed_at']}" if rec["changed_at"] else ""
        why = f" by {rec['actor']}: {rec['reason']}" if rec["reason"] else ""
        typer.echo(f"{rec['scope']:<16} {rec['state']:<9} v{rec['version']}{since}{why}")
    for cause in doc["causes"]:
        typer.echo(
            f"cause {cause['scope']}: {cause['code']} → {cause['state']}: {cause['message']}"
        )


def _change(what: str, to: str, strategy: str | None, desk: bool, reason: str, actor: str) -> None:
    import sqlalchemy as sa

    from models.strategies import get_strategy
    from models.strategy_state import GLOBAL_SCOPE, TradingState, TransitionRefused
    from services.risk.states import operator_change
    from tasks.orders import BridgeVenue

    if desk == (strategy is not None):
        typer.echo(f"epm risk {what}: name one STRATEGY or --global", err=True)
        raise typer.Exit(2)
    if strategy is not None and get_strategy(strategy) is None:
        typer.echo(f"epm risk {what}: unknown strategy {strategy!r}", err=True)
        raise typer.Exit(2)
    if not reason.strip() or not actor.strip():
        typer.echo(f"epm risk {what}: --reason and --actor must not be empty", err=True)
        raise typer.Exit(2)
    scope = GLOBAL_SCOPE if desk else str(strategy)
    now = datetime.now(UTC)
    engine, client, orders_id = _stores()
    try:
        causes = _causes(engine, client, orders_id, now)
        done = operator_change(
            engine,
            BridgeVenue(engine, client, orders_id),
            scope,
            TradingState(to),
            actor=actor.strip(),
            reason=reason.strip(),
            operators=operators(),
            causes=causes,
            now=now,
            halts=client,
        )
    except TransitionRefused as e:
        typer.echo(f"epm risk {what}: refused: {e}", err=True)
        raise typer.Exit(4) from e
    except sa.exc.SQLAlchemyError as e:
        raise _ledger_error(what, e) from e
    if not done.changed:
        typer.echo(f"{scope}: already {done.record.state.value}; nothing changed")
        return
    sent = ", ".join(str(i) for i in done.cancels_sent) or "none"
    typer.echo(
        f"{scope}: {done.record.state.value} (v{done.record.version}) by {actor}: {reason}; "
        f"cancels sent for IB order ids: {sent}"
    )


_STRATEGY = typer.Argument(None, help="The strategy (or --global).")
_GLOBAL = typer.Option(False, "--global", help="The whole desk.")
_REASON = typer.Option(..., "--reason", help="Why (kept in the audit log).")
_ACTOR = typer.Option(..., "--actor", help="Who (kept in the audit log).")


@risk_app.command("halt")
def halt_command(
    strategy: str | None = _STRATEGY,
    desk: bool = _GLOBAL,
    reason: str = _REASON,
    actor: str = _ACTOR,
) -> None:
    """HALT: no new intents or child orders; working entry orders cancelled, exits kept."""
    _change("halt", "HALTED", strategy, desk, reason, actor)


@risk_app.command("reduce")
def reduce_command(
    strategy: str | None = _STRATEGY,
    desk: bool = _GLOBAL,
    reason: str = _REASON,
    actor: str = _ACTOR,
) -> None:
    """REDUCING: only intents and children that bring the position towards flat."""
    _change("reduce", "REDUCING", strategy, desk, reason, actor)


@risk_app.command("resume")
def resume_command(
    strategy: str | None = _STRATEGY,
    desk: bool = _GLOBAL,
    reason: str = _REASON,
    actor: str = _ACTOR,
) -> None:
    """ACTIVE again (an operator in EPM_RISK_OPERATORS; refused while a cause persists)."""
    _change("resume", "ACTIVE", strategy, desk, reason, actor)
