"""The clock the session rules follow: the wall clock, or the venue's (`EPM_CLOCK=venue`).

`session_clock` reads it as a `models.clock.SessionClock`, the one value every time rule of the
orders path is given (planning, `good_till`, the 0DTE flat-by, the trading day).

The bridge keeps the venue's time in the Redis hash `ib:clock` (`ibgateway_bridge.venue_clock`):
its last reqCurrentTime answer (`venue`, epoch seconds), when that came (`wall`) and the rate at
which venue time passes per wall second. The venue's now is extrapolated from it; a sample older
than `MAX_SAMPLE_AGE_S` (the bridge down or disconnected) falls back to the wall clock rather
than run the rules on a frozen time.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from epm.settings import Settings
from models.clock import WALL_CLOCK, SessionClock

CLOCK_KEY = "ib:clock"  # written by the bridge (`ibgateway_bridge.venue_clock.CLOCK_KEY`)
MAX_SAMPLE_AGE_S = 10.0


def _venue_clock(client: redis.Redis, wall_now: datetime) -> SessionClock | None:
    """The bridge's last sample as a clock; None without a fresh one."""
    raw = client.hgetall(CLOCK_KEY)
    fields = {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }
    try:
        venue, wall, rate = (float(fields[k]) for k in ("venue", "wall", "rate"))
    except (KeyError, ValueError):
        return None
    elapsed = wall_now.timestamp() - wall
    if elapsed > MAX_SAMPLE_AGE_S or elapsed < -MAX_SAMPLE_AGE_S:
        return None
    if rate <= 0:
        return None
    return SessionClock(datetime.fromtimestamp(wall, UTC), datetime.fromtimestamp(venue, UTC), rate)


def venue_now(client: redis.Redis, wall_now: datetime) -> datetime | None:
    """The venue's time now, from the bridge's last sample; None without a fresh one."""
    clock = _venue_clock(client, wall_now)
    if clock is None:
        return None
    # A sample stamped a little after `wall_now` (clock skew between hosts) reads as its own time.
    return clock.session_at(max(wall_now, clock.wall_anchor))


def session_clock(settings: Settings, client: redis.Redis, wall_now: datetime) -> SessionClock:
    """The session's clock on the configured source: the wall clock unless `EPM_CLOCK=venue`
    and the bridge's sample is fresh."""
    if settings.clock == "venue":
        clock = _venue_clock(client, wall_now)
        if clock is not None:
            return clock
    return WALL_CLOCK


def session_now(settings: Settings, client: redis.Redis, wall_now: datetime) -> datetime:
    """Now, for the rules of the trading session, on the configured clock."""
    return session_clock(settings, client, wall_now).session_at(wall_now)
