"""Use case: an operator changes a working child (`epm replace-order`), in place or structurally.

load the child (locked) → `models.replace.classify` → commit, audited → after commit, queue:
- a price/size change is a modification under the same IB order id (`enqueue_modify`, the next
  version, as the pegged re-pricer does);
- a new order type, time in force or route cancels the child (CANCEL_REQUESTED, the cancel
  queued) and stores its replacement: a SCHEDULED child linked by `parent_order_id` (the old
  row's id, `parent_link` "replaces") with the new terms and no IB order id yet. The scheduler
  tick sends it only once the old one has ended at the venue, under a freshly allocated id, sized
  to what the old one did not fill (`replacement_gate`).

Why an operator command and not a playbook: the playbooks' own changes are already expressible in
place (the peg's price) or as new children (a sweep's next IOC step, the slippage switch), while a
desk routinely needs to take a resting order off its peg into an IOC at a price of its choosing,
or move it to another route or time in force, without ending the intent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection, Engine

from epm.logging import get_logger
from models.child_orders import Action, ChildOrder, Hold, Skip, Template
from models.orders import OrderEvent, OrderEventType, OrderState
from models.replace import (
    REPLACES,
    Changes,
    Drop,
    Modify,
    Refused,
    Structural,
    Terms,
    Wait,
    classify,
    replacement_gate,
)
from services.ledger.own_events import apply_order_event
from services.orders.combo import snapshot_of
from services.orders.venue import Venue
from store import orders as orders_repo
from store.audit import insert_audit
from store.db import write_transaction
from store.orders import OrderRow

log = get_logger(__name__)

MODIFY_VERSION = "modify_version"  # shared with services.orders.reprice


@dataclass(frozen=True, slots=True)
class ReplaceOutcome:
    """`outcome`: modified / replaced / refused / not_found; `replacement` the new child's key."""

    outcome: str
    client_order_id: str
    code: str | None = None
    message: str | None = None
    replacement: str | None = None
    cancelled_ib_order_id: int | None = None


def _terms(row: OrderRow) -> Terms:
    return Terms(
        action=row.action,
        quantity=row.quantity,
        order_type=row.order_type or "LMT",
        limit_price=row.limit_price,
        tif=row.tif or "DAY",
        route=row.exchange or "SMART",
    )


def _wire(terms: Terms) -> dict[str, Any]:
    order: dict[str, Any] = {
        "action": terms.action,
        "quantity": str(terms.quantity),
        "order_type": terms.order_type,
        "tif": terms.tif,
    }
    if terms.limit_price is not None:
        order["lmt_price"] = str(terms.limit_price)
    return order


def _contract(row: OrderRow, route: str) -> dict[str, Any]:
    contract = dict((row.details or {}).get("contract") or {})
    contract["con_id"] = row.con_id
    contract["exchange"] = route
    return contract


