"""The blueprint's §12.3 alert conditions over loaded facts, and the open/resolved bookkeeping.

The same conditions are Prometheus rules (`ops/prometheus/rules/epm.yml`); these are for a desk
that runs without Prometheus. A condition is identified by rule and key (the signal, conId or
client id it is about): one that is still true at the next evaluation is already open and is not
published again; one held for less than its rule's `hold_s` is only pending (a bridge that is
reconnecting for a second is not a page).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum


class Severity(StrEnum):
    """How loudly an alert asks: warning < notify (the strategy's owner) < critical < page."""

    WARNING = "warning"
    NOTIFY = "notify"
    CRITICAL = "critical"
    PAGE = "page"


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    severity: Severity
    runbook: str
    # How long the condition must hold before it fires (Prometheus `for:`).
    hold_s: float = 0.0


URGENT_UNFILLED = AlertRule("urgent_order_unfilled", Severity.WARNING, "order-stuck")
SLIPPAGE_OVER_THRESHOLD = AlertRule("slippage_over_threshold", Severity.NOTIFY, "slippage-review")
POSITION_MISMATCH = AlertRule("position_mismatch", Severity.CRITICAL, "position-mismatch")
CLIENT_ID_COLLISION = AlertRule("client_id_collision", Severity.PAGE, "gateway-reconnect")
GATEWAY_DISCONNECTED = AlertRule(
    "gateway_disconnected", Severity.PAGE, "gateway-reconnect", hold_s=30.0
)
RULES: tuple[AlertRule, ...] = (
    URGENT_UNFILLED,
    SLIPPAGE_OVER_THRESHOLD,
    POSITION_MISMATCH,
    CLIENT_ID_COLLISION,
    GATEWAY_DISCONNECTED,
)
RULES_BY_NAME: Mapping[str, AlertRule] = {r.name: r for r in RULES}

URGENT_LEVELS = frozenset({"Immediate", "High"})
# Bridge session states in which the connection trades (`ibgateway_bridge.connection`).
CONNECTED_STATES = frozenset({"READY", "SYNCING"})
ID_IN_USE_STATE = "ID_IN_USE"


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    urgent_unfilled_s: float = 120.0
    # Used for an intent that names no `max_slippage_bps` of its own.
    slippage_bps: Decimal = Decimal(25)
    position_contracts: Decimal = Decimal(5)
    # A bridge heartbeat older than this means no bridge (killed, hung): every session is down.
    heartbeat_stale_s: float = 15.0
    # A 326 this recent still explains a session that is not connected.
    id_in_use_memory_s: float = 120.0


@dataclass(frozen=True, slots=True)
class UrgentIntent:
    signal_id: str
    strategy: str
    urgency: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class SlippageResult:
    signal_id: str
    strategy: str
    slippage_bps: Decimal
    # The intent's own `max_slippage_bps`, if it named one.
    limit_bps: Decimal | None


@dataclass(frozen=True, slots=True)
class PositionGap:
    con_id: int
    symbol: str | None
    venue: Decimal
    ledger: Decimal


@dataclass(frozen=True, slots=True)
class BridgeFacts:
    """What the bridge last published in `ib:bridge:state`; None fields were never written."""

    sessions: Mapping[int, str] = field(default_factory=dict)
    heartbeat_at: datetime | None = None
    stopped: bool = False
    # The latest `client_id_in_use` alert the bridge raised per client id (`epm:alerts`): between
    # its retries of a taken id the session reads CONNECTING, and it is still a collision.
    id_in_use_at: Mapping[int, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertFacts:
    urgent: Sequence[UrgentIntent] = ()
    slippage: Sequence[SlippageResult] = ()
    gaps: Sequence[PositionGap] = ()
    bridge: BridgeFacts | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    rule: AlertRule
    key: str
    summary: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def ident(self) -> str:
        return f"{self.rule.name}:{self.key}"


def conditions(facts: AlertFacts, now: datetime, limits: AlertThresholds) -> list[Alert]:
    """Every §12.3 condition true at `now`, one per rule and key."""
    found: list[Alert] = []
    for intent in facts.urgent:
        age = (now - intent.received_at).total_seconds()
        if intent.urgency in URGENT_LEVELS and age > limits.urgent_unfilled_s:
            found.append(
                Alert(
                    URGENT_UNFILLED,
                    intent.signal_id,
                    f"{intent.urgency} intent {intent.signal_id} of {intent.strategy} "
                    f"unfilled after {int(age)} s",
                    {"strategy": intent.strategy, "signal_id": intent.signal_id},
                )
            )
    for result in facts.slippage:
        limit = result.limit_bps if result.limit_bps is not None else limits.slippage_bps
        if result.slippage_bps > limit:
            found.append(
                Alert(
                    SLIPPAGE_OVER_THRESHOLD,
                    result.signal_id,
                    f"{result.strategy} intent {result.signal_id} slipped "
                    f"{result.slippage_bps:.2f} bps (threshold {limit} bps)",
                    {"strategy": result.strategy, "signal_id": result.signal_id},
                )
            )
    for gap in facts.gaps:
        difference = gap.venue - gap.ledger
        if abs(difference) > limits.position_contracts:
            name = gap.symbol or str(gap.con_id)
            found.append(
                Alert(
                    POSITION_MISMATCH,
                    str(gap.con_id),
                    f"{name}: IB holds {gap.venue}, the ledger {gap.ledger} "
                    f"(difference {difference})",
                    {"con_id": str(gap.con_id), "security": name},
                )
            )
    if facts.bridge is not None:
        found.extend(_bridge_conditions(facts.bridge, now, limits))
    return found


def _bridge_conditions(bridge: BridgeFacts, now: datetime, limits: AlertThresholds) -> list[Alert]:
    stale = bridge.heartbeat_at is None or (
        (now - bridge.heartbeat_at).total_seconds() > limits.heartbeat_stale_s
    )
    found: list[Alert] = []
    for client_id, state in sorted(bridge.sessions.items()):
        labels = {"client_id": str(client_id)}
        taken_at = bridge.id_in_use_at.get(client_id)
        recent_326 = taken_at is not None and (
            (now - taken_at).total_seconds() <= limits.id_in_use_memory_s
        )
        connected = state in CONNECTED_STATES and not stale and not bridge.stopped
        live = not stale and not bridge.stopped
        if live and (state == ID_IN_USE_STATE or (recent_326 and not connected)):
            found.append(
                Alert(
                    CLIENT_ID_COLLISION,
                    str(client_id),
                    f"client id {client_id} is already in use at the gateway (error 326)",
                    labels,
                )
            )
        elif not connected:
            why = "no bridge heartbeat" if stale or bridge.stopped else f"session {state}"
            found.append(
                Alert(
                    GATEWAY_DISCONNECTED,
                    str(client_id),
                    f"client {client_id} not connected to the gateway ({why})",
                    labels,
                )
            )
    return found


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """A condition seen true: since when, and whether it was published (fired)."""

    since: datetime
    fired: bool


@dataclass(frozen=True, slots=True)
class Evaluation:
    fired: tuple[Alert, ...]
    resolved: tuple[str, ...]
    # The bookkeeping to keep for the next evaluation.
    state: Mapping[str, OpenAlert]


def evaluate(current: Sequence[Alert], state: Mapping[str, OpenAlert], now: datetime) -> Evaluation:
    """Which conditions fire now (true for their hold, never published), which resolved (were
    published and are no longer true); a pending condition that went away leaves silently."""
    fired: list[Alert] = []
    kept: dict[str, OpenAlert] = {}
    for alert in current:
        seen = state.get(alert.ident) or OpenAlert(since=now, fired=False)
        held = now - seen.since >= timedelta(seconds=alert.rule.hold_s)
        if not seen.fired and held:
            fired.append(alert)
            seen = OpenAlert(since=seen.since, fired=True)
        kept[alert.ident] = seen
    resolved = tuple(
        sorted(ident for ident, seen in state.items() if seen.fired and ident not in kept)
    )
    return Evaluation(fired=tuple(fired), resolved=resolved, state=kept)
