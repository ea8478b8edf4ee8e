"""The operator runbooks (blueprint §12.4), the pure part: from what was checked, what is wrong
and which safe action fixes it. The shell (`services/runbooks/`) gathers the facts, prints each
step, acts only when told to (`--yes`) and audits the run.

- order stuck: the ledger's state and fills against the venue's executions and the bridge's
  markers. Fills the venue has and the ledger lacks → resync executions into the ledger (never
  a cancel: the order may be done). A working order the ledger and venue agree on → cancel it
  (the intent is then re-planned or ends, as for any cancel). A cancel already asked and not
  answered → ask again and resync.
- gateway reconnect: the bridge's lease, connections, heartbeat and farms. The bridge reconnects
  by itself (capped backoff); what an operator can force is the resync a reconnect does.
- depth failure: per con_id that wants depth, whether depth arrives: none yet, an error from IB
  (e.g. 10092 no deep-book permission, 317 book reset), or stale → resubscribe the line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from models.orders import TERMINAL_STATES, OrderState

ZERO = Decimal(0)

# Ledger order states in which nothing is stuck any more.
TERMINAL = frozenset(s.value for s in TERMINAL_STATES)
# The bridge's heartbeat is written every second; beyond this the bridge is not running.
HEARTBEAT_STALE = timedelta(seconds=10)
# Depth that has not moved for this long on a subscribed line is a failure (books move often).
DEPTH_STALE = timedelta(minutes=2)


class OrderAction(StrEnum):
    NONE = "none"
    CANCEL = "cancel"
    RESYNC = "resync"
    CANCEL_AND_RESYNC = "cancel_and_resync"


@dataclass(frozen=True, slots=True)
class OrderFacts:
    client_order_id: str
    ib_order_id: int | None
    state: str
    quantity: Decimal | None
    ledger_filled: Decimal
    venue_filled: Decimal
    venue_executions: int
    sent: bool
    cancel_asked: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str
    why: str


def _q(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def venue_filled(
    executions: Iterable[Mapping[str, object]], order_ref: str, perm_id: int | None
) -> tuple[Decimal, int]:
    """Shares and count of the venue's executions of one order (by our order ref, else permId);
    a correction (same execId base, higher sequence) replaces the execution it corrects."""
    latest: dict[str, tuple[int, Decimal]] = {}
    for e in executions:
        ref = e.get("order_ref")
        perm = e.get("perm_id")
        if ref != order_ref and (perm_id is None or str(perm) != str(perm_id)):
            continue
        exec_id = str(e.get("exec_id", ""))
        base, _, seq = exec_id.rpartition(".")
        key = base or exec_id
        number = int(seq) if seq.isdigit() else 0
        shares = Decimal(str(e.get("shares", "0")))
        if key not in latest or number >= latest[key][0]:
            latest[key] = (number, shares)
    return sum((s for _, s in latest.values()), ZERO), len(latest)


def decide_order(f: OrderFacts) -> Verdict:
    """The safe action for a stuck order."""
    if f.venue_filled > f.ledger_filled:
        return Verdict(
            OrderAction.RESYNC,
            f"the venue filled {_q(f.venue_filled)} but the ledger has {_q(f.ledger_filled)}: "
            "resync the executions into the ledger",
        )
    if f.state in TERMINAL:
        return Verdict(OrderAction.NONE, f"the order is {f.state} in the ledger; nothing is stuck")
    if f.ib_order_id is None:
        return Verdict(
            OrderAction.NONE,
            "the order has no IB order id yet: nothing was sent; its intent's planner owns it",
        )
    if f.cancel_asked or f.state == OrderState.CANCEL_REQUESTED:
        return Verdict(
            OrderAction.CANCEL_AND_RESYNC,
            "a cancel was already asked and the ledger never heard the answer: ask again and "
            "resync the executions",
        )
    sent = "working at the venue" if f.sent else "queued, not yet sent by the bridge"
    return Verdict(OrderAction.CANCEL, f"the order is {f.state}, {sent}: cancel it")


@dataclass(frozen=True, slots=True)
class GatewayFacts:
    lease_holder: str | None
    lease_ttl_ms: int
    connections: Mapping[str, str]  # client{id} → session state
    heartbeat: datetime | None
    broken_farms: Sequence[str]
    venue_answered: bool | None  # the executions probe; None when not asked


def assess_gateway(f: GatewayFacts, now: datetime) -> tuple[list[str], str]:
    """What is wrong with the gateway path, and the action: "start_bridge" (nothing runs: an
    operator starts it), "wait" (the bridge is reconnecting by itself), "resync" (connected:
    replay the venue's executions and positions into epm), or "none"."""
    problems: list[str] = []
    if f.lease_holder is None:
        problems.append("no bridge holds the lease: no bridge is running")
    stale = f.heartbeat is None or now - f.heartbeat > HEARTBEAT_STALE
    if stale:
        problems.append("the bridge's heartbeat is missing or older than 10 s")
    down = sorted(k for k, v in f.connections.items() if v != "READY")
    for key in down:
        problems.append(f"{key} is {f.connections[key]}")
    for farm in f.broken_farms:
        problems.append(f"market-data farm {farm} is broken")
    if f.venue_answered is False:
        problems.append("the venue did not answer an executions request")
    if f.lease_holder is None or stale:
        return problems, "start_bridge"
    if down:
        return problems, "wait"
    return problems, "resync"


@dataclass(frozen=True, slots=True)
class DepthLine:
    con_id: int
    requesters: Sequence[str]
    depth: bool  # depth is present in md:{con_id}
    updated_at: datetime | None
    error: str | None


def assess_depth(lines: Sequence[DepthLine], now: datetime) -> list[tuple[int, str]]:
    """The lines that want depth and do not get it, with why (to resubscribe)."""
    failed: list[tuple[int, str]] = []
    for line in sorted(lines, key=lambda x: x.con_id):
        if line.error is not None:
            failed.append((line.con_id, f"IB error {line.error}"))
        elif not line.depth:
            failed.append((line.con_id, "no depth received"))
        elif line.updated_at is None or now - line.updated_at > DEPTH_STALE:
            failed.append((line.con_id, "depth not updated for over 2 min"))
    return failed
