"""Intake feeds the near-duplicate and price-band gates (issue 13 item 2) from the ledger and the
bridge's quotes: a second opening intent of the same strategy, instrument and side within the
strategy's window under another signal id is refused with the first one named; a target price
far from a fresh NBBO mid is refused with the numbers; stale quotes and exits are not held."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from models.limits import with_overrides
from services.intake import process_submission
from services.risk.current_limits import current_limits
from store import contracts
from store.db import make_engine
from store.migrate import upgrade

NOW = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
AAPL = 265598
# The shipped limits leave the check off (0); an operator turns it on per strategy.
LIMITS = with_overrides(current_limits(), {"strategies.Momentum_EQ.duplicate_window_s": "5"})


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


def submit(
    engine: sa.Engine, rds: redis.Redis, at: datetime = NOW, **changes: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "signal_id": f"sig-{uuid.uuid4().hex[:10]}",
        "strategy": "Momentum_EQ",
        "instrument": "AAPL",
        "side": "BUY",
        "quantity": "10",
        "urgency": "Immediate",
        "time_in_force": "DAY",
    }
    payload.update(changes)
    return process_submission(
        payload, engine=engine, redis_client=rds, now=at, max_active=lambda _s: 50, limits=LIMITS
    )


def test_a_near_duplicate_opening_is_refused_naming_the_first_and_the_window_is_per_strategy(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    first = submit(engine, rds, signal_id="sig-first")
    assert first["status"] == "VALIDATED"
    again = submit(engine, rds, NOW + timedelta(seconds=2))
    assert again["reason"] == "POSSIBLE_DUPLICATE", again
    assert "sig-first" in again["message"] and "2.0s ago" in again["message"]
    # Outside the 5 s window, another side, another instrument: not duplicates.
    assert submit(engine, rds, NOW + timedelta(seconds=6))["status"] == "VALIDATED"
    assert submit(engine, rds, NOW + timedelta(seconds=7), side="SELL_SHORT")["reason"] != (
        "POSSIBLE_DUPLICATE"
    )
    assert submit(engine, rds, NOW + timedelta(seconds=7), instrument="MSFT")["status"] == (
        "VALIDATED"
    )
    # Gamma_Rebalance keeps the shipped default: no window.
    hedge = {"strategy": "Gamma_Rebalance", "instrument": "NVDA"}
    assert submit(engine, rds, NOW, **hedge)["status"] == "VALIDATED"
    assert submit(engine, rds, NOW + timedelta(seconds=1), **hedge)["status"] == "VALIDATED"


def test_a_refused_intent_is_no_prior_and_an_exit_is_never_held_as_a_duplicate(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    huge = submit(engine, rds, quantity="9000000")
    assert huge["reason"] == "RISK_LIMIT"
    assert submit(engine, rds, NOW + timedelta(seconds=1))["status"] == "VALIDATED"
    with engine.begin() as conn:
        contracts.put(conn, AAPL, {"symbol": "AAPL", "sec_type": "STK", "fetched_at": NOW})
        conn.execute(
            sa.text(
                "INSERT INTO positions_current (con_id, strategy_id, symbol, quantity, "
                "realized_pl, commissions, updated_at, version) "
                "VALUES (:c, 'Momentum_EQ', 'AAPL', '100', '0', '0', :t, 1)"
            ),
            {"c": AAPL, "t": NOW},
        )
    sells = [submit(engine, rds, NOW + timedelta(seconds=2 + i), side="SELL", quantity="10")
             for i in range(2)]  # fmt: skip
    assert [s["status"] for s in sells] == ["VALIDATED", "VALIDATED"]


def test_a_target_price_far_from_a_fresh_nbbo_is_refused_and_a_stale_quote_says_nothing(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    with engine.begin() as conn:
        contracts.put(conn, AAPL, {"symbol": "AAPL", "sec_type": "STK", "fetched_at": NOW})
    rds.hset(f"md:{AAPL}", mapping={"bid": "200.00", "ask": "200.10", "ts": NOW.isoformat()})
    assert submit(engine, rds, target_price="201")["status"] == "VALIDATED"
    far = submit(engine, rds, NOW + timedelta(seconds=1), instrument="AAPL", target_price="230",
                 strategy="Gamma_Rebalance")  # fmt: skip
    assert far["reason"] == "PRICE_BAND", far
    assert "200.05" in far["message"] and "500" in far["message"]
    later = NOW + timedelta(seconds=30)  # the quote is 30 s old: no band from it
    stale = submit(engine, rds, later, target_price="230", strategy="Gamma_Rebalance")
    assert stale["status"] == "VALIDATED", stale
