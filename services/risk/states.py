"""Trading states, the use cases: read the effective state, change it (rule or operator), and
the two gates that apply it (intake, and the orders path before every child).

A change is one write transaction: the `strategy_states` row (compare and set on its version),
for a HALT the working entry orders marked CANCEL_REQUESTED, a `risk_events` row when a rule
decided it, and the `audit_log` row with who and why. Only after the commit are the venue
cancels sent (`Venue.cancel`), as `cancel-intent` does. The policy is `models.strategy_state`'s.

Authorised (operator changes): tightening (halt, reduce-only) is open to any named actor, since
stopping is always safe; loosening (resume, or HALTED → REDUCING) only to an actor in the
operator list the caller passes (`EPM_RISK_OPERATORS` for `epm risk`), and only while no rule's
cause for the stricter state persists.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis
from sqlalchemy.engine import Connection, Engine, Row

from epm.logging import get_logger
from models import admission
from models.intent import Intent, IntentStatus, Side
from models.replace import REPLACES
from models.strategy_state import (
    GLOBAL_SCOPE,
    Cause,
    Change,
    StateRecord,
    TradingState,
    TransitionRefused,
    admission_refusal,
    child_refusal,
    effective,
    is_entry,
    resume_refusal,
    transition,
)
from services.orders.venue import Venue
from services.orders.wind_down import wind_down
from store import intent_life, risk_events
from store import positions as positions_repo
from store import strategy_states as repo
from store.audit import insert_audit
from store.db import write_transaction
from store.orders import OrderRow

__all__ = [
    "BRIDGE_HALT_KEY",
    "MIRROR_PREFIX",
    "Applied",
    "NotAuthorised",
    "apply_change",
    "child_gate",
    "clear_bridge_halt",
    "effective_state",
    "gate_admission",
    "operator_change",
    "rule_change",
    "set_bridge_halt",
]

log = get_logger(__name__)

# The bridge's per-strategy halt (`ibgateway_bridge.commands.HALT_STRATEGY_KEY`), pinned equal by
# a test; a value this module wrote starts with MIRROR_PREFIX.
BRIDGE_HALT_KEY = "epm:halt:strategy:{strategy}"
MIRROR_PREFIX = "risk_state:"

_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class NotAuthorised(TransitionRefused):
    """The actor may not loosen a state."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What a change did: the record now stored (None: nothing changed) and the cancels sent."""

    record: StateRecord
    changed: bool
    cancels_sent: list[int] = field(default_factory=list)


def effective_state(conn: Connection, strategy: str) -> StateRecord:
    """The stricter of the strategy's state and the global one."""
    return effective(repo.get(conn, strategy), repo.get(conn, GLOBAL_SCOPE))


def _position(conn: Connection, strategy: str, con_id: int) -> Decimal:
    held = Decimal(0)
    for row in positions_repo.open_of(conn, strategy):
        if row.con_id == con_id:
            held += Decimal(row.quantity)
    return held


def gate_admission(
    conn: Connection, decision: admission.Admit, submitted: object, position: Decimal | None
) -> admission.Admit | admission.Refuse:
    """Intake: an admitted intent refused when its strategy (or the desk) is HALTED, or
    REDUCING and the intent does not reduce `position` (None: unknown, refused). `submitted`
    is the submission as decoded, stored with the refusal like any other."""
    intent: Intent = decision.intent
    state = effective_state(conn, intent.strategy)
    reject = admission_refusal(
        state,
        signal_id=intent.signal_id,
        side=intent.side,
        quantity=intent.quantity,
        position=position,
    )
    if reject is None:
        return decision
    record = submitted if isinstance(submitted, Mapping) else {"signal_id": intent.signal_id}
    return admission.Refuse(reject, record, intent)


def child_gate(
    conn: Connection, intent: Row[Any], row: OrderRow, quantity: Decimal
) -> tuple[str, str] | None:
    """The orders path, before a child of `quantity` is sent: None to send it, or
    ("cancel" | "hold", why)."""
    strategy = str(intent.strategy)
    state = effective_state(conn, strategy)
    if state.state is TradingState.ACTIVE:
        return None
    side = Side.BUY if row.action == "BUY" else Side.SELL
    stock = row.sec_type == "STK" and row.con_id is not None
    position = _position(conn, strategy, int(row.con_id)) if stock else Decimal(0)
    # A child with a parent is a bracket exit or a hedge, but a replacement is what it replaced.
    bracket_or_hedge = row.parent_order_id is not None and row.parent_link != REPLACES
    exit_child = bracket_or_hedge or not is_entry(Side(intent.side))
    if state.state is TradingState.REDUCING and not stock:
        # A combo or option child's effect on "the position" is not one number: a reduce-only
        # strategy sends it only when its intent closes.
        if exit_child:
            return None
        return "cancel", f"STRATEGY_REDUCING: {strategy} is REDUCING ({state.reason})"
    return child_refusal(
        state, side=side, quantity=quantity, position=position, exit_child=exit_child
    )


def _entry_cancels(conn: Connection, scope: str, reason: str, now: datetime) -> list[int]:
    """Wind down every working entry intent in `scope` (all strategies for global): its
    unsent children end unsent, its working ones get CANCEL_REQUESTED (their IB ids returned);
    a bracket's exits (children with a parent) stay."""
    to_cancel: list[int] = []
    statuses = [IntentStatus.VALIDATED.value, IntentStatus.WORKING.value]
    for intent in intent_life.with_status(conn, statuses, limit=10_000):
        if scope != GLOBAL_SCOPE and intent.strategy != scope:
            continue
        if not is_entry(Side(intent.side)):
            continue
        to_cancel += wind_down(conn, intent.id, reason, now)
    return to_cancel


