"""The orders path's multi-leg steps (Spread_Roll): the BAG's legs and quote, the legged
fallback's gates, and the residual delta hedge. The decisions are `models.combos`; this module
loads what they need and saves what they decide, inside the scheduler tick's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from models.child_orders import ChildPlan, Pricing, Template, plan_from_json, plan_to_json
from models.combos import ComboLeg, combo_snapshot, hedge_order, residual_delta
from models.fills import Side
from models.market import CENT, MarketSnapshot
from models.orders import TERMINAL_STATES, WORKING_STATES, OrderEvent, OrderEventType, OrderState
from services.ledger.own_events import apply_order_event
from services.orders.venue import Venue
from store import contracts as contracts_repo
from store import orders as orders_repo
from store import risk_events
from store.orders import OrderRow

COMBO_KEY = "combo"
HEDGE_KEY = "hedge"
# The legs' deltas are waited for this long after the last leg finished; then the roll is
# left unhedged, and that is recorded.
DELTA_WAIT = timedelta(seconds=30)
OPTION_MULTIPLIER = Decimal(100)


def role_of(row: OrderRow) -> str | None:
    """combo / leg / hedge for a multi-leg child, else None."""
    template = (row.details or {}).get("template")
    plan = (row.details or {}).get("plan") or {}
    if plan.get("template") == Template.HEDGE.value:
        return "hedge"
    if template != Template.COMBO.value:
        return None
    return "combo" if plan.get("template") == Template.COMBO.value else "leg"


def _find(conn: Connection, terms: Mapping[str, Any]) -> int | None:
    strike = terms.get("strike")
    return contracts_repo.find_con_id(
        conn,
        symbol=str(terms["symbol"]),
        sec_type=str(terms["sec_type"]),
        expiry=terms.get("expiry"),
        strike=None if strike is None else Decimal(str(strike)),
        right=terms.get("right"),
    )


def resolve_legs(conn: Connection, row: OrderRow) -> list[ComboLeg] | str:
    """The combo's legs with their conIds from the contract cache, or why not yet."""
    legs: list[ComboLeg] = []
    for terms in (row.details or {}).get("legs") or []:
        con_id = terms.get("con_id") or _find(conn, terms)
        if con_id is None:
            return f"leg {terms.get('symbol')} {terms.get('expiry', '')} not resolved yet"
        legs.append(ComboLeg(int(con_id), int(terms["ratio"]), Side(terms["action"])))
    return legs


def combo_contract(row: OrderRow, legs: Sequence[ComboLeg]) -> dict[str, Any]:
    """The BAG contract the bridge sends (the legs' conIds, ratios and actions)."""
    terms = dict((row.details or {}).get("contract") or {})
    terms["combo_legs"] = [
        {"con_id": leg.con_id, "ratio": leg.ratio, "action": leg.action.value} for leg in legs
    ]
    return terms


def snapshot_of(conn: Connection, venue: Venue, con_id: int) -> MarketSnapshot | None:
    tick = contracts_repo.min_tick(conn, con_id) or CENT
    return MarketSnapshot.from_fields(con_id, venue.market(con_id), tick)


def combo_quote(conn: Connection, venue: Venue, legs: Sequence[ComboLeg]) -> MarketSnapshot | None:
    """The BAG's net quote from its legs' snapshots (`models.combos.combo_snapshot`)."""
    return combo_snapshot(legs, [snapshot_of(conn, venue, leg.con_id) for leg in legs])


def siblings_by_role(rows: Sequence[OrderRow]) -> dict[str, list[OrderRow]]:
    grouped: dict[str, list[OrderRow]] = {"combo": [], "leg": [], "hedge": []}
    for r in rows:
        role = role_of(r)
        if role is not None:
            grouped[role].append(r)
    return grouped


def leg_gate(row: OrderRow, rows: Sequence[OrderRow], target: Decimal) -> str | Decimal:
    """A leg's quantity now, or why it waits (a str starting "skip:" means never)."""
    grouped = siblings_by_role(rows)
    combo = grouped["combo"][0] if grouped["combo"] else None
    if combo is not None and OrderState(combo.state) not in TERMINAL_STATES:
        return "the combo is still working"
    for earlier in grouped["leg"]:
        if earlier.id >= row.id:
            break
        if OrderState(earlier.state) not in TERMINAL_STATES:
            return f"waiting for {earlier.client_order_id} (riskier leg first)"
    done = combo.filled_qty if combo is not None else Decimal(0)
    remaining = target - done
    if remaining <= 0:
        return "skip: the combo filled"
    ratio = int((row.details or {}).get("ratio", 1))
    return remaining * ratio


