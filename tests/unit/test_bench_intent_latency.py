"""The pure helpers of `bench/intent_latency.py`: what it reads from logs, the Procfile, the
bridge's replacement links and the ledger, and how it summarises."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from bench.intent_latency import (
    ids_sent_for,
    intent_fields,
    normalize_sql,
    pct,
    poisson_offsets,
    procfile_lines,
    stats,
    task_runtimes,
)

REPO = Path(__file__).resolve().parents[2]


def test_procfile_lines_are_the_production_shape() -> None:
    lines = procfile_lines((REPO / "Procfile").read_text())
    assert {"sim", "bridge", "relay", "beat"} <= set(lines)
    assert lines["relay"] == "epm relay"
    assert procfile_lines("# comment\n\nweb: run it: now\n") == {"web": "run it: now"}


def test_ids_sent_for_follows_replacements_back_to_the_first_id() -> None:
    # 15 refused (103) and re-placed as 18, 18 refused again and re-placed as 21.
    assert ids_sent_for(21, {15: 18, 18: 21}) == [15, 18, 21]
    assert ids_sent_for(7, {15: 18}) == [7]
    assert ids_sent_for(2, {1: 2, 2: 1}) == [1, 2]  # a loop ends


def test_task_runtimes_from_celery_worker_log_lines() -> None:
    lines = [
        "[2026-12-03 18:50:53,732: INFO/ForkPoolWorker-1] Task tasks.intake.submit_intent"
        "[relay:signals.exec.intent:1796323849209-0] succeeded in 0.029096972000388632s: {}",
        "[2026-12-03 18:50:53,733: INFO/MainProcess] Task tasks.orders.scheduler_tick[x] received",
        "[2026-12-03 18:50:53,890: INFO/ForkPoolWorker-2] Task tasks.orders.scheduler_tick"
        "[04f95055] succeeded in 0.5s: {'sent': []}",
    ]
    out = task_runtimes(lines)
    assert set(out) == {"tasks.intake.submit_intent", "tasks.orders.scheduler_tick"}
    assert round(out["tasks.intake.submit_intent"][0], 3) == 29.097
    assert out["tasks.orders.scheduler_tick"] == [500.0]


def test_percentiles_and_summary() -> None:
    values = [float(v) for v in range(1, 101)]
    assert pct(values, 0.5) == 51.0  # nearest rank, as bench/bridge_latency.py
    assert pct(values, 0.99) == 99.0
    s = stats(values)
    assert (s["n"], s["max"], s["mean"]) == (100, 100.0, 50.5)
    assert stats([]) == {"n": 0}


def test_intents_are_unique_small_and_alternate_sides() -> None:
    fields = [intent_fields(f"s-{i}", i) for i in range(12)]
    assert len({f["signal_id"] for f in fields}) == 12
    assert {f["instrument"] for f in fields} == {"AAPL", "NVDA", "SPY"}
    assert [f["side"] for f in fields[:6]] == ["BUY"] * 3 + ["SELL"] * 3
    assert all(1 <= int(f["quantity"]) <= 5 and f["urgency"] == "High" for f in fields)


def test_poisson_offsets_are_seeded_and_increasing() -> None:
    a = poisson_offsets(200, 10.0, seed=1)
    assert a == poisson_offsets(200, 10.0, seed=1)
    assert a[0] == 0.0 and all(x < y for x, y in pairwise(a))
    assert 10 < a[-1] < 40  # about 20 s for 200 arrivals at 10/s


def test_normalize_sql_elides_select_columns() -> None:
    stmt = "SELECT a.x,\n  a.y FROM a WHERE a.id = %(id_1)s"
    assert normalize_sql(stmt) == "SELECT … FROM a WHERE a.id = %(id_1)s"