def apply_change(conn: Connection, change: Change, now: datetime) -> list[int]:
    """Store one decided change inside the caller's transaction; the IB order ids to cancel
    after commit. Raises `TransitionRefused` when the scope changed meanwhile (re-decide)."""
    if not repo.save(conn, change):
        raise TransitionRefused(f"{change.after.scope} changed meanwhile; read it again")
    after = change.after
    to_cancel: list[int] = []
    if after.state is TradingState.HALTED:
        to_cancel = _entry_cancels(conn, after.scope, f"HALTED: {after.reason}", now)
    if change.by_rule:
        risk_events.record(
            conn,
            kind="STATE_CHANGED",
            severity="critical" if after.state is TradingState.HALTED else "warning",
            scope="global" if after.scope == GLOBAL_SCOPE else "strategy",
            scope_key=after.scope,
            code=change.code or after.state.value,
            message=f"{after.scope}: {change.before.state} → {after.state}: {after.reason}",
            details={**change.numbers, "version": str(after.version)},
            now=now,
        )
    insert_audit(
        conn,
        ts=now,
        actor=after.actor,
        action=f"risk_state_{after.state.value.lower()}",
        target=f"risk_state:{after.scope}",
        details={
            "from": change.before.state.value,
            "to": after.state.value,
            "reason": after.reason or "",
            "version": str(after.version),
            "code": change.code or "",
            "cancels": ",".join(str(i) for i in to_cancel),
            **change.numbers,
        },
    )
    return to_cancel


def _send_cancels(venue: Venue, to_cancel: Sequence[int]) -> None:
    for ib_order_id in to_cancel:
        venue.cancel(ib_order_id)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def set_bridge_halt(client: redis.Redis, record: StateRecord) -> None:
    """A HALTED strategy's bridge halt key, so the bridge refuses a placement of it that was
    queued before the halt (and dashboards count it); the global scope has none here (the
    kill switch owns `epm:halt:global`)."""
    if record.scope != GLOBAL_SCOPE and record.state is TradingState.HALTED:
        key = BRIDGE_HALT_KEY.format(strategy=record.scope)
        # NX: a halt key already there (an operator's own) is left as it is.
        client.set(key, f"{MIRROR_PREFIX}{record.reason or ''}", nx=True)


def clear_bridge_halt(client: redis.Redis, scope: str) -> None:
    """Remove the strategy's bridge halt key if this module set it (an operator's own stays)."""
    key = BRIDGE_HALT_KEY.format(strategy=scope)
    value = client.get(key)
    if value is not None and _text(value).startswith(MIRROR_PREFIX):
        client.delete(key)


def rule_change(
    engine: Engine,
    venue: Venue,
    cause: Cause,
    *,
    actor: str,
    now: datetime,
    halts: redis.Redis | None = None,
) -> Applied:
    """A rule tightens `cause.scope` to `cause.state` (nothing when it already is as strict);
    with `halts`, a HALTED strategy's bridge halt key is set after the commit."""
    with write_transaction(engine) as conn:
        current = repo.get(conn, cause.scope)
        if _RANK[current.state] >= _RANK[cause.state]:
            return Applied(current, False)
        change = transition(
            current,
            cause.state,
            actor=actor,
            reason=cause.message,
            at=now,
            by_rule=True,
            code=cause.code,
            numbers=cause.numbers,
        )
        if change is None:  # pragma: no cover - the rank test above
            return Applied(current, False)
        to_cancel = apply_change(conn, change, now)
    if halts is not None:
        set_bridge_halt(halts, change.after)
    _send_cancels(venue, to_cancel)
    log.warning(
        "risk.state_changed",
        scope=cause.scope,
        state=cause.state.value,
        code=cause.code,
        reason=cause.message,
        actor=actor,
        cancels=to_cancel,
    )
    return Applied(change.after, True, to_cancel)


def operator_change(
    engine: Engine,
    venue: Venue,
    scope: str,
    to: TradingState,
    *,
    actor: str,
    reason: str,
    operators: Collection[str],
    causes: Sequence[Cause],
    now: datetime,
    halts: redis.Redis | None = None,
) -> Applied:
    """An operator sets `scope` to `to` (see the module docstring for who may loosen).

    With `halts`, the strategy's bridge halt key follows: set after a HALT commits, removed
    before a HALT is lifted commits (the stored state still stops sending meanwhile), so a
    protective exit sent right after a resume is never refused by a stale key.

    `causes` are the rules' standing causes now (`services.risk.post_trade` and
    `services.risk.breakers` read them): loosening below one of them is refused with its reason.
    Raises `NotAuthorised` / `TransitionRefused` with a message for the operator.
    """
    with write_transaction(engine) as conn:
        current = repo.get(conn, scope)
        loosening = _RANK[to] < _RANK[current.state]
        if loosening:
            if actor.strip() not in operators:
                raise NotAuthorised(
                    f"{actor!r} may not loosen {scope} ({current.state} → {to}): not in the "
                    "operator list (EPM_RISK_OPERATORS)"
                )
            standing = resume_refusal(scope, to, causes)
            if standing is not None:
                raise TransitionRefused(
                    f"{scope} stays {current.state}: the cause persists ({standing})"
                )
        change = transition(current, to, actor=actor, reason=reason, at=now, by_rule=False)
        if change is None:
            return Applied(current, False)
        to_cancel = apply_change(conn, change, now)
        if halts is not None and current.state is TradingState.HALTED:
            clear_bridge_halt(halts, scope)
    if halts is not None:
        set_bridge_halt(halts, change.after)
    _send_cancels(venue, to_cancel)
    log.warning(
        "risk.state_changed",
        scope=scope,
        state=to.value,
        code="OPERATOR",
        reason=reason,
        actor=actor,
        cancels=to_cancel,
    )
    return Applied(change.after, True, to_cancel)
