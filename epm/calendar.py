"""The exchange calendar (XNYS, from `exchange_calendars`): session closes, early closes
included. The simulator keeps its own copy (`tws_sim.market.clock`): it must not import epm.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")


@lru_cache(maxsize=1)
def _xnys() -> Any:
    # Building the calendar takes ~0.5 s: once per process, on first use.
    import exchange_calendars

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return exchange_calendars.get_calendar("XNYS")


@lru_cache(maxsize=4096)
def session_close(day: date) -> datetime | None:
    """The regular session's close of `day` (aware UTC; 13:00 ET on early-close days), or None
    when `day` is not a session (weekend, holiday) or outside the calendar's range."""
    import pandas as pd

    calendar = _xnys()
    stamp = pd.Timestamp(day)
    try:
        if not calendar.is_session(stamp):
            return None
        close = calendar.session_close(stamp)
    except (ValueError, KeyError):
        return None
    found: datetime = close.to_pydatetime()
    return found


def next_session_close(after: datetime, *, horizon_days: int = 10) -> datetime | None:
    """The first regular close after instant `after` (the session a DAY order placed then
    belongs to: today's if still open, else the next one's); None beyond the calendar."""
    day = trading_day(after)
    for _ in range(horizon_days):
        close = session_close(day)
        if close is not None and close > after:
            return close
        day += timedelta(days=1)
    return None


def trading_day(now: datetime) -> date:
    """The exchange's calendar day at `now` (New York time)."""
    return now.astimezone(ET).date()
