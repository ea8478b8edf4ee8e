"""The session's clock as a value: how the venue's time maps to the wall clock.

Trading rules (a TWAP's cadence and deadline, `good_till`, a roll's window, the 0DTE flat-by
time, the trading day) run on the *session* clock: the wall clock in production, the venue's
under an accelerated simulator (`epm sim --speed 60`). Infrastructure waits (re-sends, holds on
stale data, contract lookups, market-data age) stay on the wall clock, because the processes
and sockets they wait for do not speed up with the venue.

Everything the ledger stores is a wall-clock instant. A planner works in session time; its times
are mapped to the wall clock once, when the plan is saved (`to_wall`). The map is linear (the
venue's time runs at `rate` venue seconds per wall second from an anchor), so a plan made at one
speed keeps its spacing in venue time as long as the speed does not change mid-plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SessionClock:
    """Venue time = `venue_anchor` + (wall − `wall_anchor`) × `rate`."""

    wall_anchor: datetime
    venue_anchor: datetime
    rate: float = 1.0

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"a session clock runs forward: rate {self.rate}")
        if self.wall_anchor.tzinfo is None or self.venue_anchor.tzinfo is None:
            raise ValueError("a session clock's anchors are aware instants")

    @property
    def is_wall(self) -> bool:
        """Whether session time is wall time (production, or no venue clock known)."""
        return self.rate == 1.0 and self.wall_anchor == self.venue_anchor

    def session_at(self, wall: datetime) -> datetime:
        """The session's time at wall-clock instant `wall`."""
        if self.is_wall:
            return wall
        return self.venue_anchor + (wall - self.wall_anchor) * self.rate

    def to_wall(self, session: datetime) -> datetime:
        """The wall-clock instant at which the session's clock reads `session`."""
        if self.is_wall:
            return session
        return self.wall_anchor + (session - self.venue_anchor) / self.rate

    def wall_span(self, span: timedelta) -> timedelta:
        """How long `span` of session time lasts on the wall clock."""
        return span if self.is_wall else span / self.rate


WALL_CLOCK = SessionClock(_EPOCH, _EPOCH, 1.0)
