"""Use case: beat's scheduler tick: send the children that are due, each exactly once.

In one write transaction: claim the due SCHEDULED children (`store.orders.claim_due`, SKIP
LOCKED), decide for each from its plan, the intent's progress and the market snapshot
(`models.child_orders.price`): hold it (due again shortly), skip it (nothing left for it: it is
cancelled unsent), or size and price it and store it with a freshly allocated IB order id. Only
after that commit is the bridge asked to place it, and the PLACED event recorded after that.

Exactly once: the IB order id is in the ledger before the placement is queued, and the bridge
sends each id at most once (its `ib:sent:…` marker). A child whose PLACED was never recorded (the
worker died between commit and queueing, or before the ack) is still SCHEDULED with its id, and
is queued again under the *same* id after `RESEND_AFTER` — which the bridge then drops if the
first copy went out. A second scheduler (more `orders` workers, a second beat) claims other rows
or none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection, Engine

from epm.logging import get_logger
from models.child_orders import (
    ChildOrder,
    Hold,
    Progress,
    Skip,
    plan_from_json,
    price,
)
from models.clock import WALL_CLOCK, SessionClock
from models.combos import ComboLeg
from models.intent import IntentStatus
from models.intent_progress import (
    progress_of,
    waiting_on,
)
from models.market import ZERO
from models.orders import TERMINAL_STATES, OrderEvent, OrderEventType, OrderState
from models.replace import REPLACES
from models.venue_choice import choose_route
from services.audit import audit_order_command
from services.ledger.own_events import apply_order_event
from services.orders import combo, replace, what_if
from services.orders.child_risk import child_breach, record_breach
from services.orders.children import child_state
from services.orders.settle import settle_intents
from services.orders.venue import Venue
from services.risk.states import child_gate
from store import contracts as contracts_repo
from store import intent_life
from store import orders as orders_repo
from store.db import write_transaction
from store.orders import OrderRow

log = get_logger(__name__)

# A held child is tried again this soon (the snapshot refreshes many times a second).
HOLD_RETRY = timedelta(seconds=1)
# A sent child whose PLACED is not recorded by then is queued again under the same id.
RESEND_AFTER = timedelta(seconds=5)
# A child held this long past its due time is given up (cancelled unsent), so no intent waits
# forever on a market that never comes.
MAX_HOLD = timedelta(minutes=5)
# An instrument whose contract the venue has not described by then is refused.
CONTRACT_WAIT = timedelta(seconds=30)


@dataclass
class TickResult:
    """What one tick did, by child key."""

    sent: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    finished_intents: list[int] = field(default_factory=list)
    # (con_id, requester, contract) of instruments resolved this tick: subscribed after commit.
    subscriptions: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    # Another scheduler had the turn to send: this tick settled intents only.
    busy: bool = False


@dataclass(frozen=True, slots=True)
class _Placement:
    ib_order_id: int
    client_order_id: str
    contract: dict[str, Any]
    order: dict[str, Any]
    strategy: str | None
    # A combo's what-if copy (`services.orders.what_if`): queued, but no order row to mark PLACED.
    what_if: bool = False


def _contract(row: OrderRow) -> dict[str, Any]:
    terms = dict((row.details or {}).get("contract") or {})
    if row.con_id is not None:
        terms["con_id"] = row.con_id
    if row.exchange and row.ib_order_id is not None:  # the child's route, once it is priced
        terms["exchange"] = row.exchange
    return terms


def _placement(row: OrderRow) -> _Placement:
    details = row.details or {}
    order = {
        "action": row.action,
        "quantity": str(row.quantity),
        "order_type": row.order_type,
        "lmt_price": None if row.limit_price is None else str(row.limit_price),
        "aux_price": None if row.aux_price is None else str(row.aux_price),
        "trailing_percent": details.get("trail_percent"),
        "tif": row.tif,
        "parent_id": details.get("parent_ib_order_id"),
        "transmit": details.get("transmit", True),
        "oca_group": details.get("oca_group"),
    }
    return _Placement(
        ib_order_id=row.ib_order_id,
        client_order_id=row.client_order_id,
        contract=_contract(row),
        order={k: v for k, v in order.items() if v is not None},
        strategy=row.strategy,
    )


def _merge(row: OrderRow, extra: Mapping[str, object]) -> dict[str, object]:
    return {**(row.details or {}), **extra}


def _give_up(conn: Connection, row: OrderRow, reason: str, now: datetime) -> None:
    apply_order_event(
        conn,
        row.client_order_id,
        OrderEvent(OrderEventType.CANCELLED, ts_init=now),
        payload={"reason": reason, "unsent": True},
        dedupe_key=f"unsent:{row.client_order_id}",
    )


def _resolve(conn: Connection, row: OrderRow, now: datetime) -> OrderRow | str:
    """The row with its conId, or why it cannot have one yet."""
    if row.con_id is not None:
        return row
    terms = (row.details or {}).get("contract") or {}
    found = contracts_repo.find_con_id(
        conn,
        symbol=str(terms.get("symbol", row.symbol)),
        sec_type=str(terms.get("sec_type", row.sec_type or "STK")),
        expiry=terms.get("expiry"),
        strike=Decimal(str(terms["strike"])) if terms.get("strike") else None,
        right=terms.get("right"),
    )
    if found is None:
        return "contract not resolved yet"
    if row.intent_id is not None and row.parent_order_id is None and combo.role_of(row) is None:
        intent_life.fill_con_id(conn, row.intent_id, found, now)
    return orders_repo.update_columns(conn, row, {"con_id": found}, now)


def _decide(
    conn: Connection, venue: Venue, row: OrderRow, now: datetime, result: TickResult
) -> _Placement | None:
    key = row.client_order_id
    if row.ib_order_id is not None:
        orders_repo.update_columns(conn, row, {"due_at": now + RESEND_AFTER}, now)
        result.resent.append(key)
        return _placement(row)
    if row.parent_link == REPLACES:  # a structural replace: once the old one has ended
        return _replacement(conn, venue, row, now, result)
    plan = plan_from_json(dict((row.details or {})["plan"]))
    role = combo.role_of(row)
    legs: list[ComboLeg] = []
    if role == "combo":
        found = combo.resolve_legs(conn, row)
        resolved: OrderRow | str = row
        if isinstance(found, str):
            resolved = found
        else:
            legs = found
            for leg, terms in zip(legs, (row.details or {}).get("legs") or [], strict=False):
                if not venue.market(leg.con_id):
                    spec = {k: v for k, v in terms.items() if k not in ("ratio", "action")}
                    result.subscriptions.append((leg.con_id, f"intent:{row.intent_id}", spec))
    else:
        resolved = _resolve(conn, row, now)
    if isinstance(resolved, str):
        if now - row.created_at > CONTRACT_WAIT:
            message = f"the venue did not describe {row.symbol} within {CONTRACT_WAIT}"
            _give_up(conn, row, f"UNKNOWN_CONTRACT: {message}", now)
            intent_life.set_status(
                conn,
                row.intent_id,
                IntentStatus.REJECTED.value,
                now,
                reason="UNKNOWN_CONTRACT",
                message=message,
            )
            result.skipped[key] = "UNKNOWN_CONTRACT"
            return None
        orders_repo.update_columns(conn, row, {"due_at": now + HOLD_RETRY}, now)
        result.held[key] = resolved
        return None
    if row.con_id is None and resolved.con_id is not None:
        result.subscriptions.append(
            (resolved.con_id, f"intent:{row.intent_id}", _contract(resolved))
        )
    row = resolved
    intent = intent_life.lock(conn, row.intent_id)
    if intent is None:  # pragma: no cover - the foreign key keeps it
        raise LookupError(f"intent {row.intent_id} of {key} is gone")
    rows = orders_repo.of_intent(conn, row.intent_id)
    siblings = [child_state(r) for r in rows if r.id != row.id]
    parent_ib_id: int | None = None
    progress = progress_of(siblings, intent.quantity, intent.max_slippage_bps or Decimal(0))
    if role == "leg":
        gate = combo.leg_gate(row, rows, intent.quantity)
        if isinstance(gate, str):
            if gate.startswith("skip:"):
                _give_up(conn, row, gate.removeprefix("skip: "), now)
                result.skipped[key] = gate
            else:
                _hold(conn, row, plan.due_at, gate, now, result)
            return None
        progress = Progress(ZERO, gate, None, intent.max_slippage_bps or Decimal(0))
    elif role == "hedge":
        pass  # a fixed size, sent once the legs are done (planned by `settle_intents`)
    elif row.parent_link == "bracket_exit" and row.parent_order_id is not None:
        # A bracket exit goes out after its entry, naming the entry's IB order id.
        parent = orders_repo.by_id(conn, row.parent_order_id)
        if parent.ib_order_id is None:
            if OrderState(parent.state) in TERMINAL_STATES:
                _give_up(conn, row, "its entry was never sent", now)
                result.skipped[key] = "entry never sent"
            else:
                _hold(conn, row, plan.due_at, "waiting for its entry to be sent", now, result)
            return None
        parent_ib_id = int(parent.ib_order_id)
    else:
        waiting = waiting_on(siblings, intent.quantity)
        if waiting is not None:
            _hold(conn, row, plan.due_at, waiting, now, result)
            return None
    if role == "combo":
        snapshot = combo.combo_quote(conn, venue, legs)
    else:
        snapshot = combo.snapshot_of(conn, venue, row.con_id)
    decided = price(plan, progress, snapshot, now)
    if isinstance(decided, Skip):
        _give_up(conn, row, decided.reason, now)
        result.skipped[key] = decided.reason
        return None
    if isinstance(decided, Hold):
        _hold(conn, row, plan.due_at, decided.reason, now, result)
        return None
    # HALTED / REDUCING (services.risk.states)
    blocked = child_gate(conn, intent, row, decided.quantity)
    if blocked is not None:
        if blocked[0] == "hold":
            _hold(conn, row, plan.due_at, blocked[1], now, result)
        else:
            _give_up(conn, row, blocked[1], now)
            result.skipped[key] = blocked[1].split(":", 1)[0]
        return None
    breach = child_breach(conn, intent, row, decided)
    if breach is not None:
        record_breach(conn, intent, row, breach, now)
        _give_up(conn, row, f"{breach.reason.value}: {breach.message}", now)
        result.skipped[key] = breach.reason.value
        return None
    if role is None and ((intent.payload or {}).get("params") or {}).get("route_by_depth"):
        choice = choose_route(
            decided.action,
            decided.quantity,
            decided.limit_price,
            decided.route,
            venue.market(int(row.con_id)).get("depth"),
        )
        decided = dataclasses.replace(decided, route=choice.route)
        details = _merge(row, {"route_why": choice.why})
        row = orders_repo.update_columns(conn, row, {"details": details}, now)
    if legs:
        contract = combo.combo_contract(row, legs)
        details = _merge(row, {"contract": contract})
        row = orders_repo.update_columns(conn, row, {"details": details}, now)
        margin = what_if.combo_margin(conn, venue, intent, row, decided, now)
        if isinstance(margin, what_if.Ask):  # the what-if goes first; the BAG waits for it
            _hold(conn, orders_repo.reload(conn, row), plan.due_at, "asked a what-if", now, result)
            return _Placement(
                margin.ib_order_id,
                margin.client_order_id,
                contract,
                margin.order,
                row.strategy,
                True,
            )
        if isinstance(margin, what_if.Wait):
            _hold(conn, row, plan.due_at, margin.reason, now, result)
            return None
        if isinstance(margin, what_if.Refuse):
            result.skipped[key] = margin.code
            return None
        row = orders_repo.reload(conn, row)
    if plan.capped and snapshot is not None and snapshot.bar_volume is not None:
        # The bar the participation cap was taken against, kept with the child for review.
        details = _merge(row, {"bar_volume": str(snapshot.bar_volume)})
        row = orders_repo.update_columns(conn, row, {"details": details}, now)
    row = _store_priced(conn, venue, row, decided, now, parent_ib_id)
    result.sent.append(key)
    return _placement(row)


def _replacement(
    conn: Connection, venue: Venue, row: OrderRow, now: datetime, result: TickResult
) -> _Placement | None:
    decided = replace.replacement_child(conn, venue, row, now)
    if isinstance(decided, Skip):
        _give_up(conn, row, decided.reason, now)
        result.skipped[row.client_order_id] = decided.reason
        return None
    if isinstance(decided, Hold):
        _hold(conn, row, row.created_at, decided.reason, now, result)
        return None
    intent = intent_life.lock(conn, row.intent_id)
    blocked = None if intent is None else child_gate(conn, intent, row, decided.quantity)
    if blocked is not None:  # HALTED / REDUCING hold or end a replacement as any child
        if blocked[0] == "hold":
            _hold(conn, row, row.created_at, blocked[1], now, result)
        else:
            _give_up(conn, row, blocked[1], now)
            result.skipped[row.client_order_id] = blocked[1].split(":", 1)[0]
        return None
    row = _store_priced(conn, venue, row, decided, now, None)
    result.sent.append(row.client_order_id)
    return _placement(row)


def _hold(
    conn: Connection,
    row: OrderRow,
    planned_due: datetime,
    reason: str,
    now: datetime,
    result: TickResult,
) -> None:
    """Try the child again shortly, or give it up once it has waited `MAX_HOLD`."""
    if now - planned_due > MAX_HOLD:
        _give_up(conn, row, f"held past {MAX_HOLD}: {reason}", now)
        result.skipped[row.client_order_id] = reason
        return
    details = _merge(row, {"held": reason})
    orders_repo.update_columns(conn, row, {"due_at": now + HOLD_RETRY, "details": details}, now)
    result.held[row.client_order_id] = reason


def _store_priced(
    conn: Connection,
    venue: Venue,
    row: OrderRow,
    child: ChildOrder,
    now: datetime,
    parent_ib_id: int | None,
) -> OrderRow:
    """Commit-to-be: the child's size, price and freshly allocated IB order id."""
    return orders_repo.update_columns(
        conn,
        row,
        {
            "ib_order_id": venue.allocate_id(),
            "quantity": child.quantity,
            "order_type": child.order_type,
            "limit_price": child.limit_price,
            "aux_price": child.aux_price,
            "tif": child.tif,
            "exchange": child.route,
            "due_at": now + RESEND_AFTER,
            "details": _merge(
                row,
                {
                    "reference_price": None
                    if child.reference_price is None
                    else str(child.reference_price),
                    "priced_at": now.isoformat(),
                    "held": None,
                    "transmit": child.transmit,
                    "oca_group": child.oca_group,
                    "trail_percent": None
                    if child.trail_percent is None
                    else str(child.trail_percent),
                    "parent_ib_order_id": parent_ib_id,
                },
            ),
        },
        now,
    )


