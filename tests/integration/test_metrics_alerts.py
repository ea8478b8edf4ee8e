"""epm's own alerts (issue 14 item 3) on real stores: each §12.3 condition, made by the ledger,
reconciliation and the bridge's published state, raises its alert on `ops.alerts` once (not on
every tick) and resolves once; a clean session raises none."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from sqlalchemy import update
from sqlalchemy.engine import Engine

from services.alerts.tick import ALERT_STREAM, LAST_TICK_KEY, LOCK_KEY, run_tick
from services.recon.positions import reconcile_positions
from services.shortfall import compute_missing
from store.db import write_transaction
from store.schema import intents
from tests.integration.ops_scenarios import AAPL, SPY, T0, Venue, child, fill, intent

pytestmark = pytest.mark.redis


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def published(r: redis.Redis) -> list[dict[str, Any]]:
    return [fields for _id, fields in r.xrange(ALERT_STREAM)]


def firing(r: redis.Redis) -> list[tuple[str, str]]:
    return [(f["alert"], f["key"]) for f in published(r) if f["status"] == "firing"]


def bridge_up(r: redis.Redis, now: datetime, **sessions: str) -> None:
    """What a running bridge keeps in `ib:bridge:state` (heartbeat every second)."""
    r.hset(
        "ib:bridge:state",
        mapping={
            "started_at": (now - timedelta(minutes=5)).isoformat(),
            "stopped_at": "",
            "heartbeat": now.isoformat(),
            **{f"client{k.removeprefix('c')}": v for k, v in sessions.items()},
        },
    )


def clean_session(engine: Engine, r: redis.Redis) -> None:
    """A session that traded well: an urgent intent filled in seconds, slippage within limits,
    positions agreeing with IB, both gateway sessions ready."""
    done = intent(engine, "clean-1", status="COMPLETED", urgency="High")
    child(engine, done, "clean-1-c1", 11, reference="100.00")
    fill(engine, 1, "clean-1-c1", 11, "100", "100.02")
    compute_missing(engine, lambda _c: None, T0 + timedelta(seconds=5))
    reconcile_positions(engine, Venue({SPY: "100"}), clock=lambda: T0 + timedelta(seconds=30))
    intent(engine, "clean-2", status="WORKING", urgency="Passive")
    bridge_up(r, T0 + timedelta(minutes=10), c1="READY", c2="READY")


def test_a_clean_session_raises_no_alert(engine: Engine, r: redis.Redis) -> None:
    clean_session(engine, r)
    now = T0 + timedelta(minutes=10)
    result = run_tick(engine, r, now)
    assert result.ran and result.fired == () and result.open == 0
    assert published(r) == []
    assert r.get(LAST_TICK_KEY) == now.isoformat()


def test_an_urgent_intent_unfilled_past_two_minutes_warns_once_then_resolves(
    engine: Engine, r: redis.Redis
) -> None:
    clean_session(engine, r)
    late = intent(engine, "urgent-1", status="WORKING", urgency="High", received_at=T0)
    child(engine, late, "urgent-1-c1", 21, state="PLACED")
    bridge_up(r, T0 + timedelta(seconds=200), c1="READY", c2="READY")
    assert run_tick(engine, r, T0 + timedelta(seconds=119)).fired == ()
    assert run_tick(engine, r, T0 + timedelta(seconds=121)).fired == (
        "urgent_order_unfilled:urgent-1",
    )
    assert run_tick(engine, r, T0 + timedelta(seconds=131)).fired == ()
    entry = published(r)[0]
    assert (entry["severity"], entry["runbook"], entry["strategy"]) == (
        "warning",
        "order-stuck",
        "Momentum_EQ",
    )
    fill(engine, 40, "urgent-1-c1", 21, "100", "100.01", at=T0 + timedelta(seconds=100))
    with write_transaction(engine) as conn:
        conn.execute(update(intents).where(intents.c.id == late).values(status="COMPLETED"))
    result = run_tick(engine, r, T0 + timedelta(seconds=141))
    assert result.resolved == ("urgent_order_unfilled:urgent-1",)
    assert [f["status"] for f in published(r)] == ["firing", "resolved"]


def test_slippage_over_the_intents_threshold_notifies_its_owner(
    engine: Engine, r: redis.Redis
) -> None:
    clean_session(engine, r)
    # Bought at 100.40 against an arrival of 100.00: 40 bps worse, over the intent's 30.
    bad = intent(
        engine,
        "slip-1",
        status="COMPLETED",
        strategy="0DTE_Scalp",
        con_id=AAPL,
        max_slippage_bps=Decimal(30),
    )
    child(engine, bad, "slip-1-c1", 31, strategy="0DTE_Scalp", con_id=AAPL, reference="100.00")
    fill(engine, 50, "slip-1-c1", 31, "100", "100.40", con_id=AAPL)
    assert compute_missing(engine, lambda _c: None, T0 + timedelta(minutes=9)) == 1
    now = T0 + timedelta(minutes=10)
    assert run_tick(engine, r, now).fired == ("slippage_over_threshold:slip-1",)
    assert run_tick(engine, r, now + timedelta(seconds=10)).fired == ()
    (entry,) = published(r)
    assert (entry["severity"], entry["strategy"], entry["runbook"]) == (
        "notify",
        "0DTE_Scalp",
        "slippage-review",
    )
    assert "40.00 bps" in entry["summary"] and "threshold 30" in entry["summary"]


def test_a_position_difference_over_five_is_critical_and_five_is_not(
    engine: Engine, r: redis.Redis
) -> None:
    clean_session(engine, r)
    # The ledger holds 100 SPY; IB says 105 (a warning only), then 93 (critical).
    reconcile_positions(engine, Venue({SPY: "105"}), clock=lambda: T0 + timedelta(minutes=1))
    assert run_tick(engine, r, T0 + timedelta(minutes=10)).fired == ()
    reconcile_positions(engine, Venue({SPY: "93"}), clock=lambda: T0 + timedelta(minutes=2))
    assert run_tick(engine, r, T0 + timedelta(minutes=10, seconds=10)).fired == (
        f"position_mismatch:{SPY}",
    )
    (entry,) = published(r)
    assert entry["severity"] == "critical" and entry["security"] == "SPY"
    # The next run agrees again: resolved.
    reconcile_positions(engine, Venue({SPY: "100"}), clock=lambda: T0 + timedelta(minutes=3))
    result = run_tick(engine, r, T0 + timedelta(minutes=10, seconds=20))
    assert result.resolved == (f"position_mismatch:{SPY}",)


def test_a_bridge_session_down_past_30s_pages_and_a_blip_does_not(
    engine: Engine, r: redis.Redis
) -> None:
    clean_session(engine, r)
    now = T0 + timedelta(minutes=10)
    bridge_up(r, now, c1="CONNECTING", c2="READY")
    assert run_tick(engine, r, now).fired == ()
    bridge_up(r, now + timedelta(seconds=5), c1="READY", c2="READY")
    assert run_tick(engine, r, now + timedelta(seconds=5)).fired == ()
    bridge_up(r, now + timedelta(seconds=10), c1="DISCONNECTED", c2="READY")
    assert run_tick(engine, r, now + timedelta(seconds=10)).fired == ()
    bridge_up(r, now + timedelta(seconds=41), c1="CONNECTING", c2="READY")
    assert run_tick(engine, r, now + timedelta(seconds=41)).fired == ("gateway_disconnected:1",)
    (entry,) = published(r)
    assert (entry["severity"], entry["runbook"], entry["client_id"]) == (
        "page",
        "gateway-reconnect",
        "1",
    )


def test_a_tick_while_another_holds_the_lock_publishes_nothing(
    engine: Engine, r: redis.Redis
) -> None:
    clean_session(engine, r)
    intent(engine, "urgent-2", status="WORKING", urgency="Immediate", received_at=T0)
    r.set(LOCK_KEY, "another-tick", px=30_000)
    assert run_tick(engine, r, T0 + timedelta(minutes=10)).ran is False
    assert published(r) == []
    r.delete(LOCK_KEY)
    assert run_tick(engine, r, T0 + timedelta(minutes=10)).fired == (
        "urgent_order_unfilled:urgent-2",
    )
