"""Intake's margin-headroom gate against a real ledger and Redis: the figures the bridge keeps
from client 2 decide, missing or stale ones refuse openings (fail closed), exits always pass."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from epm.settings import reset_settings_cache
from services.intake import process_submission
from services.risk.account import ACCOUNT_KEY, BRIDGE_STATE_KEY
from store.db import make_engine
from store.migrate import upgrade
from store.schema import positions_current

NOW = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    return make_engine(url)


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def bridge_up(rds: redis.Redis, *, client2: str = "READY", beat: datetime = NOW) -> None:
    rds.hset(BRIDGE_STATE_KEY, mapping={"client1": "READY", "client2": client2,
                                        "heartbeat": beat.isoformat()})  # fmt: skip


def summary(rds: redis.Redis, net_liq: str, excess: str, available: str) -> None:
    rds.hset(ACCOUNT_KEY.format(account="DU1234567"), mapping={
        "NetLiquidation": net_liq, "ExcessLiquidity": excess, "AvailableFunds": available,
        "ts": NOW.isoformat(),
    })  # fmt: skip


def hold_long(engine: sa.Engine, quantity: str) -> None:
    """A Momentum_EQ long in AAPL, as the ledger books one (the contract is not cached)."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(positions_current).values(
                con_id=265598, strategy_id="Momentum_EQ", symbol="AAPL", quantity=quantity,
                avg_price="190", realized_pl="0", commissions="0", updated_at=NOW, version=1,
            )
        )  # fmt: skip


def submit(engine: sa.Engine, rds: redis.Redis, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "signal_id": f"sig-{uuid.uuid4().hex[:10]}",
        "strategy": "Momentum_EQ",
        "instrument": "AAPL",
        "side": "BUY",
        "quantity": "100",
        "urgency": "Immediate",
        "time_in_force": "DAY",
        "target_price": "200",
    }
    payload.update(changes)
    return process_submission(
        payload, engine=engine, redis_client=rds, now=NOW, max_active=lambda _s: 50
    )


def test_the_bridge_s_account_figures_admit_or_refuse_with_the_numbers(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    bridge_up(rds)
    summary(rds, "1000000.00", "900000.00", "800000.00")
    assert submit(engine, rds)["status"] == "VALIDATED"
    # 8,000 × 200 × 0.5 = 800,000 of margin would leave nothing of the 100,000 floor.
    big = submit(engine, rds, quantity="8000")
    assert big["status"] == "REJECTED" and big["reason"] == "MARGIN_HEADROOM", big
    assert "800000" in big["message"] and "100000" in big["message"]
    summary(rds, "1000000.00", "50000.00", "40000.00")
    thin = submit(engine, rds, quantity="1")
    assert thin["reason"] == "MARGIN_HEADROOM" and "below the headroom floor" in thin["message"]


@pytest.mark.parametrize(
    ("client2", "beat", "why"),
    [
        ("DISCONNECTED", NOW, "client 2) is DISCONNECTED"),
        ("READY", NOW - timedelta(seconds=30), "last heartbeat was 30 s ago"),
    ],
)
def test_a_risk_connection_down_or_a_silent_bridge_refuses_openings_but_not_exits(
    engine: sa.Engine, rds: redis.Redis, client2: str, beat: datetime, why: str
) -> None:
    bridge_up(rds, client2=client2, beat=beat)
    summary(rds, "1000000.00", "900000.00", "800000.00")
    refused = submit(engine, rds)
    assert refused["reason"] == "ACCOUNT_DATA_UNAVAILABLE", refused
    assert why in refused["message"]
    hold_long(engine, "100")
    assert submit(engine, rds, side="SELL")["status"] == "VALIDATED"


def test_no_summary_yet_refuses_and_no_risk_connection_at_all_skips_unless_required(
    engine: sa.Engine, rds: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge_up(rds)
    none_yet = submit(engine, rds)
    assert none_yet["reason"] == "ACCOUNT_DATA_UNAVAILABLE"
    assert "no account summary received" in none_yet["message"]
    rds.delete(BRIDGE_STATE_KEY)  # intake alone, no bridge: nothing to check (mode auto)
    assert submit(engine, rds)["status"] == "VALIDATED"
    monkeypatch.setenv("EPM_HEADROOM_CHECK", "required")
    reset_settings_cache()
    try:
        required = submit(engine, rds)
        assert required["reason"] == "ACCOUNT_DATA_UNAVAILABLE"
        assert "client 2) is absent" in required["message"]
    finally:
        monkeypatch.delenv("EPM_HEADROOM_CHECK")
        reset_settings_cache()