def send_due(
    engine: Engine,
    venue: Venue,
    now: datetime,
    *,
    limit: int = 50,
    intent_id: int | None = None,
    clock: SessionClock = WALL_CLOCK,
) -> TickResult:
    """One scheduler tick (see the module docstring); with `intent_id`, only that intent's due
    children, not settling (an intent just planned: its first children go out at once).

    `now` is the wall clock (due times, holds, re-sends, market-data age); `clock` the session's,
    for the rules that follow the venue (`good_till`)."""
    result = TickResult()
    placements: list[_Placement] = []
    if intent_id is None:
        # Intents whose life is over first, so no child of an expired or aborted plan goes out.
        with write_transaction(engine) as conn:
            result.finished_intents, to_cancel = settle_intents(conn, now, venue, clock=clock)
            for ib_order_id in to_cancel:
                audit_order_command(
                    conn, now, "order_cancel", f"ib:{ib_order_id}", {"why": "intent ended"}
                )
        for ib_order_id in to_cancel:
            venue.cancel(ib_order_id)
    with venue.sending() as turn:
        if not turn:
            result.busy = True
            return result
        with write_transaction(engine) as conn:
            for row in orders_repo.claim_due(conn, now, limit, intent_id):
                placement = _decide(conn, venue, row, now, result)
                if placement is not None:
                    placements.append(placement)
        _queue(engine, venue, now, result, placements)
    return result


def _queue(
    engine: Engine, venue: Venue, now: datetime, result: TickResult, placements: list[_Placement]
) -> None:
    """After the commit: subscriptions, then each placement in allocation order, then PLACED."""
    for con_id, requester, contract in result.subscriptions:
        venue.subscribe(con_id, requester, contract)
    for placement in placements:
        venue.place(
            placement.ib_order_id,
            placement.client_order_id,
            placement.contract,
            placement.order,
            placement.strategy,
        )
        if placement.what_if:
            continue
        sent = {"ib_order_id": placement.ib_order_id, **placement.order}
        with write_transaction(engine) as conn:
            apply_order_event(
                conn,
                placement.client_order_id,
                OrderEvent(OrderEventType.PLACED, ts_init=now),
                payload=sent,
                dedupe_key=f"placed:{placement.client_order_id}",
            )
            audit_order_command(conn, now, "order_place", placement.client_order_id, sent)
        log.info(
            "orders.child_sent",
            client_order_id=placement.client_order_id,
            ib_order_id=placement.ib_order_id,
            strategy=placement.strategy,
            **placement.order,
        )
