"""Trading states (ACTIVE / REDUCING / HALTED) per strategy and for the desk, pure.

A state is changed only by a rule (post-trade monitoring, a circuit breaker) or by an operator,
and always with an actor and a reason, so the audit trail answers "who stopped this, and why".
Rules only ever tighten (ACTIVE → REDUCING → HALTED): a machine that loosened a stop could undo
the very decision a person is about to review. Loosening (resume, or HALTED → REDUCING to let a
desk unwind) is an operator's, and is refused while a cause that would tighten it again persists.

Policy, as the intake and orders path apply it:
- HALTED: no new intent is admitted and no new child order is sent; working *entry* orders are
  cancelled at the venue; protective exits already working (a bracket's stop and target) keep
  working, so halting never leaves a position unprotected.
- REDUCING: only an intent that brings the position closer to flat without crossing it is
  admitted; a child that would grow the position is cancelled unsent.
- The strategy's effective state is the stricter of its own and the global one.

No I/O and no clock: the caller passes the facts and the time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from models.intent import Side
from models.limits import Limits, strategy_limits
from models.rejects import Reject, RejectReason

__all__ = [
    "GLOBAL_SCOPE",
    "BreakerFacts",
    "Cause",
    "Change",
    "StateRecord",
    "StrategyFacts",
    "TradingState",
    "TransitionRefused",
    "admission_refusal",
    "breaker_causes",
    "child_refusal",
    "effective",
    "grows",
    "initial",
    "is_entry",
    "post_trade_causes",
    "reduces",
    "resume_refusal",
    "strictest",
    "transition",
]

GLOBAL_SCOPE = "global"


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class TransitionRefused(ValueError):
    """A change that may not be made (no actor, no reason, a rule loosening, a cause persisting)."""


@dataclass(frozen=True, slots=True)
class StateRecord:
    """One scope's state as stored; `version` counts the changes (0: never changed)."""

    scope: str
    state: TradingState
    reason: str | None
    actor: str
    changed_at: datetime | None
    version: int


@dataclass(frozen=True, slots=True)
class Change:
    """A decided transition: what to store (the new record) and what it replaced."""

    before: StateRecord
    after: StateRecord
    by_rule: bool
    code: str | None = None
    numbers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a rule wants a scope tightened: the state it asks for, a stable code, the numbers."""

    scope: str
    state: TradingState
    code: str
    message: str
    numbers: Mapping[str, str] = field(default_factory=dict)


def initial(scope: str) -> StateRecord:
    """A scope nobody has changed yet trades."""
    return StateRecord(scope, TradingState.ACTIVE, None, "default", None, 0)


def transition(
    current: StateRecord,
    to: TradingState,
    *,
    actor: str,
    reason: str,
    at: datetime,
    by_rule: bool,
    code: str | None = None,
    numbers: Mapping[str, str] | None = None,
) -> Change | None:
    """The change from `current` to `to`, None when it is already there (idempotent).

    Raises `TransitionRefused` without an actor or a reason, or when a rule would loosen.
    """
    if not actor.strip():
        raise TransitionRefused("a state change needs an actor (who)")
    if not reason.strip():
        raise TransitionRefused("a state change needs a reason (why)")
    if current.state is to:
        return None
    if by_rule and _RANK[to] < _RANK[current.state]:
        raise TransitionRefused(
            f"a rule may only tighten {current.scope} ({current.state} → {to} is an operator's)"
        )
    after = StateRecord(current.scope, to, reason.strip(), actor.strip(), at, current.version + 1)
    return Change(current, after, by_rule, code, dict(numbers or {}))


def effective(own: StateRecord, desk: StateRecord) -> StateRecord:
    """The stricter of a strategy's own state and the global one (the global wins a tie)."""
    return own if _RANK[own.state] > _RANK[desk.state] else desk


def _signed(side: Side, quantity: Decimal) -> Decimal:
    return quantity if side in (Side.BUY, Side.BUY_TO_COVER) else -quantity


def reduces(side: Side, quantity: Decimal, position: Decimal | None) -> bool:
    """Whether an order brings `position` closer to flat without crossing it; an unknown
    position proves nothing (reduce-only fails closed)."""
    if position is None or position == 0 or quantity <= 0:
        return False
    after = position + _signed(side, quantity)
    return abs(after) < abs(position) and (after == 0 or (after > 0) == (position > 0))


def grows(side: Side, quantity: Decimal, position: Decimal) -> bool:
    """Whether an order leaves the position larger in size than it is."""
    return abs(position + _signed(side, quantity)) > abs(position)


def is_entry(side: Side) -> bool:
    """BUY and SELL_SHORT open or add; SELL and BUY_TO_COVER close (the intent side's meaning)."""
    return side in (Side.BUY, Side.SELL_SHORT)


def _scope_text(record: StateRecord) -> str:
    return "the desk (global)" if record.scope == GLOBAL_SCOPE else record.scope


def admission_refusal(
    state: StateRecord,
    *,
    signal_id: str,
    side: Side,
    quantity: Decimal,
    position: Decimal | None,
) -> Reject | None:
    """Intake's state gate: the reject for an intent under `state` (the effective one), or None.

    HALTED refuses every intent (STRATEGY_HALTED); REDUCING admits only one that `reduces` the
    strategy's position in the instrument (STRATEGY_REDUCING otherwise).
    """
    why = f" ({state.reason})" if state.reason else ""
    if state.state is TradingState.HALTED:
        return Reject(
            RejectReason.STRATEGY_HALTED,
            f"{_scope_text(state)} is HALTED{why}: no new intents until an operator resumes",
            signal_id,
        )
    if state.state is TradingState.REDUCING and not reduces(side, quantity, position):
        held = "unknown" if position is None else str(position)
        return Reject(
            RejectReason.STRATEGY_REDUCING,
            f"{_scope_text(state)} is REDUCING{why}: only intents that reduce the position are "
            f"admitted; {side} {quantity} against a position of {held} does not",
            signal_id,
        )
    return None


