"""A limits file that does not validate stops `epm worker`, `epm beat` and `epm bridge` before
they start: one line on stderr naming the file and the field, exit 2, no traceback, no process
left running (they are run for real, as the Procfile runs them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EPM = Path(sys.executable).with_name("epm")


def _start(args: list[str], tmp_path: Path, limits_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
    env["EPM_DATA_DIR"] = str(tmp_path / "data")
    env["EPM_LIMITS_FILE"] = str(limits_file)
    return subprocess.run(
        [str(EPM), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("args", [["worker", "-Q", "intake"], ["beat"], ["bridge"]])
def test_bad_limits_file_stops_start_up(args: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "limits.toml"
    bad.write_text(
        'version = 1\n[defaults.instrument]\nmax_order_notional = "5000000"\n'
        "max_order_quantity = 0\n"
        '[defaults.strategy]\nmax_position_quantity = "1"\nmax_position_delta = "1"\n'
        'max_position_gamma = "1"\nmax_active_intents = 5\nmax_intraday_drawdown = "1"\n'
        '[account]\nmin_margin_headroom = "0.1"\n'
    )
    done = _start(args, tmp_path, bad)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"epm {args[0]}: not starting, limits invalid: {bad}")
    assert "defaults.instrument.max_order_quantity" in lines[0]
    assert "Traceback" not in done.stderr


def test_missing_limits_file_stops_start_up(tmp_path: Path) -> None:
    done = _start(["worker"], tmp_path, tmp_path / "nowhere.toml")
    assert done.returncode == 2
    assert "cannot read the limits file" in done.stderr and "Traceback" not in done.stderr
