"""The bridge publishes the venue's clock (`ib:clock`): against `epm sim --speed 60` the rate it
measures is the simulator's speed and epm's session clock reads the simulator's time."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from epm.clock import session_now, venue_now
from epm.settings import Settings
from tests.bridge.harness import bridge_in_process, poll, sim_thread, wait_ready


def test_the_venue_clock_runs_at_the_simulators_speed(r: redis.Redis, redis_url: str) -> None:
    with sim_thread(speed=60.0) as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r, client_id=2)
        rate = poll(
            lambda: (
                float(r.hget("ib:clock", "rate") or 0)
                if float(r.hget("ib:clock", "rate") or 0) > 1
                else None
            ),
            30,
            what="a measured rate",
        )
        assert 50 <= rate <= 70, rate
        wall = datetime.now(UTC)
        venue = venue_now(r, wall)
        at_sim = sim.call(lambda s: s.now())
        assert venue is not None and abs((venue - at_sim).total_seconds()) < 120
        assert session_now(Settings(clock="venue"), r, wall) == venue
