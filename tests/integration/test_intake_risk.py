"""Intake's pre-trade gates against a real ledger and Redis: an oversized intent is refused with
RISK_LIMIT and its numbers, stored as refused and published; an ordinary one is admitted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from epm.streams import REJECT_STREAM
from services.intake import process_submission
from store.db import make_engine
from store.intents import get_by_signal_id
from store.migrate import upgrade

NOW = datetime(2025, 11, 21, 15, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    return make_engine(url)


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(REJECT_STREAM)
    yield client
    client.delete(REJECT_STREAM)
    client.close()


def submit(engine: sa.Engine, rds: redis.Redis, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "signal_id": f"sig-{uuid.uuid4().hex[:10]}",
        "strategy": "Momentum_EQ",
        "instrument": "SPY",
        "side": "BUY",
        "quantity": "100",
        "urgency": "Immediate",
        "time_in_force": "DAY",
    }
    payload.update(changes)
    return process_submission(
        payload, engine=engine, redis_client=rds, now=NOW, max_active=lambda _s: 10
    )


def test_nine_million_shares_refused_with_risk_limit_and_numbers(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    outcome = submit(engine, rds, quantity="9000000", signal_id="sig-huge")
    assert outcome["status"] == "REJECTED" and outcome["reason"] == "RISK_LIMIT"
    entries = [f for _i, f in rds.xrange(REJECT_STREAM)]
    assert len(entries) == 1 and entries[0]["reason"] == "RISK_LIMIT"
    assert "9000000" in json.dumps(entries[0]) and "1000000" in json.dumps(entries[0])
    with engine.connect() as conn:
        row = get_by_signal_id(conn, "sig-huge")
    assert row is not None and row.status == "REJECTED" and row.reject_reason == "RISK_LIMIT"
    # The same submission again: the first answer (each refused submission publishes its one).
    again = submit(engine, rds, quantity="9000000", signal_id="sig-huge")
    assert again["reason"] == "RISK_LIMIT" and again["duplicate"] is True
    assert [f["reason"] for _i, f in rds.xrange(REJECT_STREAM)] == ["RISK_LIMIT", "RISK_LIMIT"]


def test_notional_over_the_cap_refused_and_ordinary_intent_admitted(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    over = submit(engine, rds, quantity="20000", target_price="300")
    assert over["reason"] == "RISK_LIMIT"
    ok = submit(engine, rds, quantity="1000", target_price="300")
    assert ok["status"] != "REJECTED" and ok["reason"] is None


def _cache_spy(engine: sa.Engine) -> int:
    from store import contracts

    with engine.begin() as conn:
        contracts.put(conn, 756733, {"symbol": "SPY", "sec_type": "STK", "fetched_at": NOW})
    return 756733


def test_cover_without_a_short_is_refused_with_the_position(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    _cache_spy(engine)
    outcome = submit(engine, rds, side="BUY_TO_COVER")
    assert outcome["status"] == "REJECTED" and outcome["reason"] == "SIDE_POSITION_MISMATCH"
    (entry,) = [f for _i, f in rds.xrange(REJECT_STREAM)]
    assert "short in SPY is 0" in entry["message"]
    assert submit(engine, rds, side="BUY")["reason"] is None


def test_intent_during_a_halt_is_refused(engine: sa.Engine, rds: redis.Redis) -> None:
    from ibgateway_bridge.commands import HALT_INSTRUMENT_KEY
    from services.risk.market import HALT_INSTRUMENT_KEY as INTAKE_KEY

    assert INTAKE_KEY == HALT_INSTRUMENT_KEY
    con_id = _cache_spy(engine)
    rds.set(HALT_INSTRUMENT_KEY.format(con_id=con_id), "1")
    try:
        outcome = submit(engine, rds)
    finally:
        rds.delete(HALT_INSTRUMENT_KEY.format(con_id=con_id))
    assert outcome["status"] == "REJECTED" and outcome["reason"] == "INSTRUMENT_HALTED"
    assert submit(engine, rds)["reason"] is None
