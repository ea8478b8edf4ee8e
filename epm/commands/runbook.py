"""`epm runbook order-stuck ORDER_ID | gateway-reconnect | depth-failure [--con-id N]`.

Each prints what it checks and finds, step by step, decides the safe action, does it only with
`--yes` (dry run by default) and writes one `audit_log` row (`runbook.<name>`) either way
(`services/runbooks/`, `docs/operations.md` "Runbooks"). This module is the adapter between
those use cases and the bridge: its Redis keys and `ibgateway_bridge.client_api`.

Exit codes: 0 done (or nothing to do), 2 bad input (no such order) or Redis unreachable, 3 the
ledger cannot be used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import redis
import typer

from epm.cli import app

runbook_app = typer.Typer(
    help="Operator runbooks: check step by step, act with --yes, audited.", no_args_is_help=True
)
app.add_typer(runbook_app, name="runbook")

_REQUESTER_OPTS = ("depth", "bars", "contract")


class RedisBridge:
    """`services.runbooks.run.RunbookBridge` over the bridge's Redis keys and command stream."""

    def __init__(self, client: redis.Redis, timeout_s: float) -> None:
        self._r = client
        self._timeout_s = timeout_s

    def _hash(self, key: str) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self._r.hgetall(key).items()}

    def _members(self, key: str) -> list[str]:
        return sorted(_text(m) for m in self._r.smembers(key))

    def state(self) -> Mapping[str, str]:
        from ibgateway_bridge.config import STATE_KEY

        return self._hash(STATE_KEY)

    def lease(self) -> tuple[str | None, int]:
        from ibgateway_bridge.lease import lease_holder

        return lease_holder(self._r)

    def farms(self) -> Mapping[str, str]:
        from ibgateway_bridge.config import FARMS_KEY

        return self._hash(FARMS_KEY)

    def sent_marker(self, client_id: int, ib_order_id: int) -> str | None:
        from ibgateway_bridge.commands import place_key

        value = self._r.get(place_key(client_id, ib_order_id))
        return None if value is None else _text(value)

    def cancel_asked(self, client_id: int, ib_order_id: int) -> bool:
        from ibgateway_bridge.commands import CANCEL_ASKED_KEY

        key = CANCEL_ASKED_KEY.format(client_id=client_id, order_id=ib_order_id)
        return bool(self._r.exists(key))

    def executions(self) -> list[dict[str, Any]]:
        from ibgateway_bridge.client_api import (
            SnapshotIncompleteError,
            read_snapshot,
            request_executions_snapshot,
        )
        from services.recon.venue import VenueUnansweredError

        request_id = request_executions_snapshot(client=self._r)
        try:
            answer = read_snapshot(request_id, self._timeout_s, client=self._r)
        except SnapshotIncompleteError as e:
            raise VenueUnansweredError(str(e)) from e
        if answer is None:
            raise VenueUnansweredError(f"no reqExecutions answer within {self._timeout_s:g} s")
        return answer

    def cancel(self, ib_order_id: int) -> str:
        from ibgateway_bridge.client_api import enqueue_cancel

        return enqueue_cancel(ib_order_id, client=self._r)

    def resync_executions(self) -> str:
        from ibgateway_bridge.client_api import enqueue_req_executions

        return enqueue_req_executions(client=self._r)

    def resync_positions(self) -> str:
        from ibgateway_bridge.client_api import enqueue_req_positions

        return enqueue_req_positions(client=self._r)

    def depth_lines(self) -> list[dict[str, Any]]:
        from ibgateway_bridge.marketdata import MD_KEY, SUBS_KEY, SUBS_OPTS_KEY, SUBSCRIBED_KEY

        out: list[dict[str, Any]] = []
        for raw in sorted(self._members(SUBSCRIBED_KEY), key=int):
            con_id = int(raw)
            if self._hash(SUBS_OPTS_KEY.format(con_id=con_id)).get("depth") != "1":
                continue
            md = self._hash(MD_KEY.format(con_id=con_id))
            error = (
                f"{md['error_code']} {md.get('error', '')}".strip() if "error_code" in md else None
            )
            out.append(
                {
                    "con_id": con_id,
                    "requesters": self._members(SUBS_KEY.format(con_id=con_id)),
                    "depth": bool(md.get("depth")),
                    "ts": md.get("ts"),
                    "error": error,
                }
            )
        return out

    def resubscribe(self, con_id: int) -> list[str]:
        from ibgateway_bridge.client_api import enqueue_subscribe, enqueue_unsubscribe
        from ibgateway_bridge.commands import ContractSpec
        from ibgateway_bridge.marketdata import MD_KEY, SUBS_KEY, SUBS_OPTS_KEY

        opts = self._hash(SUBS_OPTS_KEY.format(con_id=con_id))
        requesters = self._members(SUBS_KEY.format(con_id=con_id)) or ["runbook"]
        contract = (
            ContractSpec.model_validate_json(opts["contract"]) if opts.get("contract") else None
        )
        # The failed line's error and stale book go first, so what arrives next is the new line's.
        self._r.hdel(MD_KEY.format(con_id=con_id), "error_code", "error", "depth")
        ids = [enqueue_unsubscribe(con_id, who, client=self._r) for who in requesters]
        ids += [
            enqueue_subscribe(
                con_id,
                who,
                contract=contract,
                depth=True,
                bars=opts.get("bars") == "1",
                client=self._r,
            )
            for who in requesters
        ]
        return ids


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _actor() -> str:
    return os.environ.get("USER") or "operator"


