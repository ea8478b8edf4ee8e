"""Audit snapshots on SQLite and PostgreSQL, into a local directory and into an S3 bucket (moto's
S3 server, `test_object_store_s3.py`): an ended intent's intent, final fills and risk decisions
land as JSON under `{root}/{yyyy}/{mm}/{dd}/{kind}/{key}.json`, written atomically and only when
they change; a refused intent gets its intent and risk objects; the beat task is scheduled and
registered."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import celeryconfig
from services.audit_snapshots import object_key, snapshot_tick
from services.intake import process_submission
from services.orders.plan_intent import plan_admitted
from services.orders.send_due import send_due
from store.object_store import LocalObjectStore
from store.schema import audit_log
from tasks.orders import BridgeVenue
from tests.integration.test_object_store_s3 import (
    Objects,
    s3_endpoint,  # noqa: F401 - the moto S3 server
    s3_objects,  # noqa: F401 - a fresh bucket on it
)
from tests.integration.test_orders_path import (
    T0,
    admit,
    children,
    describe_aapl,
    fill,
    quote,
    r,  # noqa: F401 - the Redis fixture
)


@pytest.fixture(params=["local", "s3"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> Objects:
    """The same scenarios over both object stores."""
    if request.param == "s3":
        bucket: Objects = request.getfixturevalue("s3_objects")
        return bucket
    root = tmp_path / "objects"
    return Objects(LocalObjectStore(root), "local", root=root)


def read(objects: Objects, key: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(objects.read(key))
    return doc


def complete_one(engine: Engine, rds: redis.Redis) -> Any:
    describe_aapl(engine)
    intent_id = admit(engine, rds)
    venue = BridgeVenue(engine, rds, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(rds, T0)
    send_due(engine, venue, T0)
    first = children(engine, intent_id)[0]
    fill(engine, first, "300", "200.02", "0001.01.01")
    assert send_due(engine, venue, T0 + timedelta(seconds=1)).finished_intents == [intent_id]
    return first


def test_an_ended_intent_is_snapshotted_once(
    engine: Engine,
    r: redis.Redis,  # noqa: F811
    objects: Objects,
) -> None:
    first = complete_one(engine, r)
    run = snapshot_tick(engine, objects.store)
    day = T0.date()
    keys = {kind: object_key(day, kind, "sig-1") for kind in ("intent", "fills", "risk")}
    assert sorted(run.written) == sorted(keys.values())
    assert keys["intent"] == f"{day:%Y}/{day:%m}/{day:%d}/intent/sig-1.json"
    assert objects.store.list(f"{day:%Y}/") == sorted(keys.values())
    if objects.root is not None:
        assert (objects.root / keys["intent"]).is_file()

    intent = read(objects, keys["intent"])
    assert (intent["signal_id"], intent["status"], intent["quantity"]) == (
        "sig-1",
        "COMPLETED",
        "300",
    )
    assert intent["children"][0]["state"] == "FILLED"

    fills = read(objects, keys["fills"])
    (only,) = fills["fills"]
    assert (only["execution_id"], only["shares"], only["price"]) == ("0001.01.01", "300", "200.02")
    assert only["client_order_id"] == first.client_order_id
    assert (fills["filled_shares"], fills["avg_price"]) == ("300", "200.02")

    risk = read(objects, keys["risk"])
    (decision,) = risk["decisions"]
    with engine.connect() as conn:
        audited = conn.execute(
            sa.select(audit_log.c.row_hash).where(audit_log.c.action == "intent_admitted")
        ).scalar_one()
    assert decision["action"] == "intent_admitted" and decision["row_hash"] == audited
    assert decision["details"]["limits"]["max_order_quantity"] == "1000000"

    # Each object carries its own digest; no temporary file is left behind.
    for key in keys.values():
        doc = read(objects, key)
        digest = doc.pop("sha256")
        body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        assert hashlib.sha256(body.encode()).hexdigest() == digest
    assert objects.leftovers() == []

    # Again: nothing changed, nothing rewritten (files keep their times, objects their version).
    stamps = {key: objects.stamp(key) for key in keys.values()}
    again = snapshot_tick(engine, objects.store)
    assert again.written == [] and again.unchanged == 3
    assert {key: objects.stamp(key) for key in keys.values()} == stamps


def test_a_late_commission_rewrites_the_fills_snapshot(
    engine: Engine,
    r: redis.Redis,  # noqa: F811
    objects: Objects,
) -> None:
    complete_one(engine, r)
    snapshot_tick(engine, objects.store)
    fills_key = object_key(T0.date(), "fills", "sig-1")
    before = objects.versions(fills_key) if objects.kind == "s3" else []
    from services.ledger.callbacks import process_callback

    outcome = process_callback(
        "commission",
        {
            "exec_id": "0001.01.01",
            "commission": "1.50",
            "currency": "USD",
            "received_at": T0.isoformat(),
        },
        engine=engine,
        redis_client=None,
        now=T0,
    )
    assert outcome["outcome"] in {"recorded", "updated"}, outcome
    run = snapshot_tick(engine, objects.store)
    assert run.written == [fills_key]
    if objects.kind == "s3":  # exactly one new version (a file's mtime is too coarse to tell)
        after = objects.versions(fills_key)
        assert len(after) == len(before) + 1 and set(before) < set(after)
    (only,) = read(objects, fills_key)["fills"]
    assert only["commission"] == "1.50"


def test_a_refused_intent_gets_intent_and_risk_objects(
    engine: Engine,
    r: redis.Redis,  # noqa: F811
    objects: Objects,
) -> None:
    refused = process_submission(
        {
            "signal_id": "sig-huge",
            "strategy": "Momentum_EQ",
            "instrument": "AAPL",
            "side": "BUY",
            "quantity": "9000000",
            "urgency": "Immediate",
            "time_in_force": "DAY",
        },
        engine=engine,
        redis_client=r,
        now=T0,
        max_active=lambda _s: 10,
    )
    assert refused["reason"] == "RISK_LIMIT"
    run = snapshot_tick(engine, objects.store)
    names = sorted(run.written)
    day = f"{T0:%Y/%m/%d}"
    assert names == [f"{day}/intent/sig-huge.json", f"{day}/risk/sig-huge.json"]
    assert objects.store.list(day) == names
    risk = read(objects, names[1])
    (decision,) = risk["decisions"]
    assert decision["details"]["reason"] == "RISK_LIMIT"
    assert "9000000" in decision["details"]["numbers"].values()


def test_a_key_is_one_safe_file_name(tmp_path: Path) -> None:
    key = object_key(T0.date(), "fills", "../a/b c")
    assert key == f"{T0:%Y/%m/%d}/fills/..%2Fa%2Fb%20c.json"
    store = LocalObjectStore(tmp_path)
    assert store.put_if_changed(key, b"{}") is True
    assert store.path(key).parent == tmp_path / f"{T0:%Y/%m/%d}" / "fills"


def test_the_snapshot_tick_is_on_beat_and_registered() -> None:
    import tasks.snapshots  # noqa: F401 - registers the task
    from tasks.app import celery_app

    entry = next(
        e
        for e in celeryconfig.beat_schedule.values()
        if e["task"] == "tasks.snapshots.snapshot_tick"
    )
    assert "tasks.snapshots.snapshot_tick" in celery_app.tasks
    assert "tasks.snapshots" in celeryconfig.imports
    assert celeryconfig.task_routes["tasks.snapshots.*"]["queue"] == "recon"
    assert float(str(entry["schedule"])) > 0