def child_refusal(
    state: StateRecord, *, side: Side, quantity: Decimal, position: Decimal, exit_child: bool
) -> tuple[str, str] | None:
    """The orders path's state gate for one unsent child: None to send it, or (action, reason)
    with action "cancel" (it is not sent, ever) or "hold" (kept for after a resume).

    HALTED: an entry child is cancelled, an exit child (a bracket's protective exit, a closing
    intent's child) is held. REDUCING: a child that would grow the position is cancelled.
    """
    why = f" ({state.reason})" if state.reason else ""
    if state.state is TradingState.HALTED:
        if exit_child:
            return "hold", f"{_scope_text(state)} is HALTED{why}"
        return "cancel", f"STRATEGY_HALTED: {_scope_text(state)} is HALTED{why}"
    if state.state is TradingState.REDUCING and grows(side, quantity, position):
        return "cancel", (
            f"STRATEGY_REDUCING: {_scope_text(state)} is REDUCING{why}; {side} {quantity} "
            f"would grow the position {position}"
        )
    return None


@dataclass(frozen=True, slots=True)
class StrategyFacts:
    """What the books say of one strategy: its signed position per instrument and its P&L
    (realized + unrealized - fees) since the books' start, None while unmarked."""

    strategy: str
    positions: Mapping[str, Decimal]
    pnl: Decimal | None


def _plain(value: Decimal) -> str:
    """A figure as a person reads it: exact, no exponent, no trailing zeros ("600", "-2.5")."""
    return format(value.normalize(), "f") if value != 0 else "0"


def post_trade_causes(facts: StrategyFacts, limits: Limits) -> list[Cause]:
    """The post-trade rules for one strategy, strictest first: a loss beyond
    `max_intraday_drawdown` → HALTED (DRAWDOWN_LIMIT); a position beyond
    `max_position_quantity` → REDUCING (POSITION_LIMIT)."""
    caps = strategy_limits(limits, facts.strategy)
    causes: list[Cause] = []
    limit = caps.max_intraday_drawdown
    if facts.pnl is not None and limit is not None and -facts.pnl > limit:
        loss = _plain(-facts.pnl)
        causes.append(
            Cause(
                facts.strategy,
                TradingState.HALTED,
                "DRAWDOWN_LIMIT",
                f"{facts.strategy} lost {loss}, beyond max_intraday_drawdown {_plain(limit)}",
                {"loss": loss, "max_intraday_drawdown": _plain(limit)},
            )
        )
    cap = caps.max_position_quantity
    for key, quantity in sorted(facts.positions.items()):
        if cap is not None and abs(quantity) > cap:
            held, most = _plain(quantity), _plain(cap)
            causes.append(
                Cause(
                    facts.strategy,
                    TradingState.REDUCING,
                    "POSITION_LIMIT",
                    f"{facts.strategy} holds {held} {key}, beyond max_position_quantity {most}",
                    {"instrument": key, "position": held, "max_position_quantity": most},
                )
            )
    return causes


@dataclass(frozen=True, slots=True)
class BreakerFacts:
    """What the circuit breakers read: the bridge's sessions (client id → state, as the bridge
    publishes it), since when the orders connection has not been READY (None: it is), the
    allowed disconnect, and the newest reconciliation runs (kind → status)."""

    sessions: Mapping[str, str]
    not_ready_since: datetime | None
    disconnect_limit: timedelta
    recon: Mapping[str, str]
    now: datetime


def breaker_causes(facts: BreakerFacts) -> list[Cause]:
    """Global HALT causes: a client id collision (326), a disconnect lasting beyond the limit,
    a reconciliation run whose newest result is critical."""
    causes: list[Cause] = []
    for client, state in sorted(facts.sessions.items()):
        if state == "ID_IN_USE":
            causes.append(
                Cause(
                    GLOBAL_SCOPE,
                    TradingState.HALTED,
                    "CLIENT_ID_COLLISION",
                    f"{client}: another session holds our client id (IB error 326)",
                    {"session": client},
                )
            )
    since = facts.not_ready_since
    if since is not None and facts.now - since > facts.disconnect_limit:
        gone = (facts.now - since).total_seconds()
        causes.append(
            Cause(
                GLOBAL_SCOPE,
                TradingState.HALTED,
                "LASTING_DISCONNECT",
                f"the orders connection has not been ready for {gone:.0f}s "
                f"(limit {facts.disconnect_limit.total_seconds():.0f}s)",
                {
                    "seconds": f"{gone:.3f}",
                    "limit_s": str(facts.disconnect_limit.total_seconds()),
                },
            )
        )
    for kind, status in sorted(facts.recon.items()):
        if status == "critical":
            causes.append(
                Cause(
                    GLOBAL_SCOPE,
                    TradingState.HALTED,
                    "CRITICAL_RECON",
                    f"the newest {kind} reconciliation is critical",
                    {"recon_kind": kind},
                )
            )
    return causes


def resume_refusal(scope: str, to: TradingState, causes: Sequence[Cause]) -> str | None:
    """Why loosening `scope` to `to` is refused now (a cause asking for stricter persists)."""
    standing = [c for c in causes if c.scope == scope and _RANK[c.state] > _RANK[to]]
    if not standing:
        return None
    return "; ".join(f"{c.code}: {c.message}" for c in standing)


def strictest(causes: Sequence[Cause]) -> Cause | None:
    """The cause asking for the strictest state (the first of those)."""
    best: Cause | None = None
    for c in causes:
        if best is None or _RANK[c.state] > _RANK[best.state]:
            best = c
    return best
