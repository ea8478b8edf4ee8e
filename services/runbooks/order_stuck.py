"""`epm runbook order-stuck ORDER_ID`: the order's ledger state against the venue's word, then
the safe action (`models.runbook.decide_order`): resync the executions when the venue filled
more than the ledger knows, cancel a working order, ask again for a cancel never answered."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Engine

from models.runbook import OrderAction, OrderFacts, decide_order, venue_filled
from services.recon.venue import VenueUnansweredError
from services.runbooks.run import Run, RunbookBridge, audit
from store.orders import OrderRow, find_order


class OrderNotFoundError(LookupError):
    """No order in the ledger under that IB order id or client order id."""


def _q(value: Decimal | None) -> str:
    return "none" if value is None else format(value.normalize(), "f") if value else "0"


def _load(engine: Engine, key: str, client_id: int) -> OrderRow | None:
    with engine.begin() as conn:
        row = find_order(conn, order_ref=key)
        if row is None and key.isdigit():
            row = find_order(conn, client_id=client_id, ib_order_id=int(key))
        return row


def order_stuck(
    engine: Engine,
    bridge: RunbookBridge,
    key: str,
    *,
    client_id: int,
    act: bool,
    actor: str,
    now: datetime,
    say: Callable[[str], None],
) -> Run:
    """Run the order-stuck runbook for the order `key` (IB order id or client order id)."""
    run = Run("order_stuck", f"order:{key}", act, say)
    run.step(
        "check",
        f"the ledger's order {key} (client order id, else IB order id of client {client_id})",
    )
    row = _load(engine, key.strip(), client_id)
    if row is None:
        run.step("found", f"no order {key} in the ledger")
        audit(engine, run, actor, now)
        raise OrderNotFoundError(f"no order {key!r} in the ledger (IB order id or client order id)")
    ib_id = int(row.ib_order_id) if row.ib_order_id is not None else None
    run.step(
        "found",
        f"{row.client_order_id}: {row.state}, {row.action} {_q(row.quantity)}"
        f" {row.symbol or row.con_id}, filled {_q(row.filled_qty)}"
        f" (IB status {row.last_ib_status or 'none'}, IB order id {ib_id})",
    )
    sent = cancel_asked = False
    if ib_id is not None:
        run.step("check", f"the bridge's markers of IB order {ib_id}")
        marker = bridge.sent_marker(int(row.client_id), ib_id)
        cancel_asked = bridge.cancel_asked(int(row.client_id), ib_id)
        sent = marker is not None and marker.startswith("sent")
        run.step("found", f"placement marker {marker or 'none'}; cancel asked: {cancel_asked}")
    run.step("check", "the venue's executions of its day (reqExecutions snapshot)")
    try:
        executions = bridge.executions()
    except VenueUnansweredError as e:
        run.step("found", f"the venue did not answer: {e}")
        run.step("next", "the gateway path is down: run `epm runbook gateway-reconnect` first")
        audit(engine, run, actor, now)
        return run
    filled, count = venue_filled(
        executions, row.client_order_id, int(row.perm_id) if row.perm_id is not None else None
    )
    run.step("found", f"the venue has {count} execution(s) of it, {_q(filled)} filled")
    verdict = decide_order(
        OrderFacts(
            client_order_id=row.client_order_id,
            ib_order_id=ib_id,
            state=row.state,
            quantity=row.quantity,
            ledger_filled=row.filled_qty,
            venue_filled=filled,
            venue_executions=count,
            sent=sent,
            cancel_asked=cancel_asked,
        )
    )
    run.step("decide", verdict.why)
    if verdict.action in (OrderAction.CANCEL, OrderAction.CANCEL_AND_RESYNC) and ib_id is not None:
        run.action(f"cancel IB order {ib_id}", lambda: f"queued as {bridge.cancel(ib_id)}")
    if verdict.action in (OrderAction.RESYNC, OrderAction.CANCEL_AND_RESYNC):
        run.action(
            "resync the venue's executions into the ledger",
            lambda: f"queued as {bridge.resync_executions()}",
        )
    if verdict.action != OrderAction.NONE:
        run.step("next", f"run `epm runbook order-stuck {key}` again to see the order settle")
    audit(engine, run, actor, now)
    return run
