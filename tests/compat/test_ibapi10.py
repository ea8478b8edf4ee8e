"""Issue 4/5 acceptance: the same suites pass with a 10.x official client (nautilus-ibapi 10.46.1).

The main test run uses the `ibapi` 9.81 package pinned in pyproject.toml. This module builds (or
reuses) `.venv-ibapi10` with `scripts/ibapi10-venv.sh`, where `import ibapi` is a 10.x client, and
runs inside it, as a child pytest:

- every `tests/sim` module that drives the official client or decodes with it (those importing
  `ibapi` or using `RecordingClient`: the end-to-end tests, the server tests and the protocol
  tests, which then encode and decode with the 10.x client at v157/176/178), and
- `tests/compat/test_client_session.py` (one broad session that checks nothing tells the client
  it is not talking to a gateway: no decode errors, no dropped messages, Decimal sizes), and
- the bridge suite (`tests/bridge`, minus its own 10.x driver, which would only skip there).

10.x clients ask for server version 2xx; the simulator caps at 178, so they stay on the text
protocol, with their own callback signatures (error gains errorTime, sizes are Decimal,
commissionAndFeesReport, cancelOrder/reqGlobalCancel take an OrderCancel).

The child's results are read from its JUnit XML: it must exit 0, and every selected test must have
run; a skipped test (an unreachable service, say) skips this test with the reasons, or fails it
under EPM_REQUIRE_SERVICES=1 (CI). Without a package index the venv cannot be built: skip, or fail
under EPM_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import ibapi
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ibapi10-venv.sh"
NO_INDEX_EXIT = 3  # the script's "no package index reachable"
# the text protocol's top version, which the simulator negotiates at most
SIM_MAX_VERSION = 178

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        ibapi.__version__.startswith("10."),
        reason="this is the 10.x venv itself: the driver runs from the 9.81 run",
    ),
]


def _required() -> bool:
    return os.environ.get("EPM_REQUIRE_SERVICES") == "1"


def _skip_or_fail(message: str) -> None:
    if _required():
        pytest.fail(f"{message} (EPM_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def ibapi10_python() -> Path:
    """The 10.x venv's python, built or reused by the script (fast when already up to date)."""
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"building the ibapi 10.x venv took over {e.timeout} s")
    if done.returncode == NO_INDEX_EXIT:
        _skip_or_fail(f"cannot build the ibapi 10.x venv: {done.stderr.strip()[-500:]}")
    assert done.returncode == 0, f"ibapi10-venv.sh failed:\n{done.stderr[-4000:]}"
    python = REPO / done.stdout.strip().splitlines()[-1]
    assert python.exists(), python
    return python


def _child_modules() -> list[str]:
    """The sim modules that use the official client, the client session, the bridge suite."""
    sim = []
    for path in sorted((REPO / "tests" / "sim").glob("test_*.py")):
        text = path.read_text()
        if "import ibapi" in text or "from ibapi" in text or "RecordingClient" in text:
            sim.append(str(path.relative_to(REPO)))
    bridge = [
        str(p.relative_to(REPO)) for p in sorted((REPO / "tests" / "bridge").glob("test_*.py"))
    ]
    return [*sim, "tests/compat/test_client_session.py", *bridge]


@dataclass
class ChildRun:
    """What the child pytest reported, per test id."""

    returncode: int
    output: str
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _read_junit(path: Path, run: ChildRun) -> None:
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            detail = (bad.get("message") or "") + "\n" + (bad.text or "")[-1500:]
            run.failed.append((test_id, detail))
        elif case.find("skipped") is not None:
            reason = case.find("skipped").get("message", "")  # type: ignore[union-attr]
            run.skipped.append((test_id, reason))
        else:
            run.passed.append(test_id)


def test_ibapi10_venv_holds_a_10x_client(ibapi10_python: Path) -> None:
    """The venv really swaps the client: 10.x, asking for more than the sim's 178."""
    probe = (
        "import ibapi, google.protobuf; from ibapi.server_versions import MAX_CLIENT_VER as m; "
        "import epm, tws_sim, ibgateway_bridge; print(ibapi.__version__, m)"
    )
    done = subprocess.run(
        [str(ibapi10_python), "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    version, max_client = done.stdout.split()
    assert version.startswith("10.46"), version
    assert int(max_client) > SIM_MAX_VERSION  # negotiation, not the client, keeps it on text


def _run_child(python: Path, targets: list[str], junit: Path) -> ChildRun:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTEST_ADDOPTS", "VIRTUAL_ENV"}}
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            *targets,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1000,
    )
    run = ChildRun(done.returncode, (done.stdout + done.stderr)[-6000:])
    assert junit.exists(), f"the child run wrote no report (exit {done.returncode}):\n{run.output}"
    _read_junit(junit, run)
    return run


def _node_id(test_id: str, modules: list[str]) -> str:
    """JUnit's `tests.bridge.test_x[.Class]::name` back to a pytest node id."""
    dotted, name = test_id.split("::", 1)
    for module in modules:
        mod = module.removesuffix(".py").replace("/", ".")
        if dotted == mod or dotted.startswith(mod + "."):
            cls = dotted[len(mod) + 1 :]
            return f"{module}::{cls}::{name}" if cls else f"{module}::{name}"
    raise AssertionError(f"cannot map {test_id} to a module")


def test_sim_and_bridge_suites_pass_with_ibapi10(ibapi10_python: Path, tmp_path: Path) -> None:
    """The child run must pass. A test that fails is run once more on its own: the bridge's
    outage drills race real sockets against a loaded machine, and a test that passes alone was
    not failed by the 10.x client; what passes only on the rerun is reported on stderr. A real
    10.x incompatibility fails both times."""
    modules = _child_modules()
    assert "tests/sim/test_e2e_ibapi.py" in modules
    assert any(m.startswith("tests/bridge/") for m in modules)
    started = time.monotonic()
    run = _run_child(ibapi10_python, modules, tmp_path / "ibapi10.xml")
    elapsed = time.monotonic() - started
    sys.stderr.write(
        f"ibapi 10.x child run: {len(run.passed)} passed, {len(run.failed)} failed, "
        f"{len(run.skipped)} skipped in {elapsed:.0f} s\n"
    )
    if run.failed:
        first = "\n\n".join(f"{t}: {detail}" for t, detail in run.failed)
        assert len(run.failed) <= 3, f"failed under ibapi 10.x:\n{first}"
        again = _run_child(
            ibapi10_python,
            [_node_id(t, modules) for t, _ in run.failed],
            tmp_path / "ibapi10-rerun.xml",
        )
        assert not again.failed and again.returncode == 0, (
            f"failed under ibapi 10.x, twice:\n{first}\n\nrerun:\n{again.output}"
        )
        sys.stderr.write(f"ibapi 10.x child run: passed only when rerun alone:\n{first}\n")
        run.passed += again.passed
    else:
        assert run.returncode == 0, run.output
    # It ran the client-driving tests, not just collected them.
    for module in (
        "test_e2e_ibapi",
        "test_client_session",
        "test_bridge_sim",
        "test_protocol_outgoing",
    ):
        assert any(f".{module}::" in t for t in run.passed), f"no {module} test passed"
    if run.skipped:
        reasons = "; ".join(f"{t}: {r}" for t, r in run.skipped[:10])
        _skip_or_fail(f"{len(run.skipped)} tests skipped under ibapi 10.x: {reasons}")