def cancel_combo_after_window(
    conn: Connection, rows: Sequence[OrderRow], now: datetime
) -> list[int]:
    """Cancel a combo still working when its legged fallback is due; the IB ids to cancel."""
    grouped = siblings_by_role(rows)
    if not grouped["combo"] or not grouped["leg"]:
        return []
    combo = grouped["combo"][0]
    priced_at = (combo.details or {}).get("priced_at")
    if combo.ib_order_id is None or not isinstance(priced_at, str):
        return []
    # The window runs from the combo's send (resolving its legs' contracts may take a while).
    planned = plan_from_json(dict((combo.details or {})["plan"])).due_at
    first_leg_due = min(
        plan_from_json(dict((r.details or {})["plan"])).due_at for r in grouped["leg"]
    )
    window_end = datetime.fromisoformat(priced_at) + (first_leg_due - planned)
    state = OrderState(combo.state)
    if now < window_end or state not in WORKING_STATES:
        return []
    if state is OrderState.CANCEL_REQUESTED:
        return []
    apply_order_event(
        conn,
        combo.client_order_id,
        OrderEvent(OrderEventType.CANCEL_REQUESTED, ts_init=now),
        payload={"reason": "combo window over: legged fallback"},
        dedupe_key=f"cancel:{combo.client_order_id}",
    )
    return [int(combo.ib_order_id)]


def plan_hedge(
    conn: Connection,
    venue: Venue,
    intent: Any,
    rows: Sequence[OrderRow],
    now: datetime,
) -> str | None:
    """Once every leg has finished, plan the underlying order that makes the roll delta neutral
    (`models.combos.residual_delta`); returns what was decided, None while legs still work."""
    grouped = siblings_by_role(rows)
    legs = grouped["leg"]
    if not legs or grouped["hedge"] or not grouped["combo"]:
        return None
    if any(OrderState(r.state) not in TERMINAL_STATES for r in legs):
        return None
    filled = [r for r in legs if r.filled_qty > 0]
    if not filled:
        return None
    deltas: list[Decimal | None] = []
    multipliers: list[Decimal] = []
    for r in filled:
        snap = snapshot_of(conn, venue, r.con_id) if r.con_id is not None else None
        deltas.append(None if snap is None else snap.delta)
        multipliers.append(contracts_repo.multiplier(conn, r.con_id) or OPTION_MULTIPLIER)
    residual = residual_delta([(Side(r.action), r.filled_qty) for r in filled], deltas, multipliers)
    combo = grouped["combo"][0]
    if residual is None:
        last = max(r.updated_at for r in legs)
        if now - last < DELTA_WAIT:
            return "waiting for the legs' deltas"
        _record_unhedged(conn, intent, "the legs' deltas never arrived", now)
        return "unhedged: no deltas"
    order = hedge_order(residual)
    if order is None:
        return f"residual delta {residual:.2f}: no hedge needed"
    side, shares = order
    underlying = str((legs[0].details or {}).get("contract", {}).get("symbol", combo.symbol))
    con_id = contracts_repo.find_con_id(conn, symbol=underlying, sec_type="STK")
    plan = ChildPlan(
        key=HEDGE_KEY,
        template=Template.HEDGE,
        action=side,
        due_at=now,
        pricing=Pricing.TOUCH,
        quantity=shares,
        tif="DAY",
        parent_key=COMBO_KEY,
        reason=f"residual delta {residual:.2f} of the legged roll",
    )
    terms = {"symbol": underlying, "sec_type": "STK", "exchange": "SMART", "currency": "USD"}
    orders_repo.create_order(
        conn,
        {
            "client_order_id": f"epm-{intent.id}-{HEDGE_KEY}",
            "client_id": combo.client_id,
            "intent_id": intent.id,
            "parent_order_id": combo.id,
            "parent_link": "hedge",
            "strategy": intent.strategy,
            "con_id": con_id,
            "symbol": underlying,
            "sec_type": "STK",
            "action": side.value,
            "tif": "DAY",
            "exchange": "SMART",
            "due_at": now,
            "state": OrderState.SCHEDULED.value,
            "details": {
                "plan": plan_to_json(plan),
                "template": Template.COMBO.value,
                "why": plan.reason,
                "contract": terms,
            },
        },
        now,
    )
    if con_id is None:
        venue.request_contract(terms)
    else:
        venue.subscribe(con_id, f"intent:{intent.id}", terms)
    return f"hedge {side.value} {shares} {underlying} (residual delta {residual:.2f})"


def _record_unhedged(conn: Connection, intent: Any, why: str, now: datetime) -> None:
    risk_events.record(
        conn,
        kind="ROLL_UNHEDGED",
        severity="warning",
        scope="intent",
        scope_key=intent.signal_id,
        code="RESIDUAL_DELTA_UNKNOWN",
        message=f"legged roll left unhedged: {why}",
        details=None,
        now=now,
    )
