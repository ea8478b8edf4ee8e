"""A stress run through the real queues (blueprint §13.3): send, then account for every intent.

The intents go where signal producers put them, the `signals.exec.intent` stream, at an even
rate; the run then reads the outcome of each from the ledger (its `intents` row, the first fill
of its children) and, for a payload intake refused without a row, from `signals.exec.reject`.
It samples the bridge's send backlog (`ib:bridge:state` `backlog_*`) while it runs: that is
where IB's pacing shows. Times are wall-clock seconds since the run started, on both sides (the
workers stamp the ledger on the same machine's clock).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from epm.streams import INTENT_STREAM, REJECT_STREAM
from models.stress import (
    ENDED,
    Outcome,
    StressIntent,
    StressReport,
    arrival_offsets,
    build_intents,
    report,
    to_json,
)
from store.db import make_engine
from store.schema import execution_orders, fills, intents

BRIDGE_STATE_KEY = "ib:bridge:state"


@dataclass(frozen=True, slots=True)
class StressRun:
    run: str
    report: StressReport
    outcomes: Sequence[Outcome]
    started_at: datetime

    def as_json(self) -> dict[str, object]:
        return {
            "run": self.run,
            "started_at": self.started_at.isoformat(),
            **to_json(self.report),
            "outcomes": [
                {
                    "signal_id": o.signal_id,
                    "kind": o.kind,
                    "sent_s": o.sent_s,
                    "status": o.status,
                    "reason": o.reason,
                    "decided_s": o.decided_s,
                    "first_fill_s": o.first_fill_s,
                }
                for o in self.outcomes
            ],
        }

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.as_json(), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path


class _Backlog:
    """The largest send backlog the bridge reported while the run was sampling."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self.max = 0
        self._next = 0.0

    def sample(self, *, every_s: float = 0.5) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + every_s
        try:
            state = cast(dict[str, str], self._client.hgetall(BRIDGE_STATE_KEY))
        except redis.RedisError:
            return
        for key, value in state.items():
            if key.startswith("backlog_") and value.isdigit():
                self.max = max(self.max, int(value))


def _seconds_since(start: datetime, ts: datetime | None) -> float | None:
    return None if ts is None else (ts - start).total_seconds()


def _rows(engine: Engine, signal_ids: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    first_fill = (
        sa.select(execution_orders.c.intent_id, sa.func.min(fills.c.received_at).label("first"))
        .join(fills, fills.c.order_id == execution_orders.c.id)
        .group_by(execution_orders.c.intent_id)
        .subquery()
    )
    with engine.connect() as conn:
        for i in range(0, len(signal_ids), 500):
            chunk = list(signal_ids[i : i + 500])
            query = (
                sa.select(
                    intents.c.signal_id,
                    intents.c.status,
                    intents.c.reject_reason,
                    intents.c.received_at,
                    first_fill.c.first,
                )
                .select_from(intents.outerjoin(first_fill, first_fill.c.intent_id == intents.c.id))
                .where(intents.c.signal_id.in_(chunk))
            )
            for row in conn.execute(query):
                out[row.signal_id] = row
    return out


def _refusals(client: redis.Redis, after_id: str, wanted: set[str]) -> dict[str, dict[str, str]]:
    """Reject entries since `after_id` for the run's signal ids (the first one each)."""
    found: dict[str, dict[str, str]] = {}
    cursor = after_id
    while True:
        entries = cast(
            list[tuple[str, dict[str, str]]],
            client.xrange(REJECT_STREAM, min=f"({cursor}", count=1000),
        )
        if not entries:
            return found
        for entry_id, fields in entries:
            cursor = entry_id
            sid = fields.get("signal_id", "")
            if sid in wanted and sid not in found:
                found[sid] = dict(fields)


def _last_entry_id(client: redis.Redis, stream: str) -> str:
    last = cast(list[tuple[str, dict[str, str]]], client.xrevrange(stream, count=1))
    return last[0][0] if last else "0-0"


def _outcomes(
    sent: Sequence[tuple[StressIntent, float]],
    rows: dict[str, Any],
    refused: dict[str, dict[str, str]],
    start: datetime,
) -> list[Outcome]:
    out = []
    for intent, sent_s in sent:
        row = rows.get(intent.signal_id)
        if row is not None:
            out.append(
                Outcome(
                    signal_id=intent.signal_id,
                    kind=intent.kind,
                    sent_s=sent_s,
                    status=row.status,
                    reason=row.reject_reason,
                    decided_s=_seconds_since(start, row.received_at),
                    first_fill_s=_seconds_since(start, row.first),
                )
            )
            continue
        entry = refused.get(intent.signal_id)
        if entry is not None:
            ts = datetime.fromisoformat(entry["ts"]) if entry.get("ts") else None
            out.append(
                Outcome(
                    signal_id=intent.signal_id,
                    kind=intent.kind,
                    sent_s=sent_s,
                    status="REFUSED",
                    reason=entry.get("reason"),
                    decided_s=_seconds_since(start, ts),
                )
            )
            continue
        out.append(
            Outcome(signal_id=intent.signal_id, kind=intent.kind, sent_s=sent_s, status=None)
        )
    return out


def run_stress(
    *,
    redis_client: redis.Redis,
    database_url: str,
    count: int,
    over_s: float,
    seed: int,
    run: str,
    wait_s: float,
    until_ended: bool,
    progress: Callable[[str], None] = lambda _m: None,
) -> StressRun:
    """Send the run's intents, then wait (up to `wait_s` after the last) for every outcome."""
    planned = build_intents(count, seed=seed, run=run)
    offsets = arrival_offsets(count, over_s)
    engine = make_engine(database_url)
    backlog = _Backlog(redis_client)
    reject_cursor = _last_entry_id(redis_client, REJECT_STREAM)
    start = datetime.now(UTC)
    t0 = time.monotonic()
    sent: list[tuple[StressIntent, float]] = []
    for intent, offset in zip(planned, offsets, strict=True):
        while (delay := t0 + offset - time.monotonic()) > 0:
            backlog.sample()
            time.sleep(min(delay, 0.05))
        redis_client.xadd(INTENT_STREAM, dict(intent.payload))  # type: ignore[arg-type]
        sent.append((intent, (datetime.now(UTC) - start).total_seconds()))
    progress(f"sent {len(sent)} intents in {time.monotonic() - t0:.1f} s; collecting outcomes")
    ids = [i.signal_id for i, _ in sent]
    deadline = time.monotonic() + wait_s
    while True:
        backlog.sample()
        rows = _rows(engine, ids)
        refused = _refusals(redis_client, reject_cursor, set(ids) - set(rows))
        outcomes = _outcomes(sent, rows, refused, start)
        pending = _pending(outcomes, until_ended=until_ended)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    result = report(outcomes, sent_ids=ids, max_backlog=backlog.max)
    return StressRun(run=run, report=result, outcomes=outcomes, started_at=start)


def _pending(outcomes: Iterable[Outcome], *, until_ended: bool) -> list[str]:
    return [
        o.signal_id
        for o in outcomes
        if o.status is None or (until_ended and o.status not in ENDED and o.status != "REFUSED")
    ]
