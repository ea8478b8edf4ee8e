"""The session clock: venue time mapped to the wall clock, and back, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.clock import WALL_CLOCK, SessionClock

WALL = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
VENUE = datetime(2026, 12, 3, 20, 50, tzinfo=UTC)  # 15:50 ET at the venue


def test_the_wall_clock_is_the_identity() -> None:
    assert WALL_CLOCK.is_wall
    assert WALL_CLOCK.session_at(WALL) == WALL
    assert WALL_CLOCK.to_wall(VENUE) == VENUE
    assert WALL_CLOCK.wall_span(timedelta(seconds=15)) == timedelta(seconds=15)


def test_an_accelerated_venue_runs_sixty_venue_seconds_per_wall_second() -> None:
    clock = SessionClock(WALL, VENUE, 60.0)
    assert not clock.is_wall
    assert clock.session_at(WALL + timedelta(seconds=5)) == VENUE + timedelta(minutes=5)
    # 15:55 ET (the 0DTE flat-by) is five venue minutes away: five wall seconds.
    assert clock.to_wall(VENUE + timedelta(minutes=5)) == WALL + timedelta(seconds=5)
    assert clock.wall_span(timedelta(seconds=15)) == timedelta(seconds=0.25)


@given(
    offset_us=st.integers(min_value=-(10**12), max_value=10**12),
    rate=st.sampled_from([1.0, 2.0, 10.0, 60.0, 0.5]),
)
def test_mapping_to_the_wall_and_back_keeps_the_instant(offset_us: int, rate: float) -> None:
    clock = SessionClock(WALL, VENUE, rate)
    session = VENUE + timedelta(microseconds=offset_us)
    back = clock.session_at(clock.to_wall(session))
    # timedelta arithmetic rounds to the microsecond once each way.
    assert abs(back - session) <= timedelta(microseconds=int(rate) + 1)


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_a_clock_that_stands_still_or_runs_back_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="runs forward"):
        SessionClock(WALL, VENUE, rate)


def test_naive_anchors_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        SessionClock(WALL.replace(tzinfo=None), VENUE, 60.0)
