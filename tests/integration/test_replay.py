"""`epm replay` on recorded data (tests/fixtures/replay: 4 minutes of 1 s quotes of AAPL and
MSFT, four recorded intents): the real intake, playbooks, scheduler and ledger on the data's
clock. Same input → byte-identical extracts; orders as client ID 3; the books agree with the
fills; several parameter values side by side; and a replay refuses any gateway endpoint."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from epm.commands.replay import _signals
from epm.replay_sources import load_data
from models.replay.params import parse_override
from services.replay.run import run_replay
from store.db import make_engine
from store.schema import execution_orders, intents

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "replay"
QUOTES = FIXTURES / "quotes.csv"
SIGNALS = FIXTURES / "signals.jsonl"


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def replay(r: redis.Redis, out: Path, *overrides: str) -> Any:
    r.flushdb()
    source = load_data(QUOTES)
    return run_replay(
        source.events,
        _signals(str(SIGNALS), "test"),
        source.contracts,
        out,
        redis_client=r,
        client_id=3,
        overrides=[parse_override(o) for o in overrides],
    )


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_replaying_twice_gives_byte_identical_extracts(r: redis.Redis, tmp_path: Path) -> None:
    first = replay(r, tmp_path / "one")
    second = replay(r, tmp_path / "two")
    names = [p.name for p in first.paths]
    assert names == [p.name for p in second.paths] and len(names) == 8
    for a, b in zip(first.paths, second.paths, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    # Not trivially equal: the run traded.
    assert first.fills >= 5 and first.outcomes == {"REJECTED": 1, "VALIDATED": 3}


def test_the_replay_trades_through_the_real_pipeline_as_client_3(
    r: redis.Redis, tmp_path: Path
) -> None:
    result = replay(r, tmp_path)
    engine = make_engine(result.ledger_url)
    with engine.connect() as conn:
        orders = conn.execute(sa.select(execution_orders)).all()
        refused = conn.execute(
            sa.select(intents.c.reject_reason).where(intents.c.signal_id == "rp-bad")
        ).scalar_one()
    engine.dispose()
    assert orders and {o.client_id for o in orders} == {3}
    # Intake refused the fractional quantity, as it would live.
    assert refused == "FRACTIONAL_QUANTITY"
    templates = {o.client_order_id.rsplit("-", 1)[0].split("-", 2)[2] for o in orders}
    assert templates == {"sweep", "twap"}  # High urgency sweeps, a Passive TWAP
    fills = rows(tmp_path / "fills.csv")
    # The sweep at the touch met the displayed ask size and swept the rest on the next step.
    first, second = fills[0], fills[1]
    assert (first["signal_id"], first["side"], first["price"]) == ("rp-aapl-buy", "BUY", "200.05")
    assert int(first["shares"]) + int(second["shares"]) == 500
    # The TWAP: 6 slices of 100 at 20 s, each an IOC limit filled in full.
    twap = [f for f in fills if f["signal_id"] == "rp-msft-twap"]
    assert sum(int(f["shares"]) for f in twap) == 600 and len(twap) >= 6
    # The books agree with the fills (average cost from the fills alone) and the last quote.
    positions = {p["symbol"]: p for p in rows(tmp_path / "positions.csv")}
    for symbol, pos in positions.items():
        mine = [f for f in fills if f["symbol"] == symbol]
        qty = sum(Decimal(f["shares"]) * (1 if f["side"] == "BUY" else -1) for f in mine)
        assert Decimal(pos["quantity"]) == qty
        fees = sum(Decimal(f["commission"]) for f in mine)
        assert Decimal(pos["fees"]) == fees
    msft = positions["MSFT"]
    cost = sum(Decimal(f["shares"]) * Decimal(f["price"]) for f in twap)
    assert Decimal(msft["avg_cost"]) == cost / 600
    last_bid = [q for q in rows(QUOTES) if q["symbol"] == "MSFT"][-1]["bid"]
    assert Decimal(msft["mark"]) > Decimal(last_bid)  # marked at the mid of the last quote


def test_a_parameter_changes_the_outcome(r: redis.Redis, tmp_path: Path) -> None:
    base = replay(r, tmp_path / "base")
    passive = replay(r, tmp_path / "passive", "Momentum_EQ:urgency=Passive")
    orders = rows(passive.out_dir / "orders.csv")
    assert {o["client_order_id"].split("-")[2] for o in orders} == {"twap"}
    assert rows(base.out_dir / "pnl.csv") != rows(passive.out_dir / "pnl.csv")


def _epm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_DATA_DIR": str(tmp_path / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "epm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_epm_replay_compares_runs_side_by_side(tmp_path: Path) -> None:
    done = _epm(
        tmp_path,
        "replay",
        str(QUOTES),
        "--signals",
        str(SIGNALS),
        "--param",
        "urgency=High,Passive",
        "--out",
        str(tmp_path / "out"),
        "--format",
        "csv",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "run-1" / "pnl.csv").exists()
    assert (tmp_path / "out" / "run-2" / "pnl.csv").exists()
    table = [line for line in done.stdout.splitlines() if "Momentum_EQ" in line and "│" in line]
    assert len(table) == 2
    assert "urgency=High" in table[0] and "urgency=Passive" in table[1]


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4002", "127.0.0.1:7497", "gateway.example:4001"])
def test_a_replay_refuses_any_gateway_endpoint_before_opening_anything(
    tmp_path: Path, endpoint: str
) -> None:
    out = tmp_path / "out"
    done = _epm(tmp_path, "replay", str(QUOTES), "--endpoint", endpoint, "--out", str(out))
    assert done.returncode == 2
    assert f"refusing endpoint {endpoint!r}" in done.stderr
    assert not out.exists()


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    naive = tmp_path / "naive.csv"
    naive.write_text("ts,symbol,bid,ask\n2026-12-03T10:00:00,AAPL,1,2\n")
    done = _epm(tmp_path, "replay", str(naive))
    assert done.returncode == 2 and "row 2: ts" in done.stderr and "no UTC offset" in done.stderr
    unknown = _epm(tmp_path, "replay", str(tmp_path / "missing.csv"))
    assert unknown.returncode == 2 and "no data file" in unknown.stderr
    bad_param = _epm(tmp_path, "replay", str(QUOTES), "--param", "colour=red")
    assert bad_param.returncode == 2 and "not an intent field" in bad_param.stderr


def test_a_recorded_simulator_session_replays_as_the_session_itself(
    r: redis.Redis, tmp_path: Path
) -> None:
    """A scenario stepped in-process, and the same session kept with `--record` and replayed
    from Parquet: the same extracts, byte for byte."""
    from datetime import date

    from epm.replay_sources import record, simulate
    from services.replay.run import TimedIntent

    session = simulate(None, day=date(2026, 12, 3), seed=3, seconds=150)
    first = session.events[0].ts
    intents = [
        TimedIntent(
            first + timedelta(seconds=5),
            {
                "signal_id": "sim-1",
                "strategy": "Momentum_EQ",
                "instrument": "AAPL",
                "side": "BUY",
                "quantity": "200",
                "urgency": "High",
                "time_in_force": "DAY",
            },
        )
    ]
    direct = run_replay(
        session.events,
        intents,
        session.contracts,
        tmp_path / "direct",
        redis_client=r,
        client_id=3,
    )
    kept = load_data(record(session, tmp_path / "session.parquet"))
    r.flushdb()
    again = run_replay(
        kept.events, intents, kept.contracts, tmp_path / "kept", redis_client=r, client_id=3
    )
    assert direct.fills >= 1 and direct.events == again.events == 150 * 10
    for a, b in zip(direct.paths, again.paths, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_a_peg_rests_and_fills_and_a_bracket_is_refused_not_faked(
    r: redis.Redis, tmp_path: Path
) -> None:
    from services.replay.run import TimedIntent

    source = load_data(QUOTES)
    t0 = source.events[0].ts
    base = {"strategy": "Momentum_EQ", "side": "BUY", "time_in_force": "DAY"}
    intents = [
        TimedIntent(
            t0 + timedelta(seconds=5),
            {
                **base,
                "signal_id": "peg",
                "instrument": "AAPL",
                "quantity": "300",
                "urgency": "Normal",
            },
        ),
        TimedIntent(
            t0 + timedelta(seconds=20),
            {
                **base,
                "signal_id": "bracket",
                "instrument": "MSFT",
                "quantity": "100",
                "urgency": "High",
                "params": {"trail_percent": "0.5"},
            },
        ),
    ]
    run_replay(source.events, intents, source.contracts, tmp_path, redis_client=r, client_id=3)
    orders = {o["client_order_id"]: o for o in rows(tmp_path / "orders.csv")}
    assert orders["epm-1-peg"]["state"] == "FILLED"
    assert orders["epm-1-peg"]["filled_qty"] == "300"
    assert {orders["epm-2-bracket-entry"]["state"], orders["epm-2-bracket-stop"]["state"]} == {
        "REJECTED"
    }
    assert [f["signal_id"] for f in rows(tmp_path / "fills.csv")] == ["peg"]
