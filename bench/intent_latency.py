"""Intent latency (issue 11 bench): `XADD signals.exec.intent` → placeOrder bytes at the venue.

The system under test is the production shape: every `Procfile` line but `sim` runs as its own
process, started from its Procfile command line (`epm relay`, `epm worker -Q intake|orders|ledger|
pnl|recon`, `epm beat`, `epm bridge`, `epm flower`) against a fresh PostgreSQL database and a
leased Redis db number. The simulator runs in this process on its own thread (as in
`bench/bridge_latency.py`) so the venue's receive time is read on the venue's side: a wrapper
around the server's `dispatch` (the method every decoded client message goes through) records
when each placeOrder (message 3) arrives, before the venue books it. The bridge connects to it
over TCP like to a gateway.

Intents (strategy Momentum_EQ, urgency High → a sweep whose first IOC step is due at once, small
quantities of AAPL / NVDA / SPY, unique signal ids) are `XADD`ed as Poisson arrivals at `--rate`
per second; the latency of an intent is XADD → arrival at the venue of its first child's
placeOrder. Beat's scheduler tick (`EPM_ORDERS_TICK_S`) is what sends a due child, so each value
of `--ticks` is a phase of its own (beat restarted with it; the other processes keep running).

In each phase, with the stack up, the same floors as the bridge bench are measured: a Redis PING
and a bare Celery round trip (a no-op task on a worker of its own, `bench.bridge_noop_app`,
`.delay().get()`). Per intent the path is split by the timestamps the system keeps: the intake
task's start (`intents.received_at`), the plan task's start (the child's `created_at`), the tick
that priced the child (`details.priced_at`, the tick task's start), the placement's
`enqueued_at` on `ib:commands`, the venue's arrival. Task run times come from the workers' logs.

Run: `.venv/bin/python bench/intent_latency.py [--intents 500] [--rate 2] [--ticks 0.1,1.0]
[--profile-ticks 50] [--head-snapshot]` (results and their reading: BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.results import record  # noqa: E402

T = TypeVar("T")

SYMBOLS = ("AAPL", "NVDA", "SPY")
STRATEGY = "Momentum_EQ"
# Every status but VALIDATED and WORKING ends an intent's life (`models.intent.IntentStatus`).
ACTIVE = ("VALIDATED", "WORKING")
# Procfile lines not started as processes: the simulator runs in this process instead.
IN_PROCESS = {"sim"}
TASK_DONE = re.compile(
    r"^\[(?P<ts>[\d-]+ [\d:,]+): INFO/[^\]]+\] Task (?P<name>[\w.]+)\[[^\]]+\] "
    r"succeeded in (?P<secs>[\d.e-]+)s"
)
BEAT_SENT = re.compile(r"^\[(?P<ts>[\d-]+ [\d:,]+): INFO/[^\]]+\] Scheduler: Sending due task")


# ------------------------------------------------------------------------------------------------
# pure helpers


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the method of `bench/bridge_latency.py`)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stats(ms: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99, max and mean of a sample in milliseconds (empty: n = 0 only)."""
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": pct(ms, 0.5),
        "p95": pct(ms, 0.95),
        "p99": pct(ms, 0.99),
        "max": max(ms),
        "mean": statistics.fmean(ms),
    }


def row(name: str, ms: Sequence[float]) -> str:
    s = stats(ms)
    if not s["n"]:
        return f"| {name} | 0 | – | – | – | – | – |"
    return (
        f"| {name} | {s['n']:.0f} | {s['p50']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} | "
        f"{s['max']:.2f} | {s['mean']:.2f} |"
    )


