"""Use case: turn an admitted intent into its plan of children (SCHEDULED orders), once.

load the intent (locked) → `models.playbooks.plan_intent` → save each child as an
`execution_orders` row (state SCHEDULED, `due_at`, the plan in `details["plan"]`) and the intent
as WORKING → after commit, ask for the contract (when its conId is unknown) and the market data
its children will be priced on. Idempotent on the intent: only a VALIDATED intent is planned,
so a redelivered task finds it WORKING and does nothing. A playbook's refusal rejects the intent
with its reason code: an intent is never left waiting for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from epm.logging import get_logger
from models.child_orders import ChildPlan, Template, plan_to_json, with_due
from models.clock import WALL_CLOCK, SessionClock
from models.instruments import Contract, OptionContract, ib_terms
from models.intent import Intent, IntentStatus
from models.ledger_rules import COMBO_SEC_TYPE
from models.orders import OrderState
from models.playbooks import Plan, plan_intent
from services.orders.venue import Venue
from store import contracts as contracts_repo
from store import intent_life
from store import orders as orders_repo
from store.db import write_transaction

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Planned:
    """What planning did: `outcome` is planned / rejected / already / not_found."""

    outcome: str
    intent_id: int
    children: int = 0
    template: str | None = None
    reason: str | None = None


def child_order_id(intent_id: int, key: str) -> str:
    """Our key of a child (sent to IB as orderRef): short, unique, readable."""
    return f"epm-{intent_id}-{key}"


def resolve_con_id(conn: Connection, instrument: Contract, known: int | None) -> int | None:
    """The instrument's conId: as stored, else from the ledger's contract cache, else None."""
    if known is not None:
        return known
    terms = ib_terms(instrument)
    return contracts_repo.find_con_id(
        conn,
        symbol=terms["symbol"],
        sec_type=terms["sec_type"],
        expiry=terms.get("expiry"),
        strike=instrument.strike if isinstance(instrument, OptionContract) else None,
        right=terms.get("right"),
    )


def _child_contract(
    intent: Intent, child: ChildPlan, con_id: int | None
) -> tuple[dict[str, str], int | None, dict[str, object]]:
    """What a child trades: the intent's instrument, a combo of its legs (BAG), or one leg."""
    if child.template is Template.COMBO and intent.legs:
        legs = [
            {**ib_terms(leg.instrument), "ratio": leg.ratio, "action": leg.action.value}
            for leg in intent.legs
        ]
        first = ib_terms(intent.legs[0].instrument)
        bag = {"symbol": first["symbol"], "sec_type": COMBO_SEC_TYPE, "exchange": "SMART"}
        return {**bag, "currency": first["currency"]}, None, {"legs": legs}
    if child.leg is not None and intent.legs:
        leg = intent.legs[child.leg]
        return ib_terms(leg.instrument), None, {"ratio": leg.ratio}
    return ib_terms(intent.instrument), con_id, {}


def _save(
    conn: Connection,
    intent_id: int,
    intent: Intent,
    plan: Plan,
    con_id: int | None,
    client_id: int,
    now: datetime,
) -> None:
    row_ids: dict[str, int] = {}
    for child in plan.children:
        # A bracket's exits point at their entry (planned before them), as IB's parentId will.
        parent = row_ids.get(child.parent_key) if child.parent_key else None
        terms, child_con_id, extra = _child_contract(intent, child, con_id)
        row_ids[child.key] = orders_repo.create_order(
            conn,
            {
                "client_order_id": child_order_id(intent_id, child.key),
                "client_id": client_id,
                "intent_id": intent_id,
                "parent_order_id": parent,
                "parent_link": "bracket_exit" if parent is not None else "child",
                "strategy": intent.strategy,
                "con_id": child_con_id,
                "symbol": terms["symbol"],
                "sec_type": terms["sec_type"],
                "action": child.action.value,
                "tif": child.tif,
                "exchange": child.route,
                "due_at": child.due_at,
                "state": OrderState.SCHEDULED.value,
                "details": {
                    "plan": plan_to_json(child),
                    "template": plan.template.value,
                    "why": plan.reason,
                    "contract": terms,
                    **extra,
                },
            },
            now,
        )
    intent_life.set_status(conn, intent_id, IntentStatus.WORKING.value, now)


def plan_admitted(
    engine: Engine,
    venue: Venue,
    intent_id: int,
    *,
    client_id: int,
    now: datetime,
    clock: SessionClock = WALL_CLOCK,
) -> Planned:
    """Plan intent `intent_id` if it is VALIDATED (see the module docstring).

    The playbook plans on the session's clock (`clock`: a TWAP's cadence and deadline, a roll's
    window and `good_till` are venue time under an accelerated simulator); the children's due
    times are stored as the wall-clock instants they map to, which the scheduler tick compares.
    """
    with write_transaction(engine) as conn:
        row = intent_life.lock(conn, intent_id)
        if row is None:
            return Planned("not_found", intent_id)
        if row.status != IntentStatus.VALIDATED.value:
            return Planned("already", intent_id, reason=f"intent is {row.status}")
        intent = Intent.model_validate(row.payload)
        decided = plan_intent(intent, clock.session_at(now))
        if not isinstance(decided, Plan):
            intent_life.set_status(
                conn,
                intent_id,
                IntentStatus.REJECTED.value,
                now,
                reason=decided.code,
                message=decided.message,
            )
            log.info(
                "orders.intent_refused",
                intent_id=intent_id,
                signal_id=intent.signal_id,
                strategy=intent.strategy,
                code=decided.code,
            )
            return Planned("rejected", intent_id, reason=decided.code)
        con_id = resolve_con_id(conn, intent.instrument, row.con_id)
        if con_id is not None and row.con_id is None:
            intent_life.set_con_id(conn, intent_id, con_id, now)
        on_wall = tuple(with_due(c, clock.to_wall(c.due_at)) for c in decided.children)
        decided = replace(decided, children=on_wall)
        _save(conn, intent_id, intent, decided, con_id, client_id, now)
        legs_known = [
            (leg.instrument, resolve_con_id(conn, leg.instrument, None))
            for leg in intent.legs or ()
        ]
    requester = f"intent:{intent_id}"
    for instrument, known in [(intent.instrument, con_id), *legs_known]:
        terms = ib_terms(instrument)
        if known is None:
            venue.request_contract(terms)
        else:
            # The L2 book only where a child may be routed from it (`models.venue_choice`).
            depth = instrument == intent.instrument and bool(
                (intent.params or {}).get("route_by_depth")
            )
            venue.subscribe(known, requester, terms, depth=depth)
    log.info(
        "orders.intent_planned",
        intent_id=intent_id,
        signal_id=intent.signal_id,
        strategy=intent.strategy,
        template=decided.template.value,
        children=len(decided.children),
    )
    return Planned(
        "planned", intent_id, len(decided.children), decided.template.value, decided.reason
    )
