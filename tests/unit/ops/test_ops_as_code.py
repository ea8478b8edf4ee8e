"""Alert rules and dashboards as code: promtool accepts the rules and their unit tests pass, and
every metric a panel or rule names is one `epm metrics` exports (registry names; that the
exporter serves exactly these is `tests/integration/test_metrics.py`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from epm.metrics.registry import exported_names

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "ops/prometheus/rules/epm.yml"
RULE_TESTS = REPO / "ops/prometheus/tests/epm_test.yml"
DASHBOARDS = REPO / "ops/grafana/dashboards"
DATASOURCES = REPO / "ops/grafana/provisioning/datasources/prometheus.yml"

_METRIC = re.compile(r"\b((?:exec|epm)_[a-z0-9_]+)\b")
_SUFFIXES = ("_bucket", "_count", "_sum")


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in exported_names():
            return name[: -len(suffix)]
    return name


def metrics_named(expr: str) -> set[str]:
    return {_base(m) for m in _METRIC.findall(expr)}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (scripts/test-tools.sh installs Debian's prometheus)")
    return found


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_tests_pass() -> None:
    done = subprocess.run(
        [_promtool(), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULE_TESTS.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _rule_exprs() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def test_every_blueprint_condition_has_a_rule_with_its_severity() -> None:
    doc = yaml.safe_load(RULES.read_text())
    severity = {r["alert"]: r["labels"]["severity"] for g in doc["groups"] for r in g["rules"]}
    assert severity["EpmUrgentOrderUnfilled"] == "warning"
    assert severity["EpmSlippageOverThreshold"] == "notify"
    assert severity["EpmPositionMismatch"] == "critical"
    assert severity["EpmClientIdCollision"] == "page"
    assert severity["EpmGatewayDisconnected"] == "page"


def test_every_rule_names_only_exported_metrics() -> None:
    for alert, expr in _rule_exprs().items():
        named = metrics_named(expr)
        assert named, f"{alert}: no epm metric in {expr!r}"
        assert named <= exported_names(), f"{alert}: {named - exported_names()}"


def _panels() -> list[tuple[str, dict[str, object]]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            out.append((path.stem, panel))
    return out


def test_the_four_dashboards_are_provisioned_on_the_provisioned_datasource() -> None:
    assert {p.stem for p in DASHBOARDS.glob("*.json")} == {
        "execution",
        "positions_pnl",
        "risk",
        "infrastructure",
    }
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    for name, panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, name
        targets = panel["targets"]
        assert isinstance(targets, list) and targets, (name, panel["title"])


def test_every_panel_query_names_only_exported_metrics() -> None:
    blueprint = {
        "exec_orders_active_total",
        "exec_fill_latency_ms",
        "exec_slippage_bps",
        "exec_positions_open",
        "exec_pnl_unrealized",
        "exec_child_orders_in_flight",
    }
    shown: set[str] = set()
    for name, panel in _panels():
        for target in panel["targets"]:  # type: ignore[attr-defined]
            named = metrics_named(target["expr"])
            assert named, f"{name}/{panel['title']}: no epm metric in {target['expr']!r}"
            assert named <= exported_names(), f"{name}/{panel['title']}: {named - exported_names()}"
            shown |= named
    assert blueprint <= shown, blueprint - shown


def test_the_checker_catches_a_metric_nobody_exports() -> None:
    assert metrics_named('rate(exec_fill_latency_ms_bucket{le="5"}[5m])') == {
        "exec_fill_latency_ms"
    }
    assert not metrics_named("exec_orders_activ_total") <= exported_names()
