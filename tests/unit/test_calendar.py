"""The exchange calendar's session closes as the DAY rule reads them (XNYS, early closes)."""

from __future__ import annotations

from datetime import UTC, datetime

from epm.calendar import next_session_close


def test_a_day_intent_received_during_the_session_belongs_to_todays_close() -> None:
    morning = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # Thursday 10:00 ET
    assert next_session_close(morning) == datetime(2026, 12, 3, 21, 0, tzinfo=UTC)


def test_after_the_close_it_belongs_to_the_next_session_past_the_weekend() -> None:
    friday_evening = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)  # Friday 18:00 ET
    assert next_session_close(friday_evening) == datetime(2026, 12, 7, 21, 0, tzinfo=UTC)


def test_an_early_close_day_ends_at_13_00_et() -> None:
    black_friday = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # 10:00 ET, the day after Thanksgiving
    assert next_session_close(black_friday) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