def procfile_lines(text: str) -> dict[str, str]:
    """`name: command` lines of a Procfile, in order (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, command = line.split(":", 1)
        out[name.strip()] = command.strip()
    return out


def poisson_offsets(n: int, rate: float, seed: int) -> list[float]:
    """Send times (seconds from the start) of `n` Poisson arrivals at `rate` per second."""
    rng = random.Random(seed)
    t = 0.0
    out = []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


def intent_fields(signal_id: str, i: int) -> dict[str, str]:
    """The i-th intent: symbols in turn, BUY then SELL of the same 1–5 shares per symbol."""
    symbol = SYMBOLS[i % len(SYMBOLS)]
    side = "BUY" if (i // len(SYMBOLS)) % 2 == 0 else "SELL"
    quantity = 1 + (i // (2 * len(SYMBOLS))) % 5
    return {
        "signal_id": signal_id,
        "strategy": STRATEGY,
        "instrument": symbol,
        "side": side,
        "quantity": str(quantity),
        "urgency": "High",
        "time_in_force": "DAY",
        "max_slippage_bps": "25",
    }


def task_runtimes(lines: Sequence[str]) -> dict[str, list[float]]:
    """Task name → run times (ms) from Celery worker log lines ("Task X[id] succeeded in Ns")."""
    out: dict[str, list[float]] = {}
    for line in lines:
        m = TASK_DONE.match(line)
        if m:
            out.setdefault(m["name"], []).append(float(m["secs"]) * 1000)
    return out


def _ts(value: Any) -> float:
    """A timestamp (aware datetime or ISO text) as epoch seconds."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.timestamp()


# ------------------------------------------------------------------------------------------------
# processes


