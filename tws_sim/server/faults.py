"""Fault timing: pacing per connection and the connectivity faults a scenario schedules.

Faults are data in the scenario (the market part loads them); this module turns them into
*when* things happen on the simulated clock, so the driver only asks "what is due now?".
Pacing is measured on the wall clock (IB counts real messages per real second), everything
else on the simulated clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PACING_LIMIT = 50  # messages per second per connection (IB's API limit)
PACING_STRIKES = 3  # violating seconds within PACING_STRIKE_WINDOW before IB-like disconnect
PACING_STRIKE_WINDOW = 60.0


class PacingMeter:
    """Counts one connection's messages per wall-clock second.

    IB answers a client that sends more than 50 messages in a second with error 100 and does not
    act on the excess; a client that keeps doing it gets disconnected. `admit` says whether one
    message may be processed and whether this is the first excess message of the current second
    (the one that earns the error 100), and `should_disconnect` says when the strikes add up.
    """

    __slots__ = ("_count", "_limit", "_strikes", "_window_start", "rejected")

    def __init__(self, limit: int | None = PACING_LIMIT) -> None:
        self._limit = limit
        self._window_start = -1.0
        self._count = 0
        self._strikes: list[float] = []
        self.rejected = 0

    def admit(self, now_mono: float) -> tuple[bool, bool]:
        """(process this message?, send error 100 now?) for a message received at `now_mono`."""
        if self._limit is None:
            return True, False
        if now_mono - self._window_start >= 1.0:
            self._window_start = now_mono
            self._count = 0
        self._count += 1
        if self._count <= self._limit:
            return True, False
        self.rejected += 1
        first = self._count == self._limit + 1
        if first:
            self._strikes = [t for t in self._strikes if now_mono - t < PACING_STRIKE_WINDOW]
            self._strikes.append(now_mono)
        return False, first

    @property
    def count(self) -> int:
        """Messages counted in the current one-second window."""
        return self._count

    def take(self, now_mono: float) -> bool:
        """`+PACEAPI` mode: may one queued message go now? (no error, no strike)."""
        if self._limit is None:
            return True
        if now_mono - self._window_start >= 1.0:
            self._window_start = now_mono
            self._count = 0
        if self._count < self._limit:
            self._count += 1
            return True
        return False

    def wait_s(self, now_mono: float) -> float:
        """Seconds until the current window ends."""
        return max(0.0, self._window_start + 1.0 - now_mono)

    def should_disconnect(self) -> bool:
        return len(self._strikes) >= PACING_STRIKES


@dataclass(frozen=True, slots=True)
class FaultAction:
    """One thing the server must do at `at` (simulated time).

    kinds: "disconnect" (drop every socket, refuse connects for `duration_s`), "reconnect_open"
    (listen again), "connectivity_lost" / "connectivity_restored" (1100 / 1102 notices with the
    sockets kept), "md_farm_down" / "md_farm_up" (2103 / 2104), "duplicate_status" (the engine's
    order statuses are sent twice while active), "duplicate_status_off".
    """

    at: datetime
    kind: str
    duration_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


# Scenario fault kinds the server acts on → the actions at the start and end of their window.
# delayed_commissions, execution_correction, reject_rule and combo_unfillable are the engine's.
_SERVER_FAULTS: dict[str, tuple[str, str]] = {
    "disconnect": ("disconnect", "reconnect_open"),
    "md_farm_drop": ("md_farm_down", "md_farm_up"),
    "duplicate_order_status": ("duplicate_status", "duplicate_status_off"),
}


def server_actions(faults: Iterable[Any], session_start: datetime) -> list[FaultAction]:
    """Expand a scenario's timed faults (`tws_sim.market.scenario` models with `kind`,
    `begins(start)` and `ends(start)`) into the server's start/end actions, in time order.

    A disconnect without `refuse` drops the sockets but accepts new connects at once; a window
    without `duration_s` never ends.
    """
    actions: list[FaultAction] = []
    for fault in faults:
        pair = _SERVER_FAULTS.get(str(getattr(fault, "kind", "")))
        if pair is None:
            continue
        begins = fault.begins(session_start)
        ends = fault.ends(session_start)
        duration = (ends - begins).total_seconds() if ends is not None else 0.0
        if pair[0] == "disconnect" and not getattr(fault, "refuse", True):
            duration = 0.0
        actions.append(FaultAction(at=begins, kind=pair[0], duration_s=duration))
        if ends is not None and pair[0] != "disconnect":
            actions.append(FaultAction(at=ends, kind=pair[1]))
    actions.sort(key=lambda a: a.at)
    return actions


class FaultSchedule:
    """A time-ordered queue of `FaultAction`s; `due(now)` pops everything at or before `now`."""

    def __init__(self, actions: Iterable[FaultAction] = ()) -> None:
        self._heap: list[tuple[datetime, int, FaultAction]] = []
        self._seq = 0
        for action in actions:
            self.add(action)

    def add(self, action: FaultAction) -> None:
        heapq.heappush(self._heap, (action.at, self._seq, action))
        self._seq += 1

    def due(self, now: datetime) -> list[FaultAction]:
        out: list[FaultAction] = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def __len__(self) -> int:
        return len(self._heap)
