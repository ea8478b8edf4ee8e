"""Machine-readable figures for `bench/run`: each benchmark records what it measured here.

A benchmark run by hand prints its own tables and records nothing; run by `bench/run` (which
sets `EPM_BENCH_JSON` to a file) every figure is also appended there as one JSON line, with the
reference it is read against when the benchmark measured one in the same run (a bare Celery
round trip, a raw COPY) and the issue's aim, so the runner can put each figure as a ratio to its
reference beside whether the aim is met.
"""

from __future__ import annotations

import json
import os
from typing import Literal

ENV = "EPM_BENCH_JSON"


def record(
    bench: str,
    figure: str,
    value: float,
    unit: str,
    *,
    n: int | None = None,
    reference: float | None = None,
    reference_label: str | None = None,
    aim: float | None = None,
    better: Literal["lower", "higher"] = "lower",
) -> None:
    """Append one figure to `$EPM_BENCH_JSON` (a no-op when the variable is unset)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = {
        "bench": bench,
        "figure": figure,
        "value": value,
        "unit": unit,
        "n": n,
        "reference": reference,
        "reference_label": reference_label,
        "aim": aim,
        "better": better,
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
