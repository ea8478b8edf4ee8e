"""Run every benchmark and rewrite the generated part of BENCHMARKS.md (issue 15 item 5).

Each benchmark runs as its own process, one after the other (they would measure each other on
two cores), with `EPM_BENCH_JSON` pointing at a file where it records its figures
(`bench/results.py`). The figures go into the section of BENCHMARKS.md between the two markers
below, with the machine, the date, the commit, the method (each benchmark's own first docstring
line and its command line), and each figure beside the reference measured in the same run and
the issue's aim; the hand-written history below the markers is kept as it is. A benchmark that
fails is listed with its exit code and the tail of its output: a missing figure is never left
looking like a met aim.

Run: `bench/run [--quick] [--only NAME ...] [--output PATH]` (`--quick`: fewer samples, for a
smoke run; the numbers then say so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- bench/run: begin (generated, do not edit by hand) -->"
END = "<!-- bench/run: end -->"


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()


BENCHES = (
    Bench("sim_throughput", "bench/sim_throughput.py", (), ("--orders", "4000", "--seconds", "4")),
    Bench(
        "intent_latency",
        "bench/intent_latency.py",
        ("--intents", "500", "--rate", "2", "--ticks", "0.1"),
        ("--intents", "60", "--rate", "4", "--ticks", "0.1", "--celery", "50"),
    ),
    Bench(
        "fill_commit_latency", "bench/fill_commit.py", ("latency",), ("latency", "--orders", "40")
    ),
    Bench(
        "fill_commit_throughput",
        "bench/fill_commit.py",
        ("throughput",),
        ("throughput", "--fills", "4000"),
    ),
    Bench("replay", "bench/replay.py", (), ("--quick",)),
    Bench("recon", "bench/recon.py", (), ("--repeat", "2", "--orders", "2000", "--missing", "20")),
    Bench("kill_switch", "bench/kill_switch.py", (), ("--runs", "2")),
    Bench("drawdown_halt", "bench/drawdown_halt.py", (), ("--runs", "2", "--positions", "20")),
    Bench("broker_publish", "bench/broker_publish.py", (), ("--messages", "200")),
)


@dataclass
class Outcome:
    bench: Bench
    argv: list[str]
    returncode: int
    seconds: float
    figures: list[dict[str, Any]]
    tail: str
    method: str


def _method(script: Path) -> str:
    """The benchmark's own one-line description (its module docstring's first line)."""
    text = script.read_text()
    for quote in ('"""', "'''"):
        if quote in text:
            return text.split(quote, 2)[1].strip().splitlines()[0]
    return ""


def run_one(bench: Bench, quick: bool, timeout_s: float) -> Outcome:
    script = REPO / bench.script
    argv = [sys.executable, bench.script, *(bench.quick if quick else bench.args)]
    if not script.is_file():
        return Outcome(bench, argv, 127, 0.0, [], f"{bench.script} does not exist", "")
    with tempfile.NamedTemporaryFile("w+", suffix=".jsonl", delete=False) as sink:
        sink_path = Path(sink.name)
    env = {**os.environ, "EPM_BENCH_JSON": str(sink_path), "PYTHONPATH": str(REPO)}
    env = {k: v for k, v in env.items() if k not in ("EPM_REDIS_URL", "EPM_DATABASE_URL")}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s
        )
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        code = 124
        output = f"timed out after {timeout_s:.0f} s\n" + str(e.stdout or "")[-2000:]
    took = time.monotonic() - started
    figures = [json.loads(line) for line in sink_path.read_text().splitlines() if line.strip()]
    sink_path.unlink(missing_ok=True)
    return Outcome(bench, argv, code, took, figures, output[-1500:], _method(script))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return f"{text} {unit}".rstrip()


def verdict(figure: dict[str, Any]) -> str:
    aim = figure.get("aim")
    if aim is None:
        return "–"
    value = float(figure["value"])
    met = value >= aim if figure.get("better") == "higher" else value <= aim
    sign = "≥" if figure.get("better") == "higher" else "≤"
    return f"{sign} {_num(aim, figure['unit'])}: {'**met**' if met else '**not met**'}"


def ratio(figure: dict[str, Any]) -> str:
    ref = figure.get("reference")
    if not ref:
        return "–"
    return f"{float(figure['value']) / float(ref):.2f}×"


def render(
    outcomes: Sequence[Outcome], *, quick: bool, started: datetime, load: tuple[float, ...]
) -> str:
    lines = [
        BEGIN,
        "## Latest run of every benchmark (`bench/run`)",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; commit {_commit()}"
        + ("; **quick run** (fewer samples: a smoke run, not a measurement)" if quick else ""),
        f"- machine: {_cpu()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}",
        f"- load average at the start: {' '.join(f'{x:.2f}' for x in load)}; at the end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "- method: each benchmark runs alone, one after the other, as its own process; the "
        "reference of a figure is measured by the same benchmark in the same run.",
        "",
        "| benchmark | figure | n | value | reference (same run) | ratio | aim |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        if o.returncode != 0 or not o.figures:
            lines.append(
                f"| {o.bench.name} | **did not finish** (exit {o.returncode}) | – | – | – | – | – |"
            )
            continue
        for f in o.figures:
            ref = f.get("reference")
            ref_text = "–" if ref is None else f"{_num(ref, f['unit'])} ({f['reference_label']})"
            lines.append(
                f"| {o.bench.name} | {f['figure']} | {f.get('n') or '–'} | "
                f"{_num(f['value'], f['unit'])} | {ref_text} | {ratio(f)} | {verdict(f)} |"
            )
    lines += ["", "Commands and what each measures:", ""]
    for o in outcomes:
        cmd = " ".join([".venv/bin/python", *o.argv[1:]])
        lines.append(f"- `{cmd}` ({o.seconds:.0f} s): {o.method or o.bench.name}")
    failed = [o for o in outcomes if o.returncode != 0 or not o.figures]
    for o in failed:
        lines += ["", f"`{o.bench.name}` output (tail):", "", "```", o.tail.strip(), "```"]
    lines.append(END)
    return "\n".join(lines) + "\n"


def rewrite(document: str, section: str) -> str:
    """The document with its generated section replaced (or put first, under the title)."""
    if BEGIN in document and END in document:
        head, rest = document.split(BEGIN, 1)
        _old, tail = rest.split(END, 1)
        return head + section.rstrip("\n") + tail
    title, _sep, body = document.partition("\n")
    if title.startswith("# "):
        return f"{title}\n\n{section}\n{body.lstrip()}"
    return f"# Benchmarks\n\n{section}\n{document}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per benchmark")
    args = parser.parse_args(argv)
    names = {b.name for b in BENCHES}
    unknown = sorted(set(args.only or ()) - names)
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    chosen = [b for b in BENCHES if args.only is None or b.name in args.only]
    started = datetime.now(UTC)
    load = os.getloadavg()
    outcomes = []
    for bench in chosen:
        print(f"bench/run: {bench.name} …", flush=True)
        outcome = run_one(bench, args.quick, args.timeout)
        status = "ok" if outcome.returncode == 0 and outcome.figures else "FAILED"
        print(f"bench/run: {bench.name} {status} in {outcome.seconds:.0f} s", flush=True)
        outcomes.append(outcome)
    section = render(outcomes, quick=args.quick, started=started, load=load)
    document = args.output.read_text() if args.output.exists() else "# Benchmarks\n"
    args.output.write_text(rewrite(document, section))
    print(section)
    return 0 if all(o.returncode == 0 and o.figures for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
