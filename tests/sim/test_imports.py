"""`tws_sim` stands alone: it imports nothing of epm's system and its modules import no cycle.

The simulator is the venue epm trades against; if it imported epm (settings, stores, tasks) a bug
or a change there could change what the "broker" does, and `python -m tws_sim` could not run
where only the simulator is wanted. An import cycle inside it is a design smell the Protocols in
`tws_sim.server` exist to avoid, and a lazy import inside a function hides a cycle from Python
without removing it, so both checks read every import the source holds, wherever it is:

- (a) no module under tws_sim imports epm, ibgateway_bridge, store, tasks or services, at top
  level or inside a function; imports under `if TYPE_CHECKING:` are skipped (they never run);
- (b) the module graph of tws_sim, lazy and type-only imports included, has no cycle.

An import names the module it reads from: `from pkg import mod` is an edge to `pkg.mod` when that
is a module, `from pkg import name` an edge to `pkg`. The parent packages Python initialises on
the way are not edges, so a package `__init__` re-exporting its own modules is not a cycle.
The checker is tried on a synthetic package first (c), so a checker that finds nothing because
it reads nothing cannot pass.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "tws_sim"
FORBIDDEN = frozenset({"epm", "ibgateway_bridge", "store", "tasks", "services"})
DYNAMIC_IMPORTS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target, as an absolute dotted name."""

    module: str  # the importing module
    target: str  # `import a.b` → "a.b"; `from a import b` → "a.b" (resolved against modules later)
    base: str  # the module the statement reads from: "a.b" / "a"
    line: int
    type_only: bool  # inside the body of an `if TYPE_CHECKING:` block


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package rooted at `package_dir`."""
    root = package_dir.parent
    names: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _ImportVisitor(ast.NodeVisitor):
    """Every import in a module, at any depth (functions, classes, try/if blocks)."""

    def __init__(self, module: str, package: str) -> None:
        self.module = module
        self.package = package  # what a relative import is relative to
        self.found: list[Import] = []
        self._type_only = 0

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        self._type_only += 1
        for stmt in node.body:
            self.visit(stmt)
        self._type_only -= 1
        for stmt in node.orelse:  # the else branch of `if TYPE_CHECKING:` runs
            self.visit(stmt)

    def _add(self, target: str, base: str, line: int) -> None:
        self.found.append(Import(self.module, target, base, line, self._type_only > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            anchor = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            target = base if alias.name == "*" else f"{base}.{alias.name}"
            self._add(target, base, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        """`importlib.import_module("x.y")` / `__import__("x")` with a literal name import too."""
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in DYNAMIC_IMPORTS and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self._add(arg.value, arg.value, node.lineno)
        self.generic_visit(node)


def imports(package_dir: Path) -> Iterator[Import]:
    """Every import of every module of the package, in file and line order."""
    for module, path in module_names(package_dir).items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        visitor = _ImportVisitor(module, package)
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        yield from visitor.found


def forbidden_imports(package_dir: Path, forbidden: frozenset[str] = FORBIDDEN) -> list[str]:
    """`module:line imports name` for each import of a forbidden top-level package that runs
    (type-only imports are skipped: they never execute)."""
    return [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in imports(package_dir)
        if not imp.type_only and imp.base.split(".")[0] in forbidden
    ]


def module_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports (lazy and type-only imports included)."""
    known = module_names(package_dir)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for imp in imports(package_dir):
        if imp.target in known:
            target = imp.target
        elif imp.base in known:
            target = imp.base
        else:
            continue  # outside the package (stdlib, ibapi, …)
        if target != imp.module:
            graph[imp.module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or None when the graph is acyclic (depth-first, in
    sorted order, so the cycle reported is the same on every run)."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


# -------------------------------------------------------------------------------------------------
# the simulator


def test_the_checker_reads_the_simulator() -> None:
    """The graph holds the modules and edges we know are there (a vacuous scan fails here)."""
    graph = module_graph(PACKAGE)
    assert len(graph) > 30
    assert "tws_sim.server.push" in graph["tws_sim.server.driver"]
    assert "tws_sim.server.process" in graph["tws_sim.cli"]  # a lazy import, inside a function


def test_tws_sim_imports_nothing_of_epm() -> None:
    found = forbidden_imports(PACKAGE)
    assert found == [], "tws_sim must not import epm's system:\n" + "\n".join(found)


def test_tws_sim_has_no_import_cycle() -> None:
    cycle = find_cycle(module_graph(PACKAGE))
    if cycle is not None:
        print("import cycle:", " -> ".join(cycle))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# -------------------------------------------------------------------------------------------------
# the checker on a package made to break the rules


def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "fake"
    for name, text in {"__init__.py": "", **files}.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_checker_reports_forbidden_imports_wherever_they_run(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "top.py": "import epm.settings\n",
            "lazy.py": "def f():\n    from store import db\n    return db\n",
            "method.py": "class C:\n    def m(self):\n        import tasks.app\n",
            "dynamic.py": "import importlib\nimportlib.import_module('services.intake')\n",
            "typed.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from epm import cli\n"
                "else:\n    import ibgateway_bridge\n"
            ),
            "fine.py": "import os\nfrom . import top\nfrom fake.sub import x\n",
            "sub/__init__.py": "from ..top import epm\n",  # relative: fake.top, not epm
        },
    )
    assert forbidden_imports(pkg) == [
        "fake.dynamic:2 imports services.intake",
        "fake.lazy:2 imports store.db",
        "fake.method:3 imports tasks.app",
        "fake.top:1 imports epm.settings",
        "fake.typed:5 imports ibgateway_bridge",  # the else branch runs; the if body does not
    ]


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        (
            {"a.py": "import fake.b\n", "b.py": "def f():\n    from fake import a\n"},
            ["fake.a", "fake.b", "fake.a"],
        ),
        (
            {
                "a.py": "from .b import thing\n",
                "b.py": (
                    "from typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n    from fake.c import C\n"
                ),
                "c.py": "from . import a\n",
            },
            ["fake.a", "fake.b", "fake.c", "fake.a"],
        ),
        (
            {"__init__.py": "from fake.a import A\n", "a.py": "from fake.b import B\nA = B\n"},
            None,  # an __init__ re-exporting its modules is not a cycle
        ),
    ],
    ids=["lazy import", "relative and type-only imports", "acyclic"],
)
def test_checker_reports_a_cycle(
    tmp_path: Path, files: dict[str, str], cycle: list[str] | None
) -> None:
    pkg = _package(tmp_path, {"b.py": "B = 1\n", **files})
    assert find_cycle(module_graph(pkg)) == cycle
