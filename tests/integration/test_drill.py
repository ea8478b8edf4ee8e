"""`epm drill` (blueprint §13.2): recorded intents (tests/fixtures/replay/drill_signals.jsonl)
through the real intake, playbooks, scheduler and ledger against the simulator's own market and
matching engine stepped in-process; fills and P&L compared with an expected outcome
(drill_expected.json). The nightly beat task runs the same and alerts when they differ."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "replay"
SIGNALS = FIXTURES / "drill_signals.jsonl"
EXPECTED = FIXTURES / "drill_expected.json"


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_DATA_DIR": str(tmp_path / "data"),
        **extra,
    }


def test_write_expected_records_the_outcome_the_committed_file_holds(tmp_path: Path) -> None:
    recorded = tmp_path / "expected.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "epm",
            "drill",
            str(SIGNALS),
            "--expect",
            str(recorded),
            "--write-expected",
            "--seconds",
            "300",
        ],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(recorded.read_text()) == json.loads(EXPECTED.read_text())
    expected = json.loads(EXPECTED.read_text())
    # The drill traded what the signals asked: 300 AAPL bought, 100 sold; the MSFT TWAP's four
    # slices capped by participation in the simulator's 5 s bars, so short of its 400; each
    # fill charged the simulator's commission (not the ledger's estimate only).
    by_signal: dict[str, int] = {}
    for f in expected["fills"]:
        by_signal[f["signal_id"]] = by_signal.get(f["signal_id"], 0) + int(f["shares"])
        assert f["commission"] not in ("", "0", "0.00")
    twap = by_signal.pop("drill-msft-twap")
    assert by_signal == {"drill-aapl-buy": 300, "drill-aapl-sell": 100}
    assert 0 < twap < 400
    positions = {p["symbol"]: p["quantity"] for p in expected["positions"]}
    assert positions == {"AAPL": "200", "MSFT": str(twap)}


def test_the_nightly_task_matches_and_alerts_on_a_difference(
    tmp_path: Path, r: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from epm.redis_conn import reset_redis_cache
    from epm.settings import reset_settings_cache
    from tasks.drill import nightly_drill

    for k, v in _env(
        tmp_path,
        EPM_REDIS_URL=redis_url,
        EPM_DRILL_FILE=str(SIGNALS),
        EPM_DRILL_EXPECT=str(EXPECTED),
    ).items():
        monkeypatch.setenv(k, v)
    reset_settings_cache()
    reset_redis_cache()
    matched: dict[str, Any] = nightly_drill.apply().result
    assert matched["outcome"] == "matched", matched
    assert r.xlen("epm:alerts") == 0
    # A tampered expectation: one price off by a cent, one P&L row more than the run has.
    tampered = json.loads(EXPECTED.read_text())
    first = tampered["fills"][0]
    first["price"] = str(round(float(first["price"]) + 0.01, 2))
    tampered["pnl"].append({**tampered["pnl"][0], "signal_id": "ghost"})
    wrong = tmp_path / "tampered.json"
    wrong.write_text(json.dumps(tampered))
    monkeypatch.setenv("EPM_DRILL_EXPECT", str(wrong))
    failed: dict[str, Any] = nightly_drill.apply().result
    assert failed["outcome"] == "failed" and failed["exit_code"] == 1
    report = "\n".join(failed["report"])
    assert f"fills row 1 (drill-aapl-buy): price expected '{first['price']}'" in report
    assert "pnl: expected 4 rows, got 3" in report and "pnl row 4: missing" in report
    [(_, alert)] = r.xrange("epm:alerts")
    assert alert["kind"] == "drill_failed" and "exit 1" in alert["message"]
    reset_settings_cache()
    reset_redis_cache()


def test_the_beat_entry_exists_only_when_a_drill_file_is_named(tmp_path: Path) -> None:
    probe = "import celeryconfig as c; print('drill-nightly' in c.beat_schedule)"

    def entry(**extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe],
            env=_env(tmp_path, **extra),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    assert entry() == "False"
    assert entry(EPM_DRILL_FILE=str(SIGNALS)) == "True"


def test_an_unreadable_expectation_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "epm", "drill", str(SIGNALS), "--expect", str(tmp_path / "no.json")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "cannot read the expected outcome" in done.stderr
