"""The intake use case against real stores: the same ledger tests on SQLite and PostgreSQL.

`services.intake.process_submission` is what `tasks.intake.submit_intent` runs; here it is called
directly (and from threads) so each property is checked on both dialects with real Redis for the
reject stream.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epm.streams import REJECT_STREAM
from models.rejects import RejectReason
from services.intake import process_submission
from store.db import make_engine
from store.intents import get_by_signal_id
from store.migrate import upgrade
from store.schema import intents
from tests.services import postgres_database

NOW = datetime(2025, 11, 21, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pg_intake_url() -> Iterator[str]:
    """A PostgreSQL database of this module's own, so row counts see only these tests."""
    with postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> sa.Engine:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("pg_intake_url")
    eng = make_engine(url)
    with eng.begin() as conn:
        conn.execute(intents.delete())
    return eng


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(REJECT_STREAM)
    yield client
    client.delete(REJECT_STREAM)
    client.close()


def intent(signal_id: str | None = None, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "signal_id": signal_id or f"sig-{uuid.uuid4().hex[:10]}",
        "strategy": "0DTE_Scalp",
        "instrument": "SPY   251121C00450000",
        "side": "BUY",
        "quantity": "10",
        "urgency": "Immediate",
        "time_in_force": "DAY",
        "target_price": "1.25",
    }
    payload.update(changes)
    return payload


def submit(
    engine: sa.Engine,
    rds: redis.Redis,
    payload: object,
    *,
    limit: int = 100,
    now: datetime = NOW,
) -> dict[str, Any]:
    return process_submission(
        payload, engine=engine, redis_client=rds, now=now, max_active=lambda _s: limit
    )


def rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(m) for m in conn.execute(sa.select(intents).order_by(intents.c.id)).mappings()]


def reject_entries(rds: redis.Redis) -> list[dict[str, str]]:
    return [dict(fields) for _id, fields in rds.xrange(REJECT_STREAM)]  # type: ignore[union-attr]


