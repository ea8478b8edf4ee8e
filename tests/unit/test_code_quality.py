"""The code standards the project holds itself to, checked by the same run as the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ruff_lint_and_format_are_clean() -> None:
    lint = _run("ruff", "check", "--no-cache", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run("ruff", "format", "--check", "--no-cache", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_pure_core_types_check_strictly(tmp_path: Path) -> None:
    """`models/`, the service layer, the repositories and the whole bridge pass `mypy --strict`
    (STYLE.md: the core, the use cases over it, and the process that holds real money's order
    path)."""
    done = _run(
        "mypy",
        "--strict",
        "--cache-dir",
        str(tmp_path / "mypy-cache"),
        "models/",
        "services/",
        "store/",
        "ibgateway_bridge/",
    )
    assert done.returncode == 0, done.stdout + done.stderr
