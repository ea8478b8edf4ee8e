"""Snapshots of each ended intent for the audit trail: the intent, its final fills and its risk
decisions, as JSON objects in an object-store layout.

Layout: `{root}/{yyyy}/{mm}/{dd}/{kind}/{key}.json`, where the date is the intent's
`received_at` (UTC) so one intent's objects sit under one day, `kind` is `intent`, `fills` or
`risk`, and `key` the signal id (percent-encoded, so any id is one safe file name). `root` is
the object store (`store.object_store`): the directory `EPM_OBJECT_STORE_PATH` (default
`DATA_DIR/objects`), or the bucket `EPM_OBJECT_STORE_URL=s3://BUCKET/PREFIX` with the same keys.

When: a beat task (`tasks.snapshots.snapshot_tick`) writes the intents that ended (any status
but VALIDATED/WORKING) since its cursor, and looks back `LOOKBACK` before the cursor so a fill or
commission arriving just after the intent ended lands in its snapshot too. An object is written
atomically and only when its bytes change, so a repeated or overlapping run is harmless and
leaves the objects' times (and bucket versions) alone. Each object embeds its own sha256
(of the document without that field) and the risk snapshot the audit rows' chain hashes, so a
snapshot can be tied back to `epm audit verify`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import Connection, Engine

from models.intent import ACTIVE_STATUSES
from store import snapshots as repo
from store.object_store import ObjectStore

__all__ = [
    "KINDS",
    "LOOKBACK",
    "SnapshotRun",
    "object_key",
    "snapshot_ended",
    "snapshot_tick",
]

KINDS = ("intent", "fills", "risk")
LOOKBACK = timedelta(minutes=10)
BATCH = 500
CURSOR_NAME = "_snapshot_cursor.json"
DECISION_ACTIONS = ("intent_admitted", "intent_refused")


def object_key(day: date, kind: str, key: str) -> str:
    """The store key of one object (the same in the directory and the bucket)."""
    if kind not in KINDS:
        raise ValueError(f"unknown snapshot kind {kind!r}; one of {', '.join(KINDS)}")
    return f"{day.year:04d}/{day.month:02d}/{day.day:02d}/{kind}/{quote(key, safe='')}.json"


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot go into a snapshot")


def _encode(doc: Mapping[str, Any]) -> bytes:
    body = json.dumps(doc, default=_default, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    full = {**json.loads(body), "sha256": digest}
    return (json.dumps(full, sort_keys=True, indent=2) + "\n").encode("utf-8")


def _documents(conn: Connection, intent: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    signal_id = str(intent["signal_id"])
    intent_id = int(intent["id"])
    children = repo.children_of(conn, intent_id)
    docs: dict[str, dict[str, Any]] = {
        "intent": {"kind": "intent", **intent, "children": children},
        "risk": {
            "kind": "risk",
            "signal_id": signal_id,
            "decisions": repo.decisions_of(conn, signal_id, DECISION_ACTIONS),
            "events": repo.risk_events_of(conn, signal_id),
        },
    }
    if children:
        executions = repo.fills_of(conn, intent_id)
        shares = sum((Decimal(f["shares"]) for f in executions), Decimal(0))
        notional = sum((Decimal(f["shares"]) * Decimal(f["price"]) for f in executions), Decimal(0))
        docs["fills"] = {
            "kind": "fills",
            "signal_id": signal_id,
            "status": intent["status"],
            "fills": executions,
            "filled_shares": shares,
            "avg_price": None if shares == 0 else notional / shares,
        }
    return docs


@dataclass
class SnapshotRun:
    """What one run did: objects written (changed or new), left as they were, intents seen, and
    the newest `updated_at` among them (the next cursor)."""

    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    intents: int = 0
    newest: datetime | None = None


def snapshot_ended(engine: Engine, objects: ObjectStore, *, since: datetime | None) -> SnapshotRun:
    """Snapshot every intent that ended at or after `since` (None: all of them), in batches."""
    run = SnapshotRun()
    active = [s.value for s in ACTIVE_STATUSES]
    after: tuple[datetime, int] | None = None
    while True:
        with engine.connect() as conn:
            batch = repo.ended_since(conn, since, active, BATCH, after)
            for intent in batch:
                run.intents += 1
                day = intent["received_at"].astimezone(UTC).date()
                for kind, doc in _documents(conn, intent).items():
                    key = object_key(day, kind, str(intent["signal_id"]))
                    if objects.put_if_changed(key, _encode(doc)):
                        run.written.append(key)
                    else:
                        run.unchanged += 1
                updated = intent["updated_at"]
                run.newest = updated if run.newest is None else max(run.newest, updated)
        if len(batch) < BATCH:
            return run
        after = (batch[-1]["updated_at"], int(batch[-1]["id"]))


def _read_cursor(objects: ObjectStore) -> datetime | None:
    data = objects.get(CURSOR_NAME)
    if data is None:
        return None
    try:
        return datetime.fromisoformat(str(json.loads(data)["updated_at"]))
    except (KeyError, TypeError, ValueError):
        return None


def snapshot_tick(engine: Engine, objects: ObjectStore) -> SnapshotRun:
    """One beat run: from `LOOKBACK` before the stored cursor; the cursor moves forward only."""
    cursor = _read_cursor(objects)
    run = snapshot_ended(engine, objects, since=None if cursor is None else cursor - LOOKBACK)
    if run.newest is not None and (cursor is None or run.newest > cursor):
        objects.put_if_changed(CURSOR_NAME, _encode({"updated_at": run.newest}))
    return run
