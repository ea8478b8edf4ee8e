"""The clock the session rules follow: the wall clock, or the venue's (`EPM_CLOCK=venue`).

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

CLOCK_KEY = "ib:clock"  # written by the bridge (`ibgateway_bridge.venue_clock.CLOCK_KEY`)
MAX_SAMPLE_AGE_S = 10.0


def venue_now(client: redis.Redis, wall_now: datetime) -> datetime | None:
    """The venue's time now, from the bridge's last sample; None without a fresh one."""
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
    return datetime.fromtimestamp(venue + max(elapsed, 0.0) * rate, UTC)


def session_now(settings: Settings, client: redis.Redis, wall_now: datetime) -> datetime:
    """Now, for the rules of the trading session, on the configured clock."""
    if settings.clock == "venue":
        venue = venue_now(client, wall_now)
        if venue is not None:
            return venue
    return wall_now
