"""Capped exponential backoff with full jitter, for every wait-and-retry loop of epm.

The bridge's reconnects, refusals Redis would not take, marker writes after the bytes left, the
outbox's publish during a broker outage, the relay riding out a Redis restart: all wait the same
way, so a fleet of retries never synchronizes.
"""

from __future__ import annotations

import random


class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog's "full jitter")."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
