"""Risk limits documents: the shipped default validates, overrides merge over the defaults, and
every kind of bad file is refused with a message naming the field."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from epm.limits import load_limits
from models.limits import LimitsInvalid, instrument_limits, parse_limits, strategy_limits

DEFAULT = tomllib.loads(
    (Path(__file__).resolve().parents[3] / "epm" / "limits" / "default.toml").read_text()
)


def doc(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT.items()}
    data.update(changes)
    return data


def test_shipped_default_validates_with_sane_caps() -> None:
    limits = load_limits()
    spy = instrument_limits(limits, "SPY")
    assert spy.max_order_quantity == Decimal("1000000")
    assert spy.max_order_notional == Decimal("5000000")
    assert strategy_limits(limits, "twap").max_active_intents == 50
    assert limits.account.min_margin_headroom == Decimal("0.10")


def test_override_replaces_only_the_fields_it_names() -> None:
    limits = parse_limits(
        doc(
            instruments={"AAPL": {"max_order_quantity": "500"}},
            strategies={"pairs": {"max_position_gamma": 10}},
        )
    )
    aapl = instrument_limits(limits, "AAPL")
    assert aapl.max_order_quantity == Decimal(500)
    assert aapl.max_order_notional == Decimal("5000000")
    pairs = strategy_limits(limits, "pairs")
    assert pairs.max_position_gamma == Decimal(10)
    assert pairs.max_position_quantity == Decimal("2000000")
    assert instrument_limits(limits, "MSFT") == limits.defaults.instrument


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"version": 2}, "version must be 1"),
        ({"version": None}, "version must be 1"),
        ({"instruments": {"SPY": {"max_order_quantity": 1.5}}}, "not TOML floats"),
        ({"instruments": {"SPY": {"max_order_quantity": "-5"}}}, "instruments.SPY"),
        ({"instruments": {"SPY": {"max_order_qty": "5"}}}, "max_order_qty"),
        ({"strategies": {"twap": {"max_active_intents": 0}}}, "max_active_intents"),
        ({"account": {"min_margin_headroom": "1.5"}}, "min_margin_headroom"),
        ({"account": {}}, "account.min_margin_headroom"),
        (
            {"defaults": {"instrument": {"max_order_notional": "1"}, "strategy": {}}},
            "defaults.instrument.max_order_quantity: required",
        ),
    ],
)
def test_bad_documents_are_refused_naming_the_field(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(LimitsInvalid) as info:
        parse_limits(doc(**changes), "ops.toml")
    assert needle in str(info.value) and "ops.toml" in str(info.value)


@given(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**12), places=4))
def test_any_positive_amount_as_a_string_is_kept_exactly(amount: Decimal) -> None:
    limits = parse_limits(doc(instruments={"SPY": {"max_order_notional": str(amount)}}))
    assert instrument_limits(limits, "SPY").max_order_notional == amount


def test_unreadable_or_non_toml_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LimitsInvalid, match="cannot read the limits file"):
        load_limits(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = = 1\n")
    with pytest.raises(LimitsInvalid, match="not valid TOML"):
        load_limits(bad)


def test_cli_limits_show_refuses_a_bad_file_with_a_message(tmp_path: Path) -> None:
    from epm.cli import _load_commands, app

    _load_commands()
    bad = tmp_path / "limits.toml"
    bad.write_text("version = 1\n[defaults.instrument]\nmax_order_notional = 1.5\n")
    runner = CliRunner()
    done = runner.invoke(app, ["limits", "show", "--file", str(bad)])
    assert done.exit_code == 2
    assert "does not validate" in done.output and "not TOML floats" in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
    good = runner.invoke(app, ["limits", "show"])
    assert good.exit_code == 0 and '"max_order_quantity": "1000000"' in good.output