def request_replace(
    engine: Engine,
    venue: Venue,
    client_order_id: str,
    changes: Changes,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> ReplaceOutcome:
    """Carry out `changes` on a working child (see the module docstring)."""
    modify: tuple[int, int, dict[str, Any], dict[str, Any], str | None] | None = None
    cancel: int | None = None
    with write_transaction(engine) as conn:
        row = orders_repo.lock_by_ref(conn, client_order_id)
        if row is None:
            return ReplaceOutcome("not_found", client_order_id)
        if row.intent_id is None or row.parent_link not in ("child", REPLACES):
            return ReplaceOutcome(
                "refused",
                client_order_id,
                "NOT_A_PLAIN_CHILD",
                "only an intent's plain child is replaced here (a bracket exit, combo leg or "
                "hedge is tied to its group)",
            )
        if row.ib_order_id is None:
            return ReplaceOutcome("refused", client_order_id, "NOT_SENT", "not sent yet")
        if (row.details or {}).get("legs"):
            return ReplaceOutcome("refused", client_order_id, "COMBO", "a BAG is not replaced")
        decided = classify(_terms(row), OrderState(row.state), row.filled_qty, changes)
        if isinstance(decided, Refused):
            return ReplaceOutcome("refused", client_order_id, decided.code, decided.message)
        details: dict[str, Any] = dict(row.details or {})
        audit = {"reason": reason, "ib_order_id": row.ib_order_id, **_wire(decided.terms)}
        if isinstance(decided, Modify):
            version = int(details.get(MODIFY_VERSION, 0)) + 1
            # Off the peg: the operator's price is not re-priced to the mid.
            details.update({MODIFY_VERSION: version, "template": _template(details)})
            orders_repo.update_columns(
                conn,
                row,
                {
                    "limit_price": decided.terms.limit_price,
                    "quantity": decided.terms.quantity,
                    "details": details,
                },
                now,
            )
            wire = _wire(decided.terms)
            modify = (
                int(row.ib_order_id),
                version,
                _contract(row, decided.terms.route),
                wire,
                row.strategy,
            )
            _audit(conn, now, actor, "order_modify", client_order_id, audit)
            outcome = ReplaceOutcome("modified", client_order_id)
        else:
            new_key = _replacement_key(conn, row)
            _store_replacement(conn, row, decided, new_key, reason, now)
            apply_order_event(
                conn,
                client_order_id,
                OrderEvent(OrderEventType.CANCEL_REQUESTED, ts_init=now),
                payload={
                    "reason": f"replaced by {new_key}: {reason}",
                    "ib_order_id": row.ib_order_id,
                },
                dedupe_key=f"cancel:{client_order_id}",
            )
            cancel = int(row.ib_order_id)
            audit["replacement"] = new_key
            audit["changed"] = ",".join(decided.changed)
            _audit(conn, now, actor, "order_replace", client_order_id, audit)
            outcome = ReplaceOutcome(
                "replaced", client_order_id, replacement=new_key, cancelled_ib_order_id=cancel
            )
    if modify is not None:
        venue.modify(modify[0], modify[1], client_order_id, modify[2], modify[3], modify[4])
    if cancel is not None:
        venue.cancel(cancel)
    log.info("orders.replace", client_order_id=client_order_id, outcome=outcome.outcome)
    return outcome


def _template(details: dict[str, Any]) -> str:
    template = str(details.get("template") or Template.MARKETABLE_LIMIT.value)
    if template == Template.PEGGED_MID.value:
        return Template.MARKETABLE_LIMIT.value
    return template


def _audit(
    conn: Connection, now: datetime, actor: str, action: str, key: str, details: dict[str, Any]
) -> None:
    insert_audit(
        conn,
        ts=now,
        actor=actor,
        action=action,
        target=f"order:{key}",
        details={k: str(v) for k, v in details.items()},
    )


def _replacement_key(conn: Connection, row: OrderRow) -> str:
    """`{root}-r{n}`: the n-th replacement of the child's original (a chain stays readable)."""
    details = row.details or {}
    root = str(details.get("replace_root") or row.client_order_id)
    n = int(details.get("replace_n", 0)) + 1
    return f"{root}-r{n}"


def _store_replacement(
    conn: Connection, row: OrderRow, decided: Structural, key: str, reason: str, now: datetime
) -> None:
    old = dict(row.details or {})
    terms = decided.terms
    orders_repo.create_order(
        conn,
        {
            "client_order_id": key,
            "client_id": row.client_id,
            "intent_id": row.intent_id,
            "parent_order_id": row.id,
            "parent_link": REPLACES,
            "strategy": row.strategy,
            "con_id": row.con_id,
            "symbol": row.symbol,
            "sec_type": row.sec_type,
            "action": terms.action,
            "quantity": terms.quantity,
            "order_type": terms.order_type,
            "limit_price": terms.limit_price,
            "tif": terms.tif,
            "exchange": terms.route,
            "due_at": now,
            "state": OrderState.SCHEDULED.value,
            "details": {
                "plan": old.get("plan"),
                "template": _template(old),
                "why": f"replaces {row.client_order_id} ({', '.join(decided.changed)}): {reason}",
                "contract": {**(old.get("contract") or {}), "exchange": terms.route},
                "replace_root": str(old.get("replace_root") or row.client_order_id),
                "replace_n": int(old.get("replace_n", 0)) + 1,
                # The total the order is to reach, the old one's fills included.
                "replace_total": str(terms.quantity),
                "reference_price": old.get("reference_price"),
            },
        },
        now,
    )


def replacement_child(
    conn: Connection, venue: Venue, row: OrderRow, now: datetime
) -> ChildOrder | Hold | Skip:
    """The replacement as it may go now: held while the old order may still be working, skipped
    when the old one filled everything, else sized to what the old one did not fill."""
    old = orders_repo.by_id(conn, int(row.parent_order_id))
    details = row.details or {}
    total = Decimal(str(details.get("replace_total", row.quantity)))
    gate = replacement_gate(OrderState(old.state), total, old.filled_qty, old.ib_filled_qty)
    if isinstance(gate, Wait):
        return Hold(row.client_order_id, gate.reason)
    if isinstance(gate, Drop):
        return Skip(row.client_order_id, gate.reason)
    snapshot = snapshot_of(conn, venue, int(row.con_id)) if row.con_id is not None else None
    mid = None if snapshot is None else snapshot.mid
    reference = mid if mid is not None else details.get("reference_price")
    return ChildOrder(
        key=row.client_order_id,
        template=Template(str(details.get("template") or Template.MARKETABLE_LIMIT.value)),
        action=Action(row.action),
        quantity=gate.quantity,
        order_type=row.order_type,
        limit_price=row.limit_price,
        aux_price=None,
        trail_percent=None,
        reference_price=None if reference is None else Decimal(str(reference)),
        tif=row.tif,
        route=row.exchange or "SMART",
        parent_key=None,
        transmit=True,
        oca_group=None,
    )
