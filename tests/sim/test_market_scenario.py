"""Scenario files: the shipped ones load, bad files fail with a clear message naming the problem."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest

from tws_sim.market import Scenario, ScenarioError
from tws_sim.market.scenario import (
    DisconnectFault,
    ExecutionCorrectionFault,
    RejectRuleFault,
)

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 ET


def test_scenario_default_is_open_calm_and_complete() -> None:
    s = Scenario.default()
    assert s.always_open and not s.regimes and not s.halts and not s.faults
    assert [i.symbol for i in s.instruments] == [
        "SPY", "QQQ", "IWM", "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA",
    ]  # fmt: skip
    spy = s.instrument("SPY")
    assert spy is not None and spy.price == Decimal("600.00")
    assert s.instrument("XYZ") is None


def test_scenario_fomc_has_spike_and_jump_at_14_et() -> None:
    s = Scenario.named("fomc")
    spike = next(r for r in s.regimes if r.name == "fomc-spike")
    assert spike.at == time(14, 0) and spike.vol_mult > 1
    assert spike.begins(START) == datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
    assert any(j.at == time(14, 0) and j.size < 0 for j in s.jumps)
    assert len(s.instruments) == 10  # inherited from default


def test_scenario_faults_example_has_every_kind() -> None:
    s = Scenario.named("faults")
    kinds = {f.kind for f in s.faults}
    assert kinds == {
        "disconnect", "md_farm_drop", "delayed_commissions", "duplicate_order_status",
        "execution_correction", "reject_rule", "combo_unfillable",
    }  # fmt: skip
    (disc,) = s.faults_of("disconnect")
    assert isinstance(disc, DisconnectFault) and disc.refuse
    assert disc.begins(START) == datetime(2026, 11, 24, 15, 2, tzinfo=UTC)
    assert disc.active(datetime(2026, 11, 24, 15, 2, 29, tzinfo=UTC), START)
    assert not disc.active(datetime(2026, 11, 24, 15, 2, 30, tzinfo=UTC), START)
    (rule,) = s.faults_of("reject_rule")
    assert isinstance(rule, RejectRuleFault) and rule.max_qty == Decimal("5000")
    assert rule.code == 201 and rule.ends(START) is None and rule.active(START, START)
    (corr,) = s.faults_of("execution_correction")
    assert isinstance(corr, ExecutionCorrectionFault) and corr.price_delta == Decimal("0.02")
    assert s.halts[0].symbol == "TSLA" and s.halts[0].state == 2


def test_scenario_default_start() -> None:
    s = Scenario.default()
    assert s.default_start(datetime(2026, 7, 1).date()) == datetime(2026, 7, 1, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "mapping at the top level"),
        ("name: x\n", "at least one instrument"),
        ("instruments: [{symbol: SPY, price: -1}]", "instruments.0.price"),
        ("instruments: [{symbol: SPY, price: 1, colour: red}]", "colour"),
        ("extends: default\nhalts: [{symbol: ZZZ, after_s: 1}]", "unknown symbol 'ZZZ'"),
        ("extends: default\nregimes: [{at: 14:00, vol_mult: 2}]", "quote it"),
        ("extends: default\nregimes: [{at: '25:00'}]", "HH:MM"),
        ("extends: default\njumps: [{at: '14:00', after_s: 3, size: 0.1}]", "not both"),
        ("extends: default\nfaults: [{kind: meteor, after_s: 1}]", "faults.0"),
        ("extends: default\nfaults: [{kind: reject_rule}]", "max_qty or max_notional"),
        ("extends: nowhere\n", "cannot extend 'nowhere'"),
        ("instruments: [{symbol: SPY, price: 1}, {symbol: SPY, price: 2}]", "listed twice"),
    ],
)
def test_scenario_bad_text_names_the_problem(text: str, needle: str) -> None:
    with pytest.raises(ScenarioError) as err:
        Scenario.from_text(text, source="bad.yaml")
    assert "bad.yaml" in str(err.value) and needle in str(err.value)


def test_scenario_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        Scenario.load(tmp_path / "nope.yaml")


def test_scenario_load_from_file_with_new_symbol(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\n"
        "instruments:\n"
        "  - {symbol: abcd, price: '12.5', con_id: 4242, options: false}\n"
    )
    s = Scenario.load(path)
    assert s.instruments[0].symbol == "ABCD" and s.instruments[0].con_id == 4242
    assert not s.always_open
