"""The venue's clock, as its reqCurrentTime answers show it, published for epm's time rules.

A real gateway's clock runs with the wall clock; the simulator's may run faster (`epm sim
--speed 60`) and start elsewhere in the day. Rules that follow the trading session (0DTE flat
at 15:55 ET) must follow the venue's clock, so the bridge asks for the venue's time every second
on its account connection and keeps, in `ib:clock`, the last answer, when it came, and the
rate at which venue time passes per wall second (from answers up to `WINDOW_S` apart; IB answers
in whole seconds, so a rate within `REAL_TIME_SNAP` of 1 is taken as real time).
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

CLOCK_KEY = "ib:clock"
WINDOW_S = 30.0
MIN_SPAN_S = 5.0
REAL_TIME_SNAP = 0.15


class VenueClockSampler:
    """Turns currentTime answers into the `ib:clock` fields (pure: times are parameters)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque()

    def sample(self, venue: datetime, wall: datetime) -> dict[str, str]:
        """Record one answer; the fields to write."""
        v, w = venue.timestamp(), wall.timestamp()
        self._samples.append((v, w))
        while len(self._samples) > 2 and w - self._samples[0][1] > WINDOW_S:
            self._samples.popleft()
        v0, w0 = self._samples[0]
        rate = 1.0
        if w - w0 >= MIN_SPAN_S:
            measured = (v - v0) / (w - w0)
            rate = 1.0 if abs(measured - 1.0) <= REAL_TIME_SNAP else max(measured, 0.0)
        return {"venue": f"{v:.3f}", "wall": f"{w:.6f}", "rate": f"{rate:.6f}"}
