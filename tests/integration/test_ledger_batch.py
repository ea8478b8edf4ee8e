"""Batches of callbacks recorded in one go (`services.ledger.callbacks.process_batch`, the
`record_batch` task): the same ledger as one callback at a time, whatever the chunking, order
and duplicates; a bad payload rejected inside the batch; a refused item sends the batch back to
one-by-one recording; each touched position recomputed once per batch."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from services.ledger.callbacks import BatchNotRecorded, process_batch
from store.schema import positions_history, risk_events
from tests.integration.test_ledger_properties import (
    T0,
    Callback,
    _reset,
    deliveries,
    replay,
    snapshot,
)
from tests.integration.test_ledger_worker import session_recording

D = Decimal
# Valid, and refused by its writer: a 103 replacement of an order the ledger does not have.
REFUSED: Callback = (
    "order_replaced",
    {
        "old_order_id": 41,
        "new_order_id": 45,
        "client_order_id": "NOT-OURS",
        "client_id": 1,
        "at": T0.isoformat(),
    },
)


def in_batches(engine: Engine, callbacks: list[Callback], sizes: list[int]) -> dict[str, Any]:
    """The ledger after recording `callbacks` in consecutive batches of the given sizes."""
    _reset(engine)
    start, k = 0, 0
    while start < len(callbacks):
        size = sizes[k % len(sizes)]
        outcomes = process_batch(
            callbacks[start : start + size], engine=engine, redis_client=None, now=T0
        )
        assert len(outcomes) == len(callbacks[start : start + size])
        assert all(o["outcome"] != "rejected" for o in outcomes), outcomes
        start, k = start + size, k + 1
    return snapshot(engine)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=deliveries(), sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1))
def test_any_chunking_of_any_delivery_gives_the_recorded_ledger(
    engine: Engine, case: tuple[list[Callback], list[Callback]], sizes: list[int]
) -> None:
    recorded, delivered = case
    expected = replay(engine, recorded)
    assert in_batches(engine, delivered, sizes) == expected


def test_a_whole_session_in_one_batch_equals_one_by_one(engine: Engine) -> None:
    recording = session_recording()
    expected = replay(engine, recording)
    assert in_batches(engine, recording + recording, [len(recording) * 2]) == expected


def test_outcomes_come_back_in_the_order_given(engine: Engine) -> None:
    recording = session_recording()
    _reset(engine)
    outcomes = process_batch(recording, engine=engine, redis_client=None, now=T0)
    again = process_batch(recording, engine=engine, redis_client=None, now=T0)
    assert len(outcomes) == len(again) == len(recording)
    # A repeat of every execution and commission is a duplicate, item for item.
    for (kind, _payload), outcome in zip(recording, again, strict=True):
        if kind in ("execution", "commission"):
            assert outcome["outcome"] == "duplicate", (kind, outcome)


def test_a_payload_that_does_not_validate_is_rejected_inside_the_batch(engine: Engine) -> None:
    recording = session_recording()
    expected = replay(engine, recording)
    _reset(engine)
    bad: Callback = ("execution", {"exec_id": "", "shares": "x"})
    outcomes = process_batch([*recording[:5], bad, *recording[5:]], engine=engine,
                             redis_client=None, now=T0)  # fmt: skip
    assert outcomes[5]["outcome"] == "rejected"
    assert [o["outcome"] for o in outcomes].count("rejected") == 1
    with engine.connect() as conn:
        kinds = conn.execute(sa.select(risk_events.c.kind, risk_events.c.scope_key)).all()
    assert [tuple(k) for k in kinds] == [("LEDGER_PAYLOAD_REJECTED", "execution")]
    assert snapshot(engine) == expected


def test_a_refused_item_rolls_its_transaction_back(engine: Engine) -> None:
    recording = session_recording()
    _reset(engine)
    statuses = [c for c in recording if c[0] not in ("execution", "commission")]
    before = snapshot(engine)  # our orders, as the orders path wrote them
    with pytest.raises(BatchNotRecorded) as raised:
        process_batch([*statuses, REFUSED], engine=engine, redis_client=None, now=T0)
    assert raised.value.kind == "order_replaced"
    assert snapshot(engine) == before


def test_record_batch_task_falls_back_to_one_by_one_for_a_refused_item(
    engine: Engine, epm_env: pytest.MonkeyPatch, redis_url: str
) -> None:
    from tasks.ledger import record_batch

    epm_env.setenv("EPM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    epm_env.setenv("EPM_REDIS_URL", redis_url)
    recording = session_recording()
    expected = replay(engine, recording)
    _reset(engine)
    items = [{"kind": k, "payload": p} for k, p in recording]
    items.insert(7, {"kind": REFUSED[0], "payload": REFUSED[1]})
    outcomes = record_batch.run(items)
    assert len(outcomes) == len(items)
    assert outcomes[7] == {
        "outcome": "rejected",
        "reason": "ORDER_NOT_FOUND",
        "message": outcomes[7]["message"],
    }
    assert [o["outcome"] for o in outcomes].count("rejected") == 1
    assert snapshot(engine) == expected
    mirror = redis.Redis.from_url(redis_url, decode_responses=True).hgetall("exec:order:A-1")
    assert mirror["state"] == "FILLED"
    assert mirror["filled_qty"] == "100"
    redis.Redis.from_url(redis_url).delete("exec:order:A-1", "exec:order:A-2")


def test_each_touched_position_is_recomputed_once_per_batch(engine: Engine) -> None:
    recording = session_recording()
    _reset(engine)
    executions = [c for c in recording if c[0] == "execution"]
    others = [c for c in recording if c[0] != "execution"]
    process_batch(executions + others, engine=engine, redis_client=None, now=T0)
    with engine.connect() as conn:
        history = conn.execute(
            sa.select(positions_history.c.con_id, positions_history.c.strategy_id)
        ).all()
    # Two transactions (the executions, then the rest: commissions move the fees); each
    # position at most one history row per transaction, not one per fill.
    per_position: dict[tuple[Any, ...], int] = {}
    for row in history:
        per_position[tuple(row)] = per_position.get(tuple(row), 0) + 1
    assert per_position
    assert max(per_position.values()) <= 2
    fills_in_a_position = len([c for c in executions if c[1]["order_ref"] == "A-1"])
    assert fills_in_a_position > 2


def test_batch_lock_order_sorts_by_the_order_named_and_keeps_ties_in_arrival_order() -> None:
    from models.ledger_rules import batch_lock_order

    ids = [(1, 12), (None, None), (1, 11), (0, 12), (1, 11), (None, None)]
    assert batch_lock_order(ids) == [3, 2, 4, 0, 1, 5]