def wait(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def soft_wait(condition: Callable[[], object], timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


@dataclass
class Proc:
    name: str
    command: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    out: IO[bytes] | None = None

    def start(self, env: dict[str, str], cwd: Path) -> None:
        self.out = self.log.open("ab")
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {self.command}"],
            cwd=cwd,
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        from tests.integration.intake_procs import stop_process

        if self.proc is not None:
            stop_process(self.proc)
        if self.out is not None:
            self.out.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Stack:
    """The Procfile's processes (but `sim`), each started by its own command line."""

    env: dict[str, str]
    cwd: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def start(self, tick_s: float) -> None:
        lines = procfile_lines((REPO / "Procfile").read_text())
        for name, command in lines.items():
            if name in IN_PROCESS:
                continue
            proc = Proc(name, command, self.cwd / f"{name}.log")
            self.procs[name] = proc
            proc.start({**self.env, "EPM_ORDERS_TICK_S": str(tick_s)}, self.cwd)

    def restart(self, name: str, tick_s: float) -> None:
        proc = self.procs[name]
        proc.stop()
        for schedule in self.cwd.glob("celerybeat-schedule*"):  # beat's state: start afresh
            schedule.unlink()
        proc.start({**self.env, "EPM_ORDERS_TICK_S": str(tick_s)}, self.cwd)

    def check(self) -> None:
        dead = [p.name for p in self.procs.values() if not p.alive()]
        if dead:
            tails = {n: self.procs[n].log.read_text(errors="replace")[-2000:] for n in dead}
            raise SystemExit(f"processes exited: {dead}\n{tails}")

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def log_sizes(self) -> dict[str, int]:
        return {n: p.log.stat().st_size if p.log.exists() else 0 for n, p in self.procs.items()}

    def log_since(self, name: str, offset: int) -> list[str]:
        with self.procs[name].log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace").splitlines()


@contextmanager
def running_stack(env: dict[str, str], cwd: Path, tick_s: float) -> Iterator[Stack]:
    stack = Stack(env, cwd)
    try:
        stack.start(tick_s)
        yield stack
    finally:
        stack.stop()


# ------------------------------------------------------------------------------------------------
# measurement


@dataclass
class Phase:
    tick_s: float
    redis_ping: list[float]
    celery_rt: list[float]
    latency: list[float] = field(default_factory=list)
    # Following a 103-refused first placement to its re-placement under a fresh id.
    accepted: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, list[float]] = field(default_factory=dict)
    beat_interval: list[float] = field(default_factory=list)
    slowest: list[str] = field(default_factory=list)


def send_intents(r: redis.Redis, n: int, rate: float, seed: int, tag: str) -> dict[str, float]:
    """XADD `n` intents at Poisson times; signal_id → time.time() just before its XADD."""
    from epm.streams import INTENT_STREAM

    sent: dict[str, float] = {}
    offsets = poisson_offsets(n, rate, seed)
    start = time.monotonic() + 0.5
    for i, offset in enumerate(offsets):
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        signal_id = f"{tag}-{i:05d}"
        t = time.time()
        r.xadd(INTENT_STREAM, intent_fields(signal_id, i))  # type: ignore[arg-type]
        sent[signal_id] = t
    return sent


def placements(r: redis.Redis) -> dict[int, float]:
    """ib_order_id → `enqueued_at` of every placement on `ib:commands` (first copy)."""
    out: dict[int, float] = {}
    last = "-"
    while True:
        entries = r.xrange("ib:commands", min=last, max="+", count=2000)
        if last != "-":
            entries = entries[1:]
        if not entries:
            return out
        for entry_id, fields in entries:
            if fields.get("type") == "place":
                body = json.loads(fields["body"])
                oid = int(body.get("ib_order_id") or body["order_id"])
                out.setdefault(oid, _ts(fields["enqueued_at"]))
            last = entry_id


def replaced_links(r: redis.Redis, client_id: int = 1) -> dict[int, int]:
    """old IB order id → the id the bridge re-placed it under (after a 103 from the venue)."""
    out: dict[int, int] = {}
    for key in r.scan_iter(f"ib:replaced:{client_id}:*", count=1000):
        out[int(key.rsplit(":", 1)[1])] = int(str(r.get(key) or "0").split("|", 1)[0])
    return out


def ids_sent_for(current: int, links: dict[int, int]) -> list[int]:
    """Every IB order id a child went out under, oldest first: the ledger row holds the latest
    (`record_order_replaced` moves it), `links` lead from each refused id to its successor."""
    back = {new: old for old, new in links.items()}
    chain = [current]
    while chain[-1] in back and back[chain[-1]] not in chain:
        chain.append(back[chain[-1]])
    return chain[::-1]


def intent_rows(engine: sa.Engine, tag: str, *, exact: bool = False) -> list[Any]:
    """The intents of this tag (or the one signal id, `exact`) with their children."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT i.signal_id, i.status, i.received_at, o.client_order_id,"
                    " o.ib_order_id, o.created_at, o.details"
                    " FROM intents i LEFT JOIN execution_orders o ON o.intent_id = i.id"
                    " WHERE i.signal_id LIKE :tag ORDER BY i.signal_id, o.id"
                ),
                {"tag": tag if exact else f"{tag}-%"},
            )
        )


def rejected_signals(r: redis.Redis, tag: str) -> dict[str, str]:
    from epm.streams import read_rejects

    return {
        e["signal_id"]: e["reason"]
        for e in read_rejects(r, count=100_000)
        if e["signal_id"].startswith(f"{tag}-")
    }


def run_phase(
    *,
    stack: Stack,
    r: redis.Redis,
    engine: sa.Engine,
    arrivals: dict[int, float],
    redis_url: str,
    tick_s: float,
    n: int,
    rate: float,
    seed: int,
    celery_n: int,
    log_dir: Path,
) -> Phase:
    from bench.bridge_latency import bench_celery, bench_redis

    time.sleep(3)  # beat's first ticks at the new period
    stack.check()
    ping = [s * 1000 for s in bench_redis(r, 2000)]
    celery_rt = [s * 1000 for s in bench_celery(redis_url, celery_n, log_dir, stack.env)]
    phase = Phase(tick_s, ping, celery_rt)
    tag = f"lat{str(tick_s).replace('.', 'p')}-{uuid.uuid4().hex[:6]}"
    offsets = stack.log_sizes()
    base = len(arrivals)
    sent = send_intents(r, n, rate, seed, tag)
    first_sent, last_sent = min(sent.values()), max(sent.values())
    # In memory only while intents are in flight: no extra queries on the system under test.
    # Both waits are soft: what did not arrive or settle is counted, not fatal.
    soft_wait(lambda: len(arrivals) - base >= n, 30 + 2 * tick_s, 0.2)

    def settled() -> bool:
        rows = intent_rows(engine, tag)
        return len({x.signal_id for x in rows}) >= n and all(x.status not in ACTIVE for x in rows)

    soft_wait(settled, 60, 0.5)
    stack.check()
    rows = intent_rows(engine, tag)
    enqueued = placements(r)
    rejects = rejected_signals(r, tag)
    links = replaced_links(r)
    refused_first = 0
    by_signal: dict[str, list[Any]] = {}
    for rec in rows:
        by_signal.setdefault(rec.signal_id, []).append(rec)
    statuses: dict[str, int] = {}
    children_sent = 0
    stages: dict[str, list[float]] = {
        k: [] for k in ("xadd→intake", "intake→plan", "plan→tick", "tick→enqueue", "enqueue→venue")
    }
    slow: list[tuple[float, str]] = []
    for signal_id, t_xadd in sent.items():
        recs = by_signal.get(signal_id, [])
        if not recs:
            continue
        statuses[recs[0].status] = statuses.get(recs[0].status, 0) + 1
        sent_ids = {
            c.client_order_id: [i for i in ids_sent_for(c.ib_order_id, links) if i in arrivals]
            for c in recs
            if c.ib_order_id is not None
        }
        at_venue = [c for c in recs if sent_ids.get(c.client_order_id)]
        children_sent += len(at_venue)
        if not at_venue:
            continue
        first = min(at_venue, key=lambda c: arrivals[sent_ids[c.client_order_id][0]])
        first_id = sent_ids[first.client_order_id][0]
        t_venue = arrivals[first_id]
        total = (t_venue - t_xadd) * 1000
        phase.latency.append(total)
        if first.ib_order_id in arrivals:
            phase.accepted.append((arrivals[first.ib_order_id] - t_xadd) * 1000)
        refused_first += first_id != first.ib_order_id
        priced = (first.details or {}).get("priced_at")
        marks = [
            t_xadd,
            _ts(recs[0].received_at),
            _ts(first.created_at),
            _ts(priced) if priced else None,
            enqueued.get(first_id),
            t_venue,
        ]
        if None not in marks:
            gaps = [(b - a) * 1000 for a, b in pairwise(marks)]  # type: ignore[operator]
            for values, gap in zip(stages.values(), gaps, strict=True):
                values.append(gap)
            parts = ", ".join(f"{k} {g:.1f}" for k, g in zip(stages, gaps, strict=True))
            slow.append((total, f"{signal_id} {first.client_order_id}: {total:.1f} ms = {parts}"))
    phase.stages = stages
    phase.slowest = [text for _t, text in sorted(slow, reverse=True)[:5]]
    phase.counts = {
        "intents sent": n,
        "intents stored": len(by_signal),
        "refused at intake": len(rejects),
        "first child at venue": len(phase.latency),
        "children at venue": children_sent,
        "first placement refused 103 and re-placed": refused_first,
        **{f"intent {k}": v for k, v in sorted(statuses.items())},
    }
    for name in ("intake", "orders", "ledger"):
        for task, times in task_runtimes(stack.log_since(name, offsets[name])).items():
            phase.tasks[task] = times
    beat = [
        datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for line in stack.log_since("beat", offsets["beat"])
        if (m := BEAT_SENT.match(line))
    ]
    window = [t for t in beat if first_sent <= t <= last_sent]
    phase.beat_interval = [(b - a) * 1000 for a, b in pairwise(window)]
    return phase


def warm_up(r: redis.Redis, engine: sa.Engine, stack: Stack) -> None:
    """One intent per symbol, traded to its end: every process is up, contracts are cached and
    market data subscribed before anything is measured."""
    from epm.streams import INTENT_STREAM

    tag = f"warm-{uuid.uuid4().hex[:6]}"
    for i, _symbol in enumerate(SYMBOLS):
        r.xadd(INTENT_STREAM, intent_fields(f"{tag}-{i:05d}", i))  # type: ignore[arg-type]

    def settled() -> bool:
        stack.check()
        rows = intent_rows(engine, tag)
        return len({x.signal_id for x in rows}) == len(SYMBOLS) and all(
            x.status not in ACTIVE for x in rows
        )

    wait(settled, 120, "warm-up intents settled", 0.5)
    statuses = {x.signal_id: x.status for x in intent_rows(engine, tag)}
    if set(statuses.values()) != {"COMPLETED"}:
        raise SystemExit(f"warm-up intents did not trade: {statuses}")


def normalize_sql(statement: str, width: int = 110) -> str:
    """One line of a statement, for grouping: whitespace collapsed, the column list of a SELECT
    elided, cut at `width`."""
    text = " ".join(statement.split())
    text = re.sub(r"^SELECT (.+?) FROM ", "SELECT … FROM ", text)
    return text[:width]


@dataclass
class TickProfile:
    total: list[float] = field(default_factory=list)
    sql: list[float] = field(default_factory=list)
    sql_count: list[int] = field(default_factory=list)
    commits: list[int] = field(default_factory=list)
    redis: list[float] = field(default_factory=list)
    redis_count: list[int] = field(default_factory=list)
    to_enqueue: list[float] = field(default_factory=list)
    # statement → [ms summed per tick], [executions per tick]
    by_statement: dict[str, list[list[float]]] = field(default_factory=dict)
    functions: list[str] = field(default_factory=list)
    # "module:function" of the tick's parts → ms per tick (inclusive; nested parts overlap)
    parts: dict[str, list[float]] = field(default_factory=dict)


# The tick's parts timed one by one (wrapped where the caller looks them up, only if present).
TICK_PARTS = (
    ("tasks.orders", "send_due"),
    ("tasks.orders", "reprice_pegged"),
    ("services.orders.send_due", "settle_intents"),
    ("services.orders.send_due", "wind_down"),
    ("store.orders", "claim_due"),
    ("services.orders.send_due", "_decide"),
    ("services.orders.send_due", "apply_order_event"),
)


def profile_ticks(k: int) -> TickProfile:
    """Run in a child process of its own (no simulator thread sharing its GIL), with beat
    stopped: `k` intents one at a time, each sent by one scheduler tick run here
    (`tasks.orders.scheduler_tick.apply()`: the task's own code on this run's stores, as an
    `orders` worker process runs it), every SQL statement and Redis command timed; then `k`
    more ticks under cProfile. The stores come from the EPM_* environment."""
    import cProfile
    import io
    import pstats

    os.environ.setdefault("EPM_LOG_LEVEL", "WARNING")
    from epm.streams import INTENT_STREAM
    from ibgateway_bridge import client_api
    from tasks.orders import scheduler_tick

    r = redis.Redis.from_url(os.environ["EPM_REDIS_URL"], decode_responses=True)
    engine = sa.create_engine(os.environ["EPM_DATABASE_URL"])
    recording = {"on": False}
    sql_log: list[tuple[str, float]] = []
    redis_log: list[float] = []
    commits = [0]
    enqueued: list[tuple[float, int]] = []

    def before(conn: Any, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def after(conn: Any, _cursor: Any, stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        if recording["on"]:
            sql_log.append((normalize_sql(stmt), time.perf_counter() - conn.info["bench_t0"]))

    def on_commit(_conn: Any) -> None:
        if recording["on"]:
            commits[0] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", before)
    sa.event.listen(sa.engine.Engine, "after_cursor_execute", after)
    sa.event.listen(sa.engine.Engine, "commit", on_commit)
    original_execute = redis.Redis.execute_command
    original_enqueue = client_api.enqueue_place

    def timed_execute(self: redis.Redis, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original_execute(self, *args, **kwargs)
        finally:
            if recording["on"]:
                redis_log.append(time.perf_counter() - t)

    def timed_enqueue(ib_order_id: int, *args: Any, **kwargs: Any) -> Any:
        enqueued.append((time.perf_counter(), ib_order_id))
        return original_enqueue(ib_order_id, *args, **kwargs)

    redis.Redis.execute_command = timed_execute  # type: ignore[method-assign]
    client_api.enqueue_place = timed_enqueue  # type: ignore[assignment]
    import importlib

    part_ms: dict[str, float] = {}
    restore: list[tuple[Any, str, Any]] = []

    def timed_part(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                part_ms[name] = part_ms.get(name, 0.0) + (time.perf_counter() - t) * 1000

        return run

    for module_name, attr in TICK_PARTS:
        module = importlib.import_module(module_name)
        if hasattr(module, attr):
            restore.append((module, attr, getattr(module, attr)))
            setattr(module, attr, timed_part(f"{module_name}:{attr}", getattr(module, attr)))
    out = TickProfile()
    profiler = cProfile.Profile()
    tag = f"tick-{uuid.uuid4().hex[:6]}"

    def one(i: int, profiled: bool) -> None:
        signal_id = f"{tag}-{i:05d}"
        r.xadd(INTENT_STREAM, intent_fields(signal_id, i))  # type: ignore[arg-type]
        wait(
            lambda: any(
                x.client_order_id and x.ib_order_id is None
                for x in intent_rows(engine, signal_id, exact=True)
            ),
            30,
            "intent planned",
            0.01,
        )
        sql_log.clear()
        redis_log.clear()
        enqueued.clear()
        part_ms.clear()
        commits[0] = 0
        recording["on"] = True
        t = time.perf_counter()
        if profiled:
            profiler.enable()
        scheduler_tick.apply()
        if profiled:
            profiler.disable()
        total = time.perf_counter() - t
        recording["on"] = False
        for _t, oid in enqueued:  # the bytes left the bridge (its marker), before the next tick
            soft_wait(lambda o=oid: str(r.get(f"ib:sent:1:{o}") or "").startswith("sent"), 5, 0.005)
        if not profiled and i >= 3:  # the first ticks warm this process's pools
            out.total.append(total * 1000)
            out.sql.append(sum(d for _s, d in sql_log) * 1000)
            out.sql_count.append(len(sql_log))
            out.commits.append(commits[0])
            out.redis.append(sum(redis_log) * 1000)
            out.redis_count.append(len(redis_log))
            if enqueued:
                out.to_enqueue.append((enqueued[0][0] - t) * 1000)
            for name, ms in part_ms.items():
                out.parts.setdefault(name, []).append(ms)
            per_tick: dict[str, list[float]] = {}
            for stmt, d in sql_log:
                acc = per_tick.setdefault(stmt, [0.0, 0.0])
                acc[0] += d * 1000
                acc[1] += 1
            for stmt, (ms, count) in per_tick.items():
                entry = out.by_statement.setdefault(stmt, [[], []])
                entry[0].append(ms)
                entry[1].append(count)
        time.sleep(0.2)  # the fills flow to the ledger, as between production ticks

    try:
        for i in range(k + 3):
            one(i, profiled=False)
        for i in range(k + 3, 2 * k + 3):
            one(i, profiled=True)
    finally:
        redis.Redis.execute_command = original_execute  # type: ignore[method-assign]
        client_api.enqueue_place = original_enqueue  # type: ignore[assignment]
        for module, attr, original in restore:
            setattr(module, attr, original)
        engine.dispose()
    buf = io.StringIO()
    stats_ = pstats.Stats(profiler, stream=buf)
    stats_.sort_stats("cumulative").print_stats(r"(services|store|tasks|models|client_api)", 40)
    out.functions = [
        line for line in buf.getvalue().splitlines() if re.match(r"\s*\d", line) and "/" in line
    ]
    return out


def run_tick_profile(stack: Stack, k: int) -> TickProfile:
    """`profile_ticks` in a child process on the stack's environment, with beat stopped."""
    from dataclasses import asdict

    stack.procs["beat"].stop()
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--tick-profile-child", str(k)],
        cwd=REPO,
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise SystemExit(f"tick profile failed: {result.stderr[-3000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(data) == set(asdict(TickProfile()))
    return TickProfile(**data)


def print_profile(p: TickProfile, k: int) -> None:
    print(f"\n## one scheduler tick, in process, one due child each (beat stopped), n={k}")
    print("| measurement | n | p50 ms | p95 ms | p99 ms | max ms | mean ms |")
    print("|---|---|---|---|---|---|---|")
    print(row("tick run (scheduler_tick.apply())", p.total))
    print(row("  tick start → enqueue_place", p.to_enqueue))
    print(row("  SQL statements (sum per tick)", p.sql))
    print(row("  Redis commands (sum per tick)", p.redis))
    other = [t - s - q for t, s, q in zip(p.total, p.sql, p.redis, strict=True)]
    print(row("  the rest (Python, commits, pool)", other))
    if p.sql_count:
        print(
            f"per tick: {statistics.median(p.sql_count):.0f} SQL statements, "
            f"{statistics.median(p.commits):.0f} commits, "
            f"{statistics.median(p.redis_count):.0f} Redis commands (medians)"
        )
    for name, values in p.parts.items():
        print(row(f"  {name} (inclusive)", values))
    top = sorted(p.by_statement.items(), key=lambda kv: -sum(kv[1][0]))[:14]
    print("| statement | in ticks | executions per tick (median) | ms per tick (median) |")
    print("|---|---|---|---|")
    for stmt, (ms, counts) in top:
        print(
            f"| `{stmt}` | {len(ms)} | {statistics.median(counts):.0f} | "
            f"{statistics.median(ms):.2f} |"
        )
    print("cProfile (cumulative, same kind of ticks):")
    for line in p.functions[:30]:
        print("  " + line)


def print_phase(phase: Phase, rate: float) -> None:
    print(f"\n## EPM_ORDERS_TICK_S={phase.tick_s} (intents at {rate}/s, Poisson)")
    print("| measurement | n | p50 ms | p95 ms | p99 ms | max ms | mean ms |")
    print("|---|---|---|---|---|---|---|")
    print(row("Redis PING round trip", phase.redis_ping))
    print(row("Celery no-op task round trip", phase.celery_rt))
    print(row("XADD signals.exec.intent → placeOrder at venue", phase.latency))
    print(row("  … → the placement the venue accepted", phase.accepted))
    for name, values in phase.stages.items():
        print(row(f"  stage {name}", values))
    for task, values in sorted(phase.tasks.items()):
        print(row(f"  run time {task}", values))
    print(row("  beat: interval between ticks sent", phase.beat_interval))
    print("counts: " + ", ".join(f"{k} {v}" for k, v in phase.counts.items()))
    if phase.latency and phase.celery_rt:
        p50 = pct(phase.latency, 0.5)
        bare = pct(phase.celery_rt, 0.5)
        p99 = pct(phase.latency, 0.99)
        print(
            f"aim: p50 ≤ 3× bare round trip ({3 * bare:.2f} ms): p50 {p50:.2f} ms = "
            f"{p50 / bare:.1f}×; p99 ≤ 15 ms: p99 {p99:.2f} ms"
        )
        label = f"XADD intent → placeOrder at venue (tick {phase.tick_s} s)"
        ref = "Celery no-op round trip p50"
        n = len(phase.latency)
        record("intent_latency", f"{label}, p50", p50, "ms", n=n, reference=bare,
               reference_label=ref, aim=3 * bare)  # fmt: skip
        record("intent_latency", f"{label}, p99", p99, "ms", n=n, reference=bare,
               reference_label=ref, aim=15.0)  # fmt: skip
    print("slowest: " + "; ".join(phase.slowest))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--intents", type=int, default=500, help="intents per phase")
    parser.add_argument("--rate", type=float, default=2.0, help="intents per second (Poisson)")
    parser.add_argument(
        "--ticks", default="0.1,1.0", help="EPM_ORDERS_TICK_S of each phase (comma-separated)"
    )
    parser.add_argument("--celery", type=int, default=200, help="bare Celery round trips")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--profile-ticks",
        type=int,
        default=0,
        help="after the phases: time N in-process scheduler ticks statement by statement",
    )
    parser.add_argument(
        "--head-snapshot",
        action="store_true",
        help="run on a clean export of git HEAD (this script copied in), not the working tree",
    )
    parser.add_argument("--tick-profile-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.head_snapshot:
        sys.exit(run_on_head_snapshot([a for a in sys.argv[1:] if a != "--head-snapshot"]))
    if args.tick_profile_child:
        from dataclasses import asdict

        print(json.dumps(asdict(profile_ticks(args.tick_profile_child))))
        return
    ticks = [float(t) for t in args.ticks.split(",")]

    from store.migrate import upgrade
    from tests.bridge.harness import sim_thread, wait_ready
    from tests.integration.intake_procs import process_env
    from tests.services import postgres_database, redis_database

    log_dir = Path(tempfile.mkdtemp(prefix="bench-intent-"))
    print(f"logs: {log_dir}; code: {_revision()}")
    phases: list[Phase] = []
    with redis_database() as redis_url, postgres_database() as db_url, sim_thread() as sim:
        upgrade(db_url)
        arrivals: dict[int, float] = {}

        def hook(server: Any) -> None:
            original = server.dispatch

            def timed(session: Any, fields: list[str]) -> None:
                if fields and fields[0] == "3":  # placeOrder; v157 has no version field
                    arrivals.setdefault(int(fields[1]), time.time())
                original(session, fields)

            server.dispatch = timed

        sim.call(hook)
        env = process_env(
            EPM_REDIS_URL=redis_url,
            EPM_DATABASE_URL=db_url,
            EPM_DATA_DIR=str(log_dir / "epm-data"),
            EPM_IB_PORT=str(sim.port),
            EPM_FLOWER_PORT=str(_free_port()),
            EPM_FLOWER_BASIC_AUTH=f"ops:{uuid.uuid4().hex}",  # epm flower refuses to run open
            EPM_MAX_ACTIVE_INTENTS=json.dumps({STRATEGY: 100_000}),
        )
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        engine = sa.create_engine(db_url)
        try:
            with running_stack(env, log_dir, ticks[0]) as stack:
                wait_ready(r, 90)
                warm_up(r, engine, stack)
                for k, tick in enumerate(ticks):
                    if k:
                        stack.restart("beat", tick)
                    phases.append(
                        run_phase(
                            stack=stack,
                            r=r,
                            engine=engine,
                            arrivals=arrivals,
                            redis_url=redis_url,
                            tick_s=tick,
                            n=args.intents,
                            rate=args.rate,
                            seed=args.seed + k,
                            celery_n=args.celery,
                            log_dir=log_dir,
                        )
                    )
                    print_phase(phases[-1], args.rate)
                    sys.stdout.flush()
                if args.profile_ticks:
                    prof = run_tick_profile(stack, args.profile_ticks)
                    print_profile(prof, args.profile_ticks)
        finally:
            engine.dispose()
            r.close()
    print(f"\ndate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}")
    print(f"uname: {' '.join(platform.uname())}")
    print(f"load avg: {os.getloadavg()}; python {platform.python_version()}")
    print(f"processes: {', '.join(shlex.quote(p) for p in _started())}")


def _git(*argv: str) -> str:
    return subprocess.run(
        ["git", *argv], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()


def _revision() -> str:
    if "EPM_BENCH_REVISION" in os.environ:
        return os.environ["EPM_BENCH_REVISION"]
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return _git("rev-parse", "--short", "HEAD") + (" (+ uncommitted changes)" if dirty else "")


def run_on_head_snapshot(argv: list[str]) -> int:
    """`git archive HEAD` into a temporary directory, this script copied in, run from there:
    every process then imports the committed code (PYTHONPATH is the snapshot), whatever is
    being edited in the working tree meanwhile."""
    import shutil

    head = _git("rev-parse", "--short", "HEAD")
    snap = Path(tempfile.mkdtemp(prefix=f"epm-head-{head}-"))
    try:
        archive = subprocess.run(
            ["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(snap)], input=archive, check=True)
        shutil.copy2(Path(__file__).resolve(), snap / "bench" / Path(__file__).name)
        env = {**os.environ, "EPM_BENCH_REVISION": f"{head} (clean export of HEAD)"}
        script = snap / "bench" / Path(__file__).name
        return subprocess.run([sys.executable, str(script), *argv], cwd=snap, env=env).returncode
    finally:
        shutil.rmtree(snap, ignore_errors=True)


def _started() -> list[str]:
    lines = procfile_lines((REPO / "Procfile").read_text())
    return [f"{n}: {c}" for n, c in lines.items() if n not in IN_PROCESS]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
