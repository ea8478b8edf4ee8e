"""SimClock (stepped, accelerated, ET starts) and the XNYS session helpers."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

import pytest

from tws_sim.market import SimClock, in_regular_hours, session_bounds
from tws_sim.market.clock import (
    extended_bounds,
    next_session,
    next_session_close,
    next_session_open,
    parse_hhmm,
    sessions_from,
)

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def test_clock_stepped_only_moves_on_advance() -> None:
    clock = SimClock.stepped(START)
    assert clock.now() == START
    assert clock.now() == START
    assert clock.advance(1.25) == START + timedelta(seconds=1.25)
    assert clock.now() == START + timedelta(seconds=1.25)
    with pytest.raises(ValueError):
        clock.advance(-1)
    assert clock.wall_seconds_until(START + timedelta(hours=1)) == float("inf")


def test_clock_accelerated_runs_speed_times_wall() -> None:
    clock = SimClock(START, speed=100.0)
    deadline = time.monotonic() + 5
    while clock.now() < START + timedelta(seconds=5) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a running clock; no condition to wait on but the clock itself
    elapsed = (clock.now() - START).total_seconds()
    assert 5 <= elapsed < 300
    jumped = clock.advance(3600)
    assert jumped >= START + timedelta(seconds=3605)
    assert clock.wall_seconds_until(jumped + timedelta(seconds=100)) == pytest.approx(1, abs=0.2)


def test_clock_rejects_naive_start_and_bad_speed() -> None:
    with pytest.raises(ValueError):
        SimClock(datetime(2026, 11, 24, 15, 0))
    with pytest.raises(ValueError):
        SimClock(START, speed=0)


def test_clock_at_et_uses_session_date_and_dst() -> None:
    winter = SimClock.at_et(dtime(15, 55), date(2026, 11, 24), stepped=True)
    assert winter.now() == datetime(2026, 11, 24, 20, 55, tzinfo=UTC)
    summer = SimClock.at_et(dtime(9, 30), date(2026, 7, 1), stepped=True)
    assert summer.now() == datetime(2026, 7, 1, 13, 30, tzinfo=UTC)
    today = SimClock.at_et(dtime(10, 0), stepped=True)
    assert session_bounds(today.now().date()) is not None


def test_calendar_sessions_and_early_close() -> None:
    assert session_bounds(date(2026, 11, 26)) is None  # Thanksgiving
    open_, close = session_bounds(date(2026, 11, 27))
    assert open_ == datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert close == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert next_session(date(2026, 11, 26)) == date(2026, 11, 27)
    assert next_session(date(2026, 11, 27), include_today=False) == date(2026, 11, 30)
    assert sessions_from(date(2026, 11, 25), 3) == [
        date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 30),
    ]  # fmt: skip
    assert in_regular_hours(START)
    assert not in_regular_hours(datetime(2026, 11, 24, 21, 0, tzinfo=UTC))
    # Far outside the calendar: weekdays 09:30-16:00 ET.
    assert session_bounds(date(2040, 1, 7)) is None  # a Saturday
    assert session_bounds(date(2040, 1, 9)) is not None


def test_parse_hhmm() -> None:
    assert parse_hhmm("15:55") == dtime(15, 55)
    assert parse_hhmm(" 09:30:15 ") == dtime(9, 30, 15)
    with pytest.raises(ValueError, match="bad ET time"):
        parse_hhmm("3pm")


def test_extended_hours_and_the_next_session_skip_weekends_and_holidays() -> None:
    et = ZoneInfo("America/New_York")
    wed = extended_bounds(date(2026, 11, 25))
    assert wed is not None
    assert (wed[0].astimezone(et).hour, wed[1].astimezone(et).hour) == (4, 20)
    assert extended_bounds(date(2026, 11, 26)) is None  # Thanksgiving
    fri = extended_bounds(date(2026, 11, 27))
    assert fri is not None and fri[1].astimezone(et).hour == 17  # early close: 13:00 / 17:00
    after_wed_close = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
    assert next_session_open(after_wed_close) == datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert next_session_close(after_wed_close) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    friday_evening = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)
    assert next_session_open(friday_evening) == datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
