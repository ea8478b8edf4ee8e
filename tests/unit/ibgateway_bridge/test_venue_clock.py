"""The venue clock from reqCurrentTime answers: its rate, real time snapped, the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ibgateway_bridge.venue_clock import VenueClockSampler

W0 = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
V0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # a simulator started at 10:00 ET


def test_an_accelerated_venue_is_measured_at_its_speed() -> None:
    clock = VenueClockSampler()
    first = clock.sample(V0, W0)
    assert float(first["rate"]) == 1.0  # one answer says nothing about the rate yet
    fields: dict[str, str] = {}
    for k in range(1, 11):
        # Whole venue seconds, as IB answers: 60 per wall second, a little jitter on arrival.
        fields = clock.sample(V0 + timedelta(seconds=60 * k), W0 + timedelta(seconds=k + 0.01))
    assert abs(float(fields["rate"]) - 60.0) < 0.5
    assert float(fields["venue"]) == (V0 + timedelta(seconds=600)).timestamp()


def test_a_real_time_venue_reads_as_real_time_despite_whole_second_answers() -> None:
    clock = VenueClockSampler()
    fields: dict[str, str] = {}
    for k in range(0, 12):
        # Answers truncated to the second while the wall clock sits mid-second.
        fields = clock.sample(V0 + timedelta(seconds=k), W0 + timedelta(seconds=k + 0.9))
    assert float(fields["rate"]) == 1.0


def test_the_rate_follows_a_change_of_speed_within_its_window() -> None:
    clock = VenueClockSampler()
    venue = V0
    for k in range(40):  # 40 s at real time
        clock.sample(venue + timedelta(seconds=k), W0 + timedelta(seconds=k))
    venue += timedelta(seconds=39)
    fields: dict[str, str] = {}
    for k in range(1, 41):  # then 40 s at 10x
        fields = clock.sample(venue + timedelta(seconds=10 * k), W0 + timedelta(seconds=39 + k))
    assert abs(float(fields["rate"]) - 10.0) < 0.5
