"""Dependency direction between epm's layers, read from the source (DESIGN.md, STYLE.md).

`models/` is the core, `store/` the repositories, `services/` the use cases; `tasks/`, the bridge
and the CLI are shells over them, and the simulator is the venue, apart from all of it. The rules
below are what keeps it so: a repository that calls a task, a bridge that writes the database
itself, a simulator that reads epm's settings each couple what must stay apart. Every import
that can run counts, including imports inside functions (a lazy import is still a dependency);
imports under `if TYPE_CHECKING:` never run and are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# package → the top-level packages it must never import.
RULES: dict[str, frozenset[str]] = {
    "models": frozenset(
        {"epm", "store", "services", "tasks", "ibgateway_bridge", "tws_sim", "celeryconfig"}
    ),
    "store": frozenset({"epm", "services", "tasks", "ibgateway_bridge", "tws_sim"}),
    "services": frozenset({"tasks", "ibgateway_bridge", "tws_sim", "celeryconfig"}),
    "ibgateway_bridge": frozenset({"store", "services", "tasks", "tws_sim"}),
    "tasks": frozenset({"ibgateway_bridge", "tws_sim"}),
    "tws_sim": frozenset({"epm", "store", "services", "tasks", "ibgateway_bridge", "models"}),
}
# The one door through a forbidden package: the orders tasks queue commands for the bridge
# through its client library (Redis only; it never opens an IB socket).
ALLOWED: dict[str, frozenset[str]] = {"tasks": frozenset({"ibgateway_bridge.client_api"})}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers of statements inside `if TYPE_CHECKING:` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    for inner in ast.walk(stmt):
                        if hasattr(inner, "lineno"):
                            lines.add(inner.lineno)
    return lines


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file that can run (lazy ones too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _type_checking_lines(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations(root: Path, rules: dict[str, frozenset[str]]) -> list[str]:
    """Every import under `root` that breaks `rules`, as `path:line imports package`."""
    broken: list[str] = []
    for package, forbidden in rules.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, imported in imported_packages(path):
                if imported.split(".")[0] in forbidden and imported not in ALLOWED.get(
                    package, frozenset()
                ):
                    broken.append(f"{path.relative_to(root)}:{line} imports {imported}")
    return broken


def test_every_layer_imports_only_in_its_direction() -> None:
    for package in RULES:
        assert any((REPO / package).rglob("*.py")), f"{package}/ has no modules"
    assert violations(REPO, RULES) == []


@pytest.mark.parametrize(
    ("package", "source", "caught"),
    [
        ("ibgateway_bridge", "from store.schema import audit_log\n", True),
        ("store", "def later():\n    import tasks.ledger\n", True),
        ("tws_sim", "import epm.settings as s\n", True),
        ("services", "from tasks.app import celery_app\n", True),
        ("tasks", "from ibgateway_bridge.runtime import Bridge\n", True),
        ("tasks", "from ibgateway_bridge import client_api\n", True),
        ("tasks", "from ibgateway_bridge.client_api import enqueue_place\n", False),
        (
            "store",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from services import x\n",
            False,
        ),
        ("store", "from models.fills import ZERO\n", False),
    ],
)
def test_the_checker_catches_a_deliberate_bad_import(
    tmp_path: Path, package: str, source: str, caught: bool
) -> None:
    (tmp_path / package).mkdir()
    (tmp_path / package / "bad.py").write_text(source)
    found = violations(tmp_path, {package: RULES[package]})
    assert bool(found) is caught, found
