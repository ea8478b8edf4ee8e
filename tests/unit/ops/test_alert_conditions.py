"""models.alerts: each §12.3 condition fires past its threshold and not before, and an open
condition is published once, resolved once, and a short blip under its hold never pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from models.alerts import (
    CLIENT_ID_COLLISION,
    GATEWAY_DISCONNECTED,
    POSITION_MISMATCH,
    SLIPPAGE_OVER_THRESHOLD,
    URGENT_UNFILLED,
    AlertFacts,
    AlertThresholds,
    BridgeFacts,
    PositionGap,
    Severity,
    SlippageResult,
    UrgentIntent,
    conditions,
    evaluate,
)

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
LIMITS = AlertThresholds()


def _rules(facts: AlertFacts, now: datetime = NOW) -> list[tuple[str, str]]:
    return [(a.rule.name, a.key) for a in conditions(facts, now, LIMITS)]


def _healthy(**sessions: str) -> BridgeFacts:
    states = {int(k.removeprefix("c")): v for k, v in sessions.items()}
    return BridgeFacts(sessions=states, heartbeat_at=NOW - timedelta(seconds=1))


def test_urgent_intent_unfilled_past_two_minutes_warns_and_not_before() -> None:
    def intent(urgency: str, age_s: int, sid: str) -> UrgentIntent:
        return UrgentIntent(sid, "Momentum_EQ", urgency, NOW - timedelta(seconds=age_s))

    facts = AlertFacts(
        urgent=[
            intent("High", 121, "late"),
            intent("Immediate", 500, "later"),
            intent("High", 120, "on-time"),
            intent("Normal", 900, "not-urgent"),
        ]
    )
    assert _rules(facts) == [(URGENT_UNFILLED.name, "late"), (URGENT_UNFILLED.name, "later")]
    assert URGENT_UNFILLED.severity is Severity.WARNING


def test_slippage_over_the_intents_own_limit_or_the_default_notifies_the_owner() -> None:
    facts = AlertFacts(
        slippage=[
            SlippageResult("own-limit", "S", Decimal("12.5"), Decimal("10")),
            SlippageResult("within-own", "S", Decimal("30"), Decimal("40")),
            SlippageResult("default", "S", Decimal("25.01"), None),
            SlippageResult("at-default", "S", Decimal("25"), None),
            SlippageResult("better", "S", Decimal("-80"), None),
        ]
    )
    found = conditions(facts, NOW, LIMITS)
    assert [a.key for a in found] == ["own-limit", "default"]
    assert {a.rule for a in found} == {SLIPPAGE_OVER_THRESHOLD}
    assert found[0].labels["strategy"] == "S"
    assert SLIPPAGE_OVER_THRESHOLD.severity is Severity.NOTIFY


def test_position_difference_over_five_contracts_either_way_is_critical() -> None:
    facts = AlertFacts(
        gaps=[
            PositionGap(1, "SPY", Decimal(10), Decimal(4)),
            PositionGap(2, "QQQ", Decimal(0), Decimal(6)),
            PositionGap(3, "IWM", Decimal(5), Decimal(0)),
        ]
    )
    assert _rules(facts) == [(POSITION_MISMATCH.name, "1"), (POSITION_MISMATCH.name, "2")]
    assert POSITION_MISMATCH.severity is Severity.CRITICAL


def test_bridge_sessions_ready_raise_nothing() -> None:
    assert _rules(AlertFacts(bridge=_healthy(c1="READY", c2="SYNCING"))) == []
    assert _rules(AlertFacts(bridge=None)) == []


def test_client_id_in_use_pages_also_between_its_retries() -> None:
    assert _rules(AlertFacts(bridge=_healthy(c1="ID_IN_USE", c2="READY"))) == [
        (CLIENT_ID_COLLISION.name, "1")
    ]
    retrying = BridgeFacts(
        sessions={1: "CONNECTING"},
        heartbeat_at=NOW,
        id_in_use_at={1: NOW - timedelta(seconds=40)},
    )
    assert _rules(AlertFacts(bridge=retrying)) == [(CLIENT_ID_COLLISION.name, "1")]
    long_ago = BridgeFacts(
        sessions={1: "CONNECTING"},
        heartbeat_at=NOW,
        id_in_use_at={1: NOW - timedelta(seconds=600)},
    )
    assert _rules(AlertFacts(bridge=long_ago)) == [(GATEWAY_DISCONNECTED.name, "1")]
    assert CLIENT_ID_COLLISION.severity is GATEWAY_DISCONNECTED.severity is Severity.PAGE


def test_a_stale_heartbeat_or_stopped_bridge_is_a_disconnect_of_every_session() -> None:
    stale = BridgeFacts(sessions={1: "READY", 2: "READY"}, heartbeat_at=NOW - timedelta(seconds=60))
    assert _rules(AlertFacts(bridge=stale)) == [
        (GATEWAY_DISCONNECTED.name, "1"),
        (GATEWAY_DISCONNECTED.name, "2"),
    ]
    stopped = BridgeFacts(sessions={1: "STOPPED"}, heartbeat_at=NOW, stopped=True)
    assert _rules(AlertFacts(bridge=stopped)) == [(GATEWAY_DISCONNECTED.name, "1")]


def test_an_open_condition_is_published_once_then_resolved_once() -> None:
    gap = AlertFacts(gaps=[PositionGap(1, "SPY", Decimal(10), Decimal(0))])
    first = evaluate(conditions(gap, NOW, LIMITS), {}, NOW)
    assert [a.ident for a in first.fired] == ["position_mismatch:1"]
    later = NOW + timedelta(seconds=10)
    second = evaluate(conditions(gap, later, LIMITS), first.state, later)
    assert second.fired == () and second.resolved == ()
    assert second.state["position_mismatch:1"].since == NOW
    cleared = evaluate([], second.state, later + timedelta(seconds=10))
    assert cleared.resolved == ("position_mismatch:1",) and cleared.state == {}
    assert evaluate([], cleared.state, later).resolved == ()


def test_a_disconnect_shorter_than_its_hold_never_fires() -> None:
    down = AlertFacts(bridge=_healthy(c1="CONNECTING"))
    seen = evaluate(conditions(down, NOW, LIMITS), {}, NOW)
    assert seen.fired == () and "gateway_disconnected:1" in seen.state
    t10 = NOW + timedelta(seconds=10)
    back = evaluate([], seen.state, t10)
    assert back.fired == () and back.resolved == () and back.state == {}
    # Held past 30 s it fires, once.
    t31 = NOW + timedelta(seconds=31)
    held = evaluate(conditions(down, t31, LIMITS), seen.state, t31)
    assert [a.ident for a in held.fired] == ["gateway_disconnected:1"]
