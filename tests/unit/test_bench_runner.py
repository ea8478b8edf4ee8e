"""`bench/run`: figures beside their same-run reference and aim, history below kept as it is."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.run import BEGIN, END, Bench, Outcome, ratio, render, rewrite, verdict

REPO = Path(__file__).resolve().parents[2]


def _figure(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "bench": "fill_commit",
        "figure": "execDetails received → fill committed, p50",
        "value": 6.0,
        "unit": "ms",
        "n": 200,
        "reference": 2.0,
        "reference_label": "Celery no-op round trip p50",
        "aim": 4.0,
        "better": "lower",
    }
    return {**base, **over}


def test_a_figure_reads_against_its_reference_and_its_aim() -> None:
    assert ratio(_figure()) == "3.00×"
    assert "**not met**" in verdict(_figure())
    assert "**met**" in verdict(_figure(value=3.5))
    assert "**met**" in verdict(_figure(value=25_000.0, aim=20_000.0, better="higher"))
    assert "**not met**" in verdict(_figure(value=377.0, aim=20_000.0, better="higher"))
    assert ratio(_figure(reference=None)) == "–"
    assert verdict(_figure(aim=None)) == "–"


def test_the_generated_section_is_replaced_and_the_history_kept() -> None:
    ok = Outcome(Bench("fill_commit_latency", "bench/fill_commit.py"), ["py", "x"], 0, 3.0,
                 [_figure()], "", "Fill commit")  # fmt: skip
    failed = Outcome(Bench("kill_switch", "bench/kill_switch.py"), ["py", "y"], 1, 2.0, [],
                     "Traceback: boom", "Kill switch")  # fmt: skip
    section = render([ok, failed], quick=False, started=datetime(2026, 12, 4, tzinfo=UTC),
                     load=(0.5, 0.4, 0.3))  # fmt: skip
    assert "| fill_commit_latency | execDetails received → fill committed, p50 | 200 |" in section
    assert "3.00×" in section and "**not met**" in section
    assert "| kill_switch | **did not finish** (exit 1)" in section
    assert "Traceback: boom" in section

    first = rewrite("# Benchmarks\n\n## Simulator\nold notes\n", section)
    assert first.startswith("# Benchmarks\n\n" + BEGIN)
    assert first.count(BEGIN) == 1 and "## Simulator\nold notes" in first
    again = rewrite(first, section.replace("3.00×", "1.50×"))
    assert again.count(BEGIN) == 1 and again.count(END) == 1
    assert "1.50×" in again and "3.00×" not in again
    assert "## Simulator\nold notes" in again


@pytest.mark.slow
@pytest.mark.postgres
def test_bench_run_runs_a_benchmark_and_writes_its_figures(pg_url: str, tmp_path: Path) -> None:
    # `pg_url` only proves PostgreSQL is there (or skips/fails); the bench makes its own database.
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## History\nkept\n")
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "--only", "recon", "--quick", "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "reconcile_executions, 2,000 orders all matched (PostgreSQL), median" in text
    assert "**quick run**" in text
    assert "## History\nkept" in text
