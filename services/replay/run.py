"""Use case: one replay run — recorded market events and intents through the real pipeline on a
stepped clock, into a fresh ledger, out as the extracts.

The clock is the data's: every service is given the instant of the event (or intent, or
scheduler tick) being processed as `now`, and the session clock is the identity
(`WALL_CLOCK`: in a replay "wall" time *is* the recorded time). In time order:

- an intent whose `at` has come goes through intake (`services.intake.process_submission`:
  validation, risk gates, admission), is planned by its playbook (`plan_admitted`) and its
  first children sent (`send_due(intent_id=…)`), as the orders task does;
- every recorded second while an intent is working, the scheduler tick runs (`send_due`:
  settle, hold/skip/send; `reprice_pegged`), as beat does;
- each market event steps the replay venue (`services.replay.venue`), whose fills reach the
  ledger as the bridge's callbacks (`services.ledger.process_callback`).

At the end the books are marked at the last quotes (`services.books.marks.mark_books`) and the
extracts written (`services.extracts`). Nothing reads the wall clock or a random source, the
ledger is new, and ids come from counters that start at the same value: the same input gives
byte-identical extracts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import redis
from sqlalchemy.engine import Engine

from models.intent import IntentStatus
from models.market import MarketSnapshot
from models.replay.events import MarketEvent
from models.replay.params import Override, apply_overrides
from services.books.marks import mark_books
from services.extracts import FORMATS, write_extracts_from
from services.intake import process_submission
from services.ledger.callbacks import BatchNotRecorded, process_batch, process_callback
from services.orders.plan_intent import plan_admitted
from services.orders.reprice import reprice_pegged
from services.orders.send_due import send_due
from services.orders.venue import Venue
from services.replay.venue import ReplayVenue
from store import intent_life
from store import replay as replay_queries
from store.db import make_engine
from store.migrate import upgrade

TICK = timedelta(seconds=1)
ACTIVE = [IntentStatus.VALIDATED.value, IntentStatus.WORKING.value]


class SteppedVenue(Venue, Protocol):
    """A venue the runner steps: the replay venue, or the simulator's engine in-process
    (`epm/sim_venue.py`, the drill's)."""

    client_id: int
    now: datetime
    placed: int
    fills: int
    callbacks: list[tuple[str, dict[str, Any]]]

    def on_event(self, event: MarketEvent) -> None: ...

    def live_orders(self) -> int: ...

    def drain(self) -> list[tuple[str, dict[str, Any]]]: ...


class ReplayInputError(ValueError):
    """The replay's input cannot be run (no events, an intent without a time, …)."""


@dataclass(frozen=True, slots=True)
class TimedIntent:
    """A recorded intent and when it is submitted."""

    at: datetime
    payload: Mapping[str, Any]


@dataclass
class ReplayResult:
    out_dir: Path
    ledger_url: str
    paths: list[Path]
    events: int = 0
    intents: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    orders: int = 0
    fills: int = 0
    ticks: int = 0
    unsubmitted: int = 0
    first: datetime | None = None
    last: datetime | None = None

    @property
    def session_seconds(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return (self.last - self.first).total_seconds()


def timed_intents(lines: Iterable[Mapping[str, Any]]) -> list[TimedIntent]:
    """Recorded intents (`at`: ISO time with offset when it was submitted, else its
    `created_at`), in submission order."""
    out: list[TimedIntent] = []
    for n, raw in enumerate(lines, start=1):
        when = raw.get("at") or raw.get("created_at")
        if not when:
            raise ReplayInputError(f"intent {n}: needs `at` (or `created_at`): when to submit it")
        try:
            at = datetime.fromisoformat(str(when))
        except ValueError:
            raise ReplayInputError(f"intent {n}: `at` is not an ISO-8601 time: {when!r}") from None
        if at.tzinfo is None:
            raise ReplayInputError(f"intent {n}: `at` {when!r} has no UTC offset")
        out.append(TimedIntent(at, {k: v for k, v in raw.items() if k != "at"}))
    return sorted(out, key=lambda t: t.at)


class _Runner:
    def __init__(
        self,
        engine: Engine,
        venue: SteppedVenue,
        redis_client: redis.Redis,
        max_active: Callable[[str], int],
    ) -> None:
        self.engine = engine
        self.venue = venue
        self.redis = redis_client
        self.max_active = max_active
        self.next_tick: datetime | None = None
        self.ticks = 0
        self.outcomes: dict[str, int] = {}

    def deliver(self, now: datetime) -> None:
        """The venue's callbacks as one batch (the outbox's shape), one by one if refused."""
        items = self.venue.drain()
        if not items:
            return
        try:
            process_batch(items, engine=self.engine, redis_client=None, now=now)
        except BatchNotRecorded:
            for kind, payload in items:
                process_callback(kind, payload, engine=self.engine, redis_client=None, now=now)

    def submit(self, intent: TimedIntent) -> None:
        now = intent.at
        self.venue.now = now
        outcome = process_submission(
            dict(intent.payload),
            engine=self.engine,
            redis_client=self.redis,
            now=now,
            max_active=self.max_active,
        )
        status = str(outcome["status"])
        self.outcomes[status] = self.outcomes.get(status, 0) + 1
        if status != IntentStatus.VALIDATED.value or outcome.get("duplicate"):
            return
        intent_id = int(outcome["intent_id"])
        planned = plan_admitted(
            self.engine, self.venue, intent_id, client_id=self.venue.client_id, now=now
        )
        if planned.outcome == "planned":
            send_due(self.engine, self.venue, now, intent_id=intent_id)
        self.deliver(now)
        self.schedule(now)

    def tick(self, now: datetime) -> None:
        self.ticks += 1
        self.venue.now = now
        send_due(self.engine, self.venue, now)
        self.deliver(now)
        if self.venue.live_orders():
            # Only a resting order can be a peg to re-price.
            reprice_pegged(self.engine, self.venue, now)
            self.deliver(now)
        self.schedule(now)

    def schedule(self, now: datetime) -> None:
        """When beat's tick next has something to do: each second while an order rests at the
        venue (pegs re-price, fills settle) or an intent is working; else at the next child's
        due time; else not until the next intent."""
        soon = now + TICK
        if self.venue.live_orders():
            self.next_tick = soon
            return
        with self.engine.connect() as conn:
            due = replay_queries.next_due(conn)
            if due is not None:
                self.next_tick = max(due, soon)
                return
            active = bool(intent_life.with_status(conn, ACTIVE, limit=1))
        self.next_tick = soon if active else None

    def filled(self, now: datetime) -> None:
        """Fills just came in: settle them at the next second (completion, slippage)."""
        soon = now + TICK
        if self.next_tick is None or self.next_tick > soon:
            self.next_tick = soon


def run_replay(
    events: Iterable[MarketEvent],
    intents: Sequence[TimedIntent],
    contracts: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    redis_client: redis.Redis,
    client_id: int,
    overrides: Sequence[Override] = (),
    formats: Sequence[str] = FORMATS,
    max_active: Callable[[str], int] = lambda _strategy: 1_000,
    venue: SteppedVenue | None = None,
) -> ReplayResult:
    """Replay `events` (time-ordered) with `intents` over `contracts` (ContractReport fields)
    into a fresh ledger `out_dir/ledger.db`; the extracts go to `out_dir`. The venue is the
    replay venue over `events` unless another is given (it then steps on the same events)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    db = out_dir / "ledger.db"
    for stale in (db, db.with_name("ledger.db-wal"), db.with_name("ledger.db-shm")):
        stale.unlink(missing_ok=True)
    url = f"sqlite:///{db.resolve()}"
    upgrade(url)
    engine = make_engine(url)
    con_ids = {str(c["symbol"]).upper(): int(c["con_id"]) for c in contracts}
    if venue is None:
        venue = ReplayVenue(con_ids, client_id)
    runner = _Runner(engine, venue, redis_client, max_active)
    pending = [TimedIntent(i.at, apply_overrides(i.payload, overrides)) for i in intents]
    result = ReplayResult(out_dir, url, [], intents=len(pending))
    queue = list(reversed(pending))
    for event in events:
        if result.first is None:
            result.first = event.ts
            for contract in contracts:
                process_callback(
                    "contract",
                    {**contract, "received_at": event.ts.isoformat()},
                    engine=engine,
                    redis_client=None,
                    now=event.ts,
                )
        while True:
            due_intent = queue[-1].at if queue else None
            due_tick = runner.next_tick
            when = min((t for t in (due_intent, due_tick) if t is not None), default=None)
            if when is None or when > event.ts:
                break
            if due_intent is not None and due_intent == when:
                runner.submit(queue.pop())
            else:
                runner.tick(when)
        venue.on_event(event)
        result.events += 1
        result.last = event.ts
        if venue.callbacks:
            runner.deliver(event.ts)
            runner.filled(event.ts)
    if result.last is None:
        raise ReplayInputError("the market data holds no events")
    if runner.next_tick is not None:
        runner.tick(result.last)
    result.unsubmitted = len(queue)
    latest = {con_id: venue.market(con_id) for con_id in con_ids.values()}

    def snapshot(con_id: int) -> MarketSnapshot | None:
        fields = latest.get(con_id)
        return MarketSnapshot.from_fields(con_id, fields) if fields else None

    mark_books(engine, snapshot, {}, None, result.last)
    with engine.connect() as conn:
        result.paths = write_extracts_from(conn, out_dir, formats=formats)
    engine.dispose()
    result.outcomes = dict(sorted(runner.outcomes.items()))
    result.orders, result.fills, result.ticks = venue.placed, venue.fills, runner.ticks
    return result