@contextmanager
def _stores(command: str) -> Iterator[tuple[Any, RedisBridge, Callable[[str], None]]]:
    """The ledger engine, the bridge adapter and the printer; store errors as exit codes."""
    import sqlalchemy as sa

    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from services.runbooks.order_stuck import OrderNotFoundError
    from store.db import make_engine

    settings = get_settings()
    client = get_redis(settings)
    try:
        client.ping()
    except redis.RedisError as e:
        typer.echo(f"epm runbook {command}: Redis not reached: {e}", err=True)
        raise typer.Exit(2) from e
    timeout = float(os.environ.get("EPM_RUNBOOK_TIMEOUT_S", "15"))
    try:
        yield (
            make_engine(settings.resolved_database_url()),
            RedisBridge(client, timeout),
            typer.echo,
        )
    except OrderNotFoundError as e:
        typer.echo(f"epm runbook {command}: {e}", err=True)
        raise typer.Exit(2) from e
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm runbook {command}: the ledger database cannot be used ({type(e).__name__}); "
            "is it migrated (`epm db upgrade`)?",
            err=True,
        )
        raise typer.Exit(3) from e
    except redis.RedisError as e:
        typer.echo(f"epm runbook {command}: Redis failed midway: {e}", err=True)
        raise typer.Exit(2) from e


def _finish(run: Any) -> None:
    mode = "acted" if run.act else "dry run, nothing changed"
    typer.echo(f"audited as runbook.{run.name} ({mode})")


_YES = typer.Option(False, "--yes", help="Do the safe action (default: a dry run).")


@runbook_app.command("order-stuck")
def order_stuck_command(
    order_id: str = typer.Argument(..., help="IB order id or client order id."),
    yes: bool = _YES,
) -> None:
    """The order's ledger state against the venue's; cancel or resync it."""
    from epm.settings import get_settings
    from services.runbooks.order_stuck import order_stuck

    with _stores("order-stuck") as (engine, bridge, say):
        run = order_stuck(
            engine,
            bridge,
            order_id,
            client_id=get_settings().ib_client_id_orders,
            act=yes,
            actor=_actor(),
            now=datetime.now(UTC),
            say=say,
        )
    _finish(run)


@runbook_app.command("gateway-reconnect")
def gateway_reconnect_command(yes: bool = _YES) -> None:
    """The bridge's lease, connections and farms, a venue probe; resync through the bridge."""
    from services.runbooks.gateway import gateway_reconnect

    with _stores("gateway-reconnect") as (engine, bridge, say):
        run = gateway_reconnect(
            engine, bridge, act=yes, actor=_actor(), now=datetime.now(UTC), say=say
        )
    _finish(run)


@runbook_app.command("depth-failure")
def depth_failure_command(
    con_id: int | None = typer.Option(None, "--con-id", help="Only this contract's line."),
    yes: bool = _YES,
) -> None:
    """Depth subscriptions that get no (or stale, or refused) depth; resubscribe them."""
    from services.runbooks.depth import depth_failure

    with _stores("depth-failure") as (engine, bridge, say):
        run = depth_failure(
            engine, bridge, con_id=con_id, act=yes, actor=_actor(), now=datetime.now(UTC), say=say
        )
    _finish(run)
