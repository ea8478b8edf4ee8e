"""Every repository path the documentation and the code's comments name exists (a renamed or
removed file leaves no dangling reference behind)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PATH = re.compile(r"\b((?:[a-z_0-9]+/)+[A-Za-z_0-9.-]+\.(?:py|md|sh|yaml|json|toml))\b")
SKIPPED_DIRS = {".venv", ".venv-ibapi10", ".git", ".epm", "node_modules"}


def _texts() -> list[Path]:
    docs = [*REPO.glob("docs/*.md"), REPO / "README.md", REPO / "BENCHMARKS.md"]
    code = [
        p
        for p in REPO.rglob("*.py")
        if not SKIPPED_DIRS & set(p.relative_to(REPO).parts) and p.name != "test_dependencies.py"
    ]
    return [p for p in [*docs, *code] if p.exists()]


def test_named_repository_paths_exist() -> None:
    missing = sorted(
        f"{path.relative_to(REPO)} names {name}"
        for path in _texts()
        for name in set(PATH.findall(path.read_text(errors="replace")))
        if name.split("/")[0] in {p.name for p in REPO.iterdir()} and not (REPO / name).exists()
    )
    assert missing == []
