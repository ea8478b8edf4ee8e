"""Simulated time: `SimClock` (real-time, ×N, or stepped) and the XNYS session calendar.

`SimClock` is the only place in the simulator that reads the wall clock; everything else gets
the simulated `now` as a parameter, so a stepped clock makes runs reproducible.
"""

from __future__ import annotations

import time as _time
import warnings
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")


@lru_cache(maxsize=1)
def _xnys() -> Any:
    # Building the calendar takes ~0.5 s; build it once per process, on first use.
    import exchange_calendars

    with warnings.catch_warnings():
        # exchange_calendars trips pandas' own deprecation warnings while it builds; not ours.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return exchange_calendars.get_calendar("XNYS")


@lru_cache(maxsize=4096)
def session_bounds(day: date) -> tuple[datetime, datetime] | None:
    """Regular-hours (open, close) of an XNYS session in aware UTC, None on a non-session day.

    Early closes (13:00 ET) come from the calendar. Days outside the calendar's range fall back
    to Monday-Friday 09:30-16:00 ET so the simulator never fails on a far date.
    """
    import pandas as pd

    cal = _xnys()
    ts = pd.Timestamp(day)
    if cal.first_session <= ts <= cal.last_session:
        if not cal.is_session(ts):
            return None
        open_ = cal.session_open(ts).to_pydatetime().astimezone(UTC)
        close = cal.session_close(ts).to_pydatetime().astimezone(UTC)
        return open_, close
    if day.weekday() >= 5:
        return None
    return (
        datetime.combine(day, dtime(9, 30), tzinfo=ET).astimezone(UTC),
        datetime.combine(day, dtime(16, 0), tzinfo=ET).astimezone(UTC),
    )


@lru_cache(maxsize=4096)
def extended_bounds(day: date) -> tuple[datetime, datetime] | None:
    """The hours US stocks trade on an XNYS session day, extended hours included (aware UTC):
    04:00 ET to 20:00 ET, or to 17:00 ET on an early-close day (IB's tradingHours for a stock);
    None on a non-session day."""
    bounds = session_bounds(day)
    if bounds is None:
        return None
    early = bounds[1].astimezone(ET).hour < 16
    return et_datetime(day, dtime(4, 0)), et_datetime(day, dtime(17 if early else 20, 0))


def next_session_open(after: datetime) -> datetime:
    """The regular open of the first XNYS session that opens strictly after `after`."""
    day = after.astimezone(ET).date()
    for _ in range(30):
        bounds = session_bounds(day)
        if bounds is not None and bounds[0] > after:
            return bounds[0]
        day += timedelta(days=1)
    raise ValueError(f"no XNYS session within 30 days of {after}")


def next_session_close(after: datetime) -> datetime:
    """The regular close of the first XNYS session that closes strictly after `after`."""
    day = after.astimezone(ET).date()
    for _ in range(30):
        bounds = session_bounds(day)
        if bounds is not None and bounds[1] > after:
            return bounds[1]
        day += timedelta(days=1)
    raise ValueError(f"no XNYS session within 30 days of {after}")


def is_session(day: date) -> bool:
    """True when `day` is an XNYS trading day."""
    return session_bounds(day) is not None


def next_session(day: date, include_today: bool = True) -> date:
    """The first XNYS session on or after `day` (strictly after when `include_today` is False)."""
    d = day if include_today else day + timedelta(days=1)
    for _ in range(30):
        if is_session(d):
            return d
        d += timedelta(days=1)
    raise ValueError(f"no XNYS session within 30 days of {day}")


def sessions_from(day: date, count: int) -> list[date]:
    """`count` consecutive XNYS sessions starting on or after `day`."""
    out: list[date] = []
    d = next_session(day)
    while len(out) < count:
        out.append(d)
        d = next_session(d, include_today=False)
    return out


def in_regular_hours(now: datetime) -> bool:
    """True when `now` (aware) is inside an XNYS regular session."""
    bounds = session_bounds(now.astimezone(ET).date())
    return bounds is not None and bounds[0] <= now < bounds[1]


def et_datetime(day: date, at: dtime) -> datetime:
    """An ET wall time on `day` as aware UTC (DST handled by zoneinfo)."""
    return datetime.combine(day, at, tzinfo=ET).astimezone(UTC)


def parse_hhmm(text: str) -> dtime:
    """Parse `--start` style 'HH:MM' or 'HH:MM:SS'; raises ValueError with the bad text."""
    try:
        return dtime.fromisoformat(text.strip())
    except ValueError as e:
        raise ValueError(f"bad ET time {text!r}: expected HH:MM or HH:MM:SS") from e


class SimClock:
    """Simulated time: `start` plus wall time elapsed × `speed`, or stepped by `advance`.

    `SimClock(start, speed)` runs from construction; `SimClock.stepped(start)` stands still until
    `advance(seconds)` is called. `advance` also works on a running clock (it jumps ahead).
    """

    __slots__ = ("_anchor", "_offset", "speed", "start", "stepped_mode")

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware")
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.start = start.astimezone(UTC)
        self.speed = float(speed)
        self.stepped_mode = False
        self._anchor = _time.monotonic()
        self._offset = 0.0  # simulated seconds added by advance()

    @classmethod
    def stepped(cls, start: datetime) -> SimClock:
        """A clock that only moves when `advance` is called (tests, replay, drills)."""
        clock = cls(start)
        clock.stepped_mode = True
        return clock

    @classmethod
    def at_et(
        cls,
        at: dtime,
        session_day: date | None = None,
        speed: float = 1.0,
        stepped: bool = False,
    ) -> SimClock:
        """A clock starting at ET wall time `at` on `session_day`.

        Without a day: today's ET date when it is an XNYS session, else the next session (this
        reads the wall clock, which only the clock may do).
        """
        if session_day is None:
            session_day = next_session(datetime.now(UTC).astimezone(ET).date())
        start = et_datetime(session_day, at)
        return cls.stepped(start) if stepped else cls(start, speed)

    def now(self) -> datetime:
        """The current simulated time (aware UTC)."""
        if self.stepped_mode:
            elapsed = self._offset
        else:
            elapsed = (_time.monotonic() - self._anchor) * self.speed + self._offset
        return self.start + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        """Move simulated time forward by `seconds` (≥ 0) and return the new now."""
        if seconds < 0:
            raise ValueError("a clock never goes backwards")
        self._offset += seconds
        return self.now()

    def wall_seconds_until(self, when: datetime) -> float:
        """Real seconds until simulated `when` (0 when past; inf for a stepped clock)."""
        if self.stepped_mode:
            return float("inf")
        return max(0.0, (when - self.now()).total_seconds() / self.speed)