def test_valid_intent_is_stored_validated_with_exact_columns(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    payload = intent("sig-valid", instrument="SPY251121C00450000", quantity=10)
    outcome = submit(engine, rds, payload)
    assert outcome["status"] == "VALIDATED" and outcome["reason"] is None
    assert outcome["duplicate"] is False and isinstance(outcome["intent_id"], int)
    [row] = rows(engine)
    assert row["id"] == outcome["intent_id"]
    assert row["instrument"] == "SPY251121C00450000"  # as given
    assert row["quantity"] == Decimal("10") and isinstance(row["quantity"], Decimal)
    assert row["target_price"] == Decimal("1.25")
    assert row["max_slippage_bps"] == Decimal("50")
    assert row["expiry_policy"] == "close_before_market_close"
    assert row["payload"]["instrument"] == "SPY   251121C00450000"  # normalized
    assert row["payload"]["quantity"] == "10"
    assert row["received_at"] == NOW and row["received_at"].tzinfo is not None
    assert row["risk_tags"] == []
    assert reject_entries(rds) == []


def test_resubmission_returns_the_first_outcome_and_adds_no_row(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    payload = intent("sig-dup")
    first = submit(engine, rds, payload)
    later = NOW + timedelta(days=3)  # the option has expired since: still the same intent
    again = [
        submit(engine, rds, payload, now=later),
        submit(engine, rds, json.dumps(payload), now=later),
        submit(engine, rds, {**payload, "instrument": "SPY251121C00450000", "quantity": 10.0}),
    ]
    for outcome in again:
        assert outcome["status"] == "VALIDATED"
        assert outcome["intent_id"] == first["intent_id"] and outcome["duplicate"] is True
    assert len(rows(engine)) == 1
    assert reject_entries(rds) == []


def test_signal_id_reused_for_another_payload_is_a_duplicate_signal_reject(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    first = submit(engine, rds, intent("sig-reuse"))
    outcome = submit(engine, rds, intent("sig-reuse", quantity="11"))
    assert outcome["status"] == "REJECTED"
    assert outcome["reason"] == RejectReason.DUPLICATE_SIGNAL
    assert outcome["intent_id"] == first["intent_id"]
    [row] = rows(engine)
    assert row["status"] == "VALIDATED" and row["quantity"] == Decimal("10")
    [entry] = reject_entries(rds)
    assert entry["signal_id"] == "sig-reuse" and entry["reason"] == "DUPLICATE_SIGNAL"


def test_invalid_intent_with_signal_id_is_recorded_and_each_submission_publishes_once(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    payload = intent("sig-bad", quantity="-3")
    outcomes = [submit(engine, rds, payload) for _ in range(3)]
    assert {o["reason"] for o in outcomes} == {"INVALID_QUANTITY"}
    assert [o["duplicate"] for o in outcomes] == [False, True, True]
    [row] = rows(engine)
    assert (row["status"], row["reject_reason"]) == ("REJECTED", "INVALID_QUANTITY")
    assert row["payload"]["quantity"] == "-3"
    entries = reject_entries(rds)
    assert len(entries) == 3
    assert {(e["signal_id"], e["reason"]) for e in entries} == {("sig-bad", "INVALID_QUANTITY")}
    assert datetime.fromisoformat(entries[0]["ts"]) == NOW


BAD_INPUTS: list[tuple[object, str]] = [
    ("{garbage", "MALFORMED_JSON"),
    ("[]", "NOT_AN_OBJECT"),
    ({"signal_id": "x-missing"}, "MISSING_FIELD"),
    (intent(quantity=[1]), "INVALID_TYPE"),
    (intent(quantity=0), "INVALID_QUANTITY"),
    (intent(quantity=-1), "INVALID_QUANTITY"),
    (intent(quantity=float("nan")), "NON_FINITE_NUMBER"),
    ('{"signal_id": "x-inf", "quantity": Infinity}', "MISSING_FIELD"),
    (intent(quantity="Infinity"), "NON_FINITE_NUMBER"),
    (intent(quantity=10**30), "NUMBER_OUT_OF_RANGE"),
    (intent(strategy="Martingale"), "UNKNOWN_STRATEGY"),
    (intent(instrument="SPY  251121C0045000"), "MALFORMED_OCC_SYMBOL"),
    (intent(instrument="SPY   251120C00450000"), "OPTION_EXPIRED"),
    (intent(time_in_force="GTD"), "GTD_WITHOUT_DATE"),
    (intent(side="HODL"), "UNKNOWN_SIDE"),
    (intent(extra="x"), "UNKNOWN_FIELD"),
    (intent(strategy="Momentum_EQ"), "STRATEGY_INSTRUMENT_MISMATCH"),
]


@pytest.mark.parametrize(("payload", "reason"), BAD_INPUTS)
def test_bad_input_gives_one_reject_with_its_code_and_no_validated_row(
    engine: sa.Engine, rds: redis.Redis, payload: object, reason: str
) -> None:
    outcome = submit(engine, rds, payload)
    assert (outcome["status"], outcome["reason"]) == ("REJECTED", reason)
    [entry] = reject_entries(rds)
    assert entry["reason"] == reason and entry["message"]
    stored = rows(engine)
    assert all(r["status"] == "REJECTED" for r in stored)
    assert len(stored) == (1 if outcome["signal_id"] else 0)


def test_nul_and_surrogates_in_a_refused_payload_are_stored_safely(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    text = '{"signal_id": "sig-nul", "strategy": "\\u0000x\\ud800", "junk": [1e999, -0.0]}'
    outcome = submit(engine, rds, text)
    assert outcome["reason"] == "UNKNOWN_STRATEGY"
    [row] = rows(engine)
    assert row["strategy"] == "\\u0000x\\ud800"
    assert submit(engine, rds, text)["duplicate"] is True


def test_concurrency_guard_limits_active_intents_per_strategy(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    outcomes = [submit(engine, rds, intent(f"g-{i}"), limit=2) for i in range(3)]
    assert [o["status"] for o in outcomes] == ["VALIDATED", "VALIDATED", "REJECTED"]
    assert outcomes[2]["reason"] == "CONCURRENCY_LIMIT"
    guard_row = next(r for r in rows(engine) if r["signal_id"] == "g-2")
    assert guard_row["quantity"] == Decimal("10")  # the valid intent's columns are kept
    other = submit(engine, rds, intent("g-eq", strategy="Momentum_EQ", instrument="AAPL"), limit=2)
    assert other["status"] == "VALIDATED"
    with engine.begin() as conn:
        conn.execute(
            intents.update().where(intents.c.signal_id == "g-0").values(status="COMPLETED")
        )
    assert submit(engine, rds, intent("g-3"), limit=2)["status"] == "VALIDATED"
    assert submit(engine, rds, intent("g-2"), limit=2)["reason"] == "CONCURRENCY_LIMIT"


def test_guard_holds_under_concurrent_submissions(engine: sa.Engine, rds: redis.Redis) -> None:
    limit, threads = 3, 8
    outcomes: list[dict[str, Any]] = []
    barrier = threading.Barrier(threads)

    def run(i: int) -> None:
        barrier.wait()
        outcomes.append(submit(engine, rds, intent(f"c-{i}"), limit=limit))

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert len(outcomes) == threads
    assert sum(o["status"] == "VALIDATED" for o in outcomes) == limit
    assert sum(o["reason"] == "CONCURRENCY_LIMIT" for o in outcomes) == threads - limit


def test_same_signal_submitted_concurrently_is_stored_once(
    engine: sa.Engine, rds: redis.Redis
) -> None:
    threads = 8
    payload = intent("same-signal")
    outcomes: list[dict[str, Any]] = []
    barrier = threading.Barrier(threads)

    def run() -> None:
        barrier.wait()
        outcomes.append(submit(engine, rds, payload))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert len(rows(engine)) == 1
    assert {o["intent_id"] for o in outcomes} == {rows(engine)[0]["id"]}
    assert sum(not o["duplicate"] for o in outcomes) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.decimals() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=8,
)
FIELD_NAMES = ["signal_id", "strategy", "instrument", "side", "quantity", "time_in_force", "x"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.one_of(
        json_values,
        st.text(max_size=80),
        st.tuples(st.sampled_from(FIELD_NAMES), json_values).map(
            lambda kv: {**intent(), kv[0]: kv[1]}
        ),
    )
)
def test_arbitrary_payloads_never_raise_and_invalid_ones_publish_exactly_one_reject(
    engine: sa.Engine, rds: redis.Redis, payload: object
) -> None:
    before = rds.xlen(REJECT_STREAM)
    outcome = submit(engine, rds, payload)
    published = rds.xlen(REJECT_STREAM) - before
    if outcome["status"] == "REJECTED":
        assert published == 1
        last = reject_entries(rds)[-1]
        assert last["reason"] == outcome["reason"] and RejectReason(last["reason"])
    else:
        assert outcome["status"] == "VALIDATED" and published == 0
        with engine.connect() as conn:
            row = get_by_signal_id(conn, outcome["signal_id"])
        assert row is not None and row.id == outcome["intent_id"]


def test_today_comes_from_now_for_expiry(engine: sa.Engine, rds: redis.Redis) -> None:
    expiry = date(2025, 11, 24)
    payload = intent(instrument=f"SPY   {expiry:%y%m%d}C00450000")
    late = datetime(2025, 11, 25, 0, 5, tzinfo=UTC)
    assert submit(engine, rds, payload, now=late)["reason"] == "OPTION_EXPIRED"
