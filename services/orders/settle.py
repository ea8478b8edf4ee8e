"""Use case step: end the life of WORKING intents (each scheduler tick, before it sends).

A GTD intent past `good_till` expires; a child filled beyond the slippage limit switches the rest
of the plan to another template or aborts it (`models.playbooks.on_slippage`); an intent filled
to its quantity completes, one whose children all finished short expires
(`models.intent_progress`); a roll's combo gives way to its legs after its window and the legs'
delta is hedged (`services.orders.combo`). Returns the IB order ids to cancel after commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from epm.calendar import next_session_close
from models.child_orders import Action, Template, plan_to_json
from models.clock import WALL_CLOCK, SessionClock
from models.intent import Intent, IntentStatus
from models.intent_progress import SlippageBreach, outcome_of, slippage_breach, time_up
from models.orders import OrderState
from models.planners import pegged_mid
from models.playbooks import on_slippage
from services.orders import combo
from services.orders.children import child_state
from services.orders.venue import Venue
from services.orders.wind_down import wind_down
from store import intent_life, risk_events
from store import orders as orders_repo
from store.orders import OrderRow

# The key of the child a slippage switch plans (one switch per intent; a breach after it aborts).
SWITCH_KEY = "after-slippage"


def _switch_template(
    conn: Connection,
    intent: Any,
    rows: Sequence[OrderRow],
    breach: SlippageBreach,
    now: datetime,
    to_cancel: list[int],
) -> bool:
    """Switch the rest of the plan to the template the playbook names for a breach; False when
    it names none (the caller aborts)."""
    model = Intent.model_validate(intent.payload)
    running = Template((rows[0].details or {}).get("template", Template.SWEEP.value))
    switch_to = on_slippage(model, running)
    if switch_to is None:
        return False
    reason = f"slippage switch to {switch_to.value}: {breach.reason}"
    to_cancel += wind_down(conn, intent.id, reason, now)
    (plan,) = pegged_mid(Action(model.wire_action), now, key=SWITCH_KEY)
    first = rows[0]
    orders_repo.create_order(
        conn,
        {
            "client_order_id": f"epm-{intent.id}-{SWITCH_KEY}",
            "client_id": first.client_id,
            "intent_id": intent.id,
            "parent_link": "child",
            "strategy": intent.strategy,
            "con_id": first.con_id,
            "symbol": first.symbol,
            "sec_type": first.sec_type,
            "action": plan.action.value,
            "tif": plan.tif,
            "exchange": plan.route,
            "due_at": now,
            "state": OrderState.SCHEDULED.value,
            "details": {
                "plan": plan_to_json(plan),
                "template": switch_to.value,
                "why": reason,
                "contract": (first.details or {}).get("contract"),
            },
        },
        now,
    )
    risk_events.record(
        conn,
        kind="SLIPPAGE_SWITCH",
        severity="warning",
        scope="intent",
        scope_key=intent.signal_id,
        code="MAX_SLIPPAGE_EXCEEDED",
        message=reason,
        details={
            "child": breach.key,
            "avg_price": str(breach.avg_price),
            "reference": str(breach.reference),
            "slippage_bps": str(breach.slippage_bps),
            "max_slippage_bps": str(breach.max_slippage_bps),
            "switched_to": switch_to.value,
        },
        now=now,
    )
    return True


def settle_intents(
    conn: Connection,
    now: datetime,
    venue: Venue,
    limit: int = 200,
    clock: SessionClock = WALL_CLOCK,
) -> tuple[list[int], list[int]]:
    """End WORKING intents whose life is over; (finished intent ids, IB ids to cancel).

    In order: a GTD intent past its `good_till`, or a DAY intent past its session's close (on the
    session's clock), expires (what is left is cancelled); a child
    that filled beyond the slippage limit aborts the rest of the plan (the decision, with its
    numbers, in `risk_events`); an intent filled to its quantity completes, one whose children
    all finished short expires (`models.intent_progress`).
    """
    finished: list[int] = []
    to_cancel: list[int] = []
    for intent in intent_life.with_status(conn, [IntentStatus.WORKING.value], limit):
        rows = orders_repo.of_intent(conn, intent.id)
        # A roll: the combo gives way to its legs when its window is over, and the legs' delta
        # is hedged once they are done (before the intent's ending is judged).
        to_cancel += combo.cancel_combo_after_window(conn, rows, now)
        if combo.plan_hedge(conn, venue, intent, rows, now) is not None:
            rows = orders_repo.of_intent(conn, intent.id)
        children = [child_state(r) for r in rows]
        reason = time_up(
            time_in_force=intent.time_in_force,
            good_till=intent.good_till,
            day_close=(
                next_session_close(clock.session_at(intent.received_at))
                if intent.time_in_force == "DAY"
                else None
            ),
            now=clock.session_at(now),
        )
        if reason is not None:
            to_cancel += wind_down(conn, intent.id, reason, now)
            intent_life.set_status(
                conn, intent.id, IntentStatus.EXPIRED.value, now, reason="EXPIRED", message=reason
            )
            finished.append(intent.id)
            continue
        buy = intent.side in ("BUY", "BUY_TO_COVER")
        switched = [c for c in children if c.key.endswith(f"-{SWITCH_KEY}")]
        # After a switch only the new child's own slippage counts (the breach that caused it
        # has been acted on).
        watched = switched or children
        breach = slippage_breach(watched, buy, intent.max_slippage_bps)
        if breach is not None and outcome_of(children, intent.quantity) is None:
            if not switched and _switch_template(conn, intent, rows, breach, now, to_cancel):
                continue
            to_cancel += wind_down(conn, intent.id, f"slippage abort: {breach.reason}", now)
            risk_events.record(
                conn,
                kind="SLIPPAGE_ABORT",
                severity="warning",
                scope="intent",
                scope_key=intent.signal_id,
                code="MAX_SLIPPAGE_EXCEEDED",
                message=breach.reason,
                details={
                    "child": breach.key,
                    "avg_price": str(breach.avg_price),
                    "reference": str(breach.reference),
                    "slippage_bps": str(breach.slippage_bps),
                    "max_slippage_bps": str(breach.max_slippage_bps),
                },
                now=now,
            )
            intent_life.set_status(
                conn,
                intent.id,
                IntentStatus.EXPIRED.value,
                now,
                reason="MAX_SLIPPAGE_EXCEEDED",
                message=breach.reason,
            )
            finished.append(intent.id)
            continue
        ending = outcome_of(children, intent.quantity)
        if ending is not None:
            code = None if ending.status is IntentStatus.COMPLETED else "PLAN_ENDED"
            # Children the plan no longer needs (a sweep's later steps) end unsent.
            to_cancel += wind_down(conn, intent.id, ending.reason, now)
            intent_life.set_status(
                conn, intent.id, ending.status.value, now, reason=code, message=ending.reason
            )
            finished.append(intent.id)
    return finished, to_cancel
