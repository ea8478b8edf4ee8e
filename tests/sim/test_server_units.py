"""Server parts that need no socket: pacing, fault timing, request parsing helpers, tick diffs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tws_sim.market.scenario import Scenario
from tws_sim.server.app import resolve_start
from tws_sim.server.faults import FaultSchedule, PacingMeter, server_actions
from tws_sim.server.handlers import parse_bar_size, parse_duration
from tws_sim.server.push import ASK, BID, BID_SIZE, LAST, VOLUME, quote_ticks
from tws_sim.types import Quote

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 ET

SCENARIO_YAML = """
name: t
always_open: true
instruments:
  - {symbol: SPY, price: 600}
faults:
  - {kind: disconnect, after_s: 30, duration_s: 10}
  - {kind: disconnect, after_s: 100, duration_s: 5, refuse: false}
  - {kind: md_farm_drop, after_s: 20, duration_s: 15}
  - {kind: duplicate_order_status, after_s: 5}
  - {kind: delayed_commissions, after_s: 0, duration_s: 60, delay_s: 3}
"""


def test_pacing_admits_fifty_then_rejects_with_one_error_per_second() -> None:
    meter = PacingMeter(50)
    results = [meter.admit(10.0 + i * 0.001) for i in range(60)]
    assert all(ok for ok, _ in results[:50])
    assert [ok for ok, _ in results[50:]] == [False] * 10
    assert [warn for _, warn in results[50:]] == [True] + [False] * 9
    assert meter.rejected == 10
    # A new second starts a new window.
    assert meter.admit(11.5) == (True, False)
    assert not meter.should_disconnect()


def test_pacing_strikes_add_up_to_a_disconnect() -> None:
    meter = PacingMeter(2)
    for second in range(3):
        for i in range(3):
            meter.admit(100.0 + second * 1.5 + i * 0.01)
    assert meter.should_disconnect()


def test_pacing_disabled_admits_everything() -> None:
    meter = PacingMeter(None)
    assert all(meter.admit(1.0) == (True, False) for _ in range(1000))


def test_server_actions_expand_scenario_faults_in_time_order() -> None:
    scenario = Scenario.from_text(SCENARIO_YAML)
    actions = server_actions(scenario.faults, START)
    got = [(a.kind, (a.at - START).total_seconds(), a.duration_s) for a in actions]
    assert got == [
        ("duplicate_status", 5.0, 0.0),
        ("md_farm_down", 20.0, 15.0),
        ("disconnect", 30.0, 10.0),
        ("md_farm_up", 35.0, 0.0),
        ("disconnect", 100.0, 0.0),  # refuse: false → drop the sockets, accept at once
    ]


def test_fault_schedule_pops_only_what_is_due() -> None:
    scenario = Scenario.from_text(SCENARIO_YAML)
    schedule = FaultSchedule(server_actions(scenario.faults, START))
    assert schedule.due(START) == []
    assert [a.kind for a in schedule.due(START + timedelta(seconds=25))] == [
        "duplicate_status",
        "md_farm_down",
    ]
    assert [a.kind for a in schedule.due(START + timedelta(seconds=200))] == [
        "disconnect",
        "md_farm_up",
        "disconnect",
    ]
    assert len(schedule) == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("1800 S", 1800), ("1 D", 86_400), ("2 W", 1_209_600)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1800", "x S", "-1 D", "3 Q"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("5 secs", 5), ("1 min", 60), ("15 mins", 900), ("1 hour", 3600)]
)
def test_parse_bar_size(text: str, seconds: int) -> None:
    assert parse_bar_size(text) == seconds


def test_parse_bar_size_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_bar_size("5 fortnights")


def test_resolve_start_et_wall_time_on_scenario_day() -> None:
    scenario = Scenario.from_text(SCENARIO_YAML + "session_date: 2026-11-24\n")
    got = resolve_start(scenario, "15:55", START)
    assert got == datetime(2026, 11, 24, 20, 55, tzinfo=UTC)  # 15:55 EST


def test_resolve_start_moves_to_next_session_unless_always_open() -> None:
    text = SCENARIO_YAML.replace("always_open: true", "always_open: false")
    scenario = Scenario.from_text(text + "session_date: 2026-11-26\n")  # Thanksgiving
    got = resolve_start(scenario, "10:00", START)
    assert got == datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def test_resolve_start_defaults_to_wall_now_and_rejects_bad_text() -> None:
    scenario = Scenario.from_text(SCENARIO_YAML)
    assert resolve_start(scenario, None, START) == START
    with pytest.raises(ValueError):
        resolve_start(scenario, "25:99", START)


def _quote(**kw: object) -> Quote:
    base = dict(
        con_id=1,
        ts=START,
        bid=Decimal("100.00"),
        ask=Decimal("100.02"),
        bid_size=Decimal(300),
        ask_size=Decimal(400),
        last=Decimal("100.01"),
        last_size=Decimal(100),
        volume=Decimal(5000),
        high=Decimal("101"),
        low=Decimal("99"),
        close=Decimal("99.5"),
        open=Decimal("99.8"),
    )
    base.update(kw)
    return Quote(**base)  # type: ignore[arg-type]


def test_quote_ticks_full_then_only_changes() -> None:
    first = _quote()
    full = quote_ticks(first, None)
    assert {t for t, _, _ in full} >= {BID, ASK, LAST, VOLUME}
    assert quote_ticks(first, first) == []
    moved = _quote(bid=Decimal("100.01"), ask_size=Decimal(500))
    ticks = quote_ticks(moved, first)
    assert (BID, Decimal("100.01"), Decimal(300)) in ticks
    assert any(t == 3 and v == Decimal(500) and s is None for t, v, s in ticks)  # ask size alone
    size_only = _quote(bid_size=Decimal(900))
    assert quote_ticks(size_only, first) == [(BID_SIZE, Decimal(900), None)]


def test_pace_api_take_and_wait() -> None:
    meter = PacingMeter(3)
    assert [meter.take(5.0) for _ in range(4)] == [True, True, True, False]
    assert meter.wait_s(5.25) == pytest.approx(0.75)
    assert meter.take(6.0) is True
    assert meter.rejected == 0 and not meter.should_disconnect()
