"""A real Celery worker (prefork, 2 processes) consumes `submit_intent` on Redis + PostgreSQL.

Each valid intent is enqueued several times, shuffled, so the two worker processes race on the
same signal_id; the ledger must still hold it once, and every invalid submission must produce
exactly one reject entry.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epm.streams import REJECT_STREAM
from models.intent import RiskTag, Side, TimeInForce, Urgency
from store.db import make_engine
from store.migrate import upgrade
from store.schema import intents
from tests.integration.intake_procs import (
    broker_idle,
    process_env,
    running,
    send_intents,
    wait_for,
    worker_argv,
)
from tests.services import postgres_database

pytestmark = pytest.mark.slow
TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def pg_worker_url() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def worker(
    pg_worker_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    data_dir = tmp_path_factory.mktemp("worker")
    env = process_env(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL=pg_worker_url,
        EPM_DATA_DIR=str(data_dir),
        EPM_MAX_ACTIVE_INTENTS_DEFAULT="1000000",
    )
    # An earlier test's intake messages left on the session's broker db would reach this worker
    # and publish rejects the examples below count as theirs.
    client = redis.Redis.from_url(redis_url)
    client.delete("intake", "unacked", "unacked_index")
    client.close()
    with running(worker_argv(concurrency=2), env, data_dir / "worker.log") as proc:
        yield
        assert proc.poll() is None, (data_dir / "worker.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def stored(url: str, signal_ids: list[str]) -> list[dict[str, Any]]:
    with make_engine(url).connect() as conn:
        query = sa.select(intents).where(intents.c.signal_id.in_(signal_ids))
        return [dict(m) for m in conn.execute(query).mappings()]


@st.composite
def valid_intents(draw: st.DrawFn) -> dict[str, Any]:
    """Intents valid on the worker's today (options expire from today on)."""
    option = draw(st.booleans())
    if option:
        expiry = TODAY + timedelta(days=draw(st.integers(0, 400)))
        right = draw(st.sampled_from("CP"))
        strike = draw(st.integers(1_000, 999_000))
        root = draw(st.sampled_from(["SPY", "QQQ"]))
        instrument = f"{root:<6}{expiry:%y%m%d}{right}{strike:08d}"
        strategy = draw(st.sampled_from(["0DTE_Scalp", "Spread_Roll", "Gamma_Rebalance"]))
    else:
        instrument = draw(st.sampled_from(["AAPL", "MSFT", "NVDA"]))
        strategy = draw(st.sampled_from(["Momentum_EQ", "Gamma_Rebalance"]))
    tif = draw(st.sampled_from([t for t in TimeInForce if t is not TimeInForce.GTD]))
    # This ledger never holds a position, so a stock intent that closes one (SELL, BUY_TO_COVER)
    # is rightly refused (SIDE_POSITION_MISMATCH): valid stock intents open.
    sides = list(Side) if option else [Side.BUY, Side.SELL_SHORT]
    return {
        "signal_id": f"w-{uuid.uuid4().hex[:12]}",
        "strategy": strategy,
        "instrument": instrument,
        "side": draw(st.sampled_from(sides)).value,
        "quantity": str(draw(st.integers(1, 5_000))),
        "urgency": draw(st.sampled_from(Urgency)).value,
        "time_in_force": tif.value,
        "risk_tags": [t.value for t in draw(st.lists(st.sampled_from(RiskTag), max_size=3))],
    }


junk = st.one_of(
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["side", "quantity", "foo"]), st.integers(), max_size=3),
    valid_intents().map(lambda p: {**p, "quantity": "-1"}),
    valid_intents().map(lambda p: {**p, "strategy": "Nope"}),
    valid_intents().map(lambda p: {**p, "instrument": "SPY   200101C00100000"}),
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    valid=st.lists(valid_intents(), min_size=1, max_size=4),
    copies=st.integers(min_value=2, max_value=5),
    bad=st.lists(junk, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_worker_persists_each_valid_intent_once_and_rejects_each_bad_submission_once(
    worker: None,
    pg_worker_url: str,
    redis_url: str,
    rds: redis.Redis,
    valid: list[dict[str, Any]],
    copies: int,
    bad: list[object],
    seed: int,
) -> None:
    submissions: list[object] = []
    for payload in valid:
        # Half the copies as JSON text: the same intent however it is spelled.
        submissions += [payload if i % 2 else json.dumps(payload) for i in range(copies)]
    submissions += bad
    random.Random(seed).shuffle(submissions)
    rejects_before = rds.xlen(REJECT_STREAM)
    send_intents(redis_url, submissions)

    wanted = [p["signal_id"] for p in valid]
    wait_for(
        lambda: (
            len(stored(pg_worker_url, wanted)) == len(wanted)
            and rds.xlen(REJECT_STREAM) - rejects_before >= len(bad)
            and broker_idle(rds)
        ),
        what="the worker to drain the intake queue",
    )
    rows = stored(pg_worker_url, wanted)
    assert sorted(r["signal_id"] for r in rows) == sorted(wanted)
    assert {r["status"] for r in rows} == {"VALIDATED"}
    assert rds.xlen(REJECT_STREAM) - rejects_before == len(bad)
