"""Audit snapshots on SQLite and PostgreSQL: an ended intent's intent, final fills and risk
decisions land as JSON under `{root}/{yyyy}/{mm}/{dd}/{kind}/{key}.json`, written atomically and
only when they change; a refused intent gets its intent and risk objects; the beat task is
scheduled and registered."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import celeryconfig
from services.audit_snapshots import object_path, snapshot_tick
from services.intake import process_submission
from services.orders.plan_intent import plan_admitted
from services.orders.send_due import send_due
from store.schema import audit_log
from tasks.orders import BridgeVenue
from tests.integration.test_orders_path import (
    T0,
    admit,
    children,
    describe_aapl,
    fill,
    quote,
    r,  # noqa: F401 - the Redis fixture
)


def read(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
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
    tmp_path: Path,
) -> None:
    root = tmp_path / "objects"
    first = complete_one(engine, r)
    run = snapshot_tick(engine, root)
    day = T0.date()
    paths = {kind: object_path(root, day, kind, "sig-1") for kind in ("intent", "fills", "risk")}
    assert sorted(run.written) == sorted(paths.values())
    assert (
        paths["intent"] == root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}" / "intent" / "sig-1.json"
    )

    intent = read(paths["intent"])
    assert (intent["signal_id"], intent["status"], intent["quantity"]) == (
        "sig-1",
        "COMPLETED",
        "300",
    )
    assert intent["children"][0]["state"] == "FILLED"

    fills = read(paths["fills"])
    (only,) = fills["fills"]
    assert (only["execution_id"], only["shares"], only["price"]) == ("0001.01.01", "300", "200.02")
    assert only["client_order_id"] == first.client_order_id
    assert (fills["filled_shares"], fills["avg_price"]) == ("300", "200.02")

    risk = read(paths["risk"])
    (decision,) = risk["decisions"]
    with engine.connect() as conn:
        audited = conn.execute(
            sa.select(audit_log.c.row_hash).where(audit_log.c.action == "intent_admitted")
        ).scalar_one()
    assert decision["action"] == "intent_admitted" and decision["row_hash"] == audited
    assert decision["details"]["limits"]["max_order_quantity"] == "1000000"

    # Each object carries its own digest; no temporary file is left behind.
    for path in paths.values():
        doc = read(path)
        digest = doc.pop("sha256")
        import hashlib

        body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        assert hashlib.sha256(body.encode()).hexdigest() == digest
    assert not [p for p in root.rglob("*.tmp")]

    # Again: nothing changed, nothing rewritten (the files keep their times).
    mtimes = {p: p.stat().st_mtime_ns for p in paths.values()}
    again = snapshot_tick(engine, root)
    assert again.written == [] and again.unchanged == 3
    assert {p: p.stat().st_mtime_ns for p in paths.values()} == mtimes


def test_a_late_commission_rewrites_the_fills_snapshot(
    engine: Engine,
    r: redis.Redis,  # noqa: F811
    tmp_path: Path,
) -> None:
    root = tmp_path / "objects"
    complete_one(engine, r)
    snapshot_tick(engine, root)
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
    run = snapshot_tick(engine, root)
    assert run.written == [object_path(root, T0.date(), "fills", "sig-1")]
    (only,) = read(run.written[0])["fills"]
    assert only["commission"] == "1.50"


def test_a_refused_intent_gets_intent_and_risk_objects(
    engine: Engine,
    r: redis.Redis,  # noqa: F811
    tmp_path: Path,
) -> None:
    root = tmp_path / "objects"
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
    run = snapshot_tick(engine, root)
    names = sorted(p.relative_to(root).as_posix() for p in run.written)
    day = f"{T0:%Y/%m/%d}"
    assert names == [f"{day}/intent/sig-huge.json", f"{day}/risk/sig-huge.json"]
    risk = read(root / names[1])
    (decision,) = risk["decisions"]
    assert decision["details"]["reason"] == "RISK_LIMIT"
    assert "9000000" in decision["details"]["numbers"].values()


def test_a_key_is_one_safe_file_name(tmp_path: Path) -> None:
    path = object_path(tmp_path, T0.date(), "fills", "../a/b c")
    assert path.parent == tmp_path / f"{T0:%Y/%m/%d}" / "fills"
    assert path.name == "..%2Fa%2Fb%20c.json"


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
