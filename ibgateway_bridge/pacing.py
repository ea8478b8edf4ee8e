"""Pacing: never more than N messages in any one-second window per IB connection; cancels first.

IB disconnects (error 100) a client that sends more than 50 messages a second. A plain token bucket
is not enough: a full bucket allows a burst of N at once and then N more within the same second.
`SlidingWindowLimiter` instead remembers the send times of the last N messages and lets a message go
only when the oldest of them is more than a window ago, so every one-second window, wherever it
starts, holds at most N. Every outgoing message of a connection passes through it (the EClient's
`sendMsg` is the choke point), not only orders.

`PriorityBacklog` orders what waits for the limiter: cancels and the global cancel before modifies,
modifies before placements, data requests last; first in, first out within a priority. Priority
applies across orders only: the commands of one order share a *lane* and leave in the order they
came, one at a time (a modify queued behind its placement must not reach IB first, where it would
be taken as the new order and the placement would then revert it). A command handed back after a
failed send keeps its place at the front of its lane.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

T = TypeVar("T")

BACKLOG = Gauge("epm_bridge_backlog", "Commands waiting for the pacer", ["connection"])
SEND_WAIT = Histogram(
    "epm_bridge_send_wait_seconds",
    "Time from a command entering the backlog to its bytes on the socket",
    ["connection", "kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PACER_WAIT = Histogram(
    "epm_bridge_pacer_wait_seconds",
    "Time a message waited for a pacing slot",
    ["connection"],
    buckets=(0.0005, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2),
)
MESSAGES_SENT = Counter("epm_bridge_messages_sent_total", "Messages written", ["connection"])


class Priority(IntEnum):
    """Lower goes first."""

    GLOBAL_CANCEL = 0
    CANCEL = 1
    MODIFY = 2
    PLACE = 3
    REQUEST = 4


class SlidingWindowLimiter:
    """Block until a send keeps every `window`-second window at ≤ `rate` messages."""

    def __init__(
        self,
        rate: int,
        window: float = 1.0,
        connection: str = "orders",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be >= 1")
        self.rate = rate
        # A little over one second: the venue's clock and ours tick apart, and a message that
        # left at the window's edge must not count in two of its windows.
        self.window = window * 1.02
        self._sent: deque[float] = deque()
        self._lock = threading.Condition()
        self._clock = clock
        self._connection = connection

    def delay(self) -> float:
        """Seconds until the next send may go (0 when one may go now)."""
        now = self._clock()
        with self._lock:
            while self._sent and now - self._sent[0] >= self.window:
                self._sent.popleft()
            if len(self._sent) < self.rate:
                return 0.0
            return self._sent[0] + self.window - now

    def acquire(self) -> float:
        """Take a slot, waiting as long as needed; returns the seconds waited."""
        started = self._clock()
        with self._lock:
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.window:
                    self._sent.popleft()
                if len(self._sent) < self.rate:
                    self._sent.append(now)
                    break
                self._lock.wait(timeout=self._sent[0] + self.window - now)
        waited = self._clock() - started
        PACER_WAIT.labels(self._connection).observe(waited)
        MESSAGES_SENT.labels(self._connection).inc()
        return waited


@dataclass(order=True)
class Ticket(Generic[T]):
    """One waiting command; `get` hands it out and the sender returns it with `done`/`requeue`."""

    priority: int
    seq: int
    enqueued_at: float = field(compare=False)
    item: T = field(compare=False)
    lane: Hashable | None = field(default=None, compare=False)


class PriorityBacklog(Generic[T]):
    """Thread-safe priority queue of commands waiting to be sent, with a backlog gauge.

    Within a lane (one order) items leave first in, first out, and a lane's next item becomes
    eligible only once the one handed out is `done`; across lanes the most urgent goes first.
    """

    def __init__(self, connection: str = "orders", clock: Callable[[], float] = time.monotonic):
        self._heap: list[Ticket[T]] = []
        # Per lane: the items waiting behind the lane's head (which is in the heap or out).
        self._behind: dict[Hashable, deque[Ticket[T]]] = {}
        self._active: set[Hashable] = set()
        self._out: set[Hashable] = set()
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._clock = clock
        self._gauge = BACKLOG.labels(connection)

    def put(self, item: T, priority: int, lane: Hashable | None = None) -> None:
        with self._cond:
            ticket = Ticket(priority, next(self._seq), self._clock(), item, lane)
            if lane is not None and lane in self._active:
                self._behind.setdefault(lane, deque()).append(ticket)
            else:
                if lane is not None:
                    self._active.add(lane)
                heapq.heappush(self._heap, ticket)
            self._changed()

    def get(self, timeout: float | None = None) -> Ticket[T] | None:
        """Hand out the most urgent eligible item, or None after `timeout` seconds."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._heap:
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(timeout=remaining)
            ticket = heapq.heappop(self._heap)
            if ticket.lane is not None:
                self._out.add(ticket.lane)
            self._changed()
            return ticket

    def done(self, ticket: Ticket[T]) -> None:
        """The handed-out item is finished: its lane's next item becomes eligible."""
        with self._cond:
            lane = ticket.lane
            if lane is None:
                return
            self._out.discard(lane)
            waiting = self._behind.get(lane)
            if waiting:
                heapq.heappush(self._heap, waiting.popleft())
                if not waiting:
                    del self._behind[lane]
            else:
                self._active.discard(lane)
            self._changed()

    def requeue(self, ticket: Ticket[T]) -> None:
        """Give a handed-out item back; it keeps its sequence, so its lane order holds."""
        with self._cond:
            if ticket.lane is not None:
                self._out.discard(ticket.lane)
            heapq.heappush(self._heap, ticket)
            self._changed()

    def remove_if(self, predicate: Callable[[T], bool]) -> list[T]:
        """Take out every waiting item matching `predicate` (a cancel overtaking its place)."""
        with self._cond:
            waiting = sorted([*self._heap, *(t for q in self._behind.values() for t in q)])
            removed = [t.item for t in waiting if predicate(t.item)]
            if not removed:
                return []
            self._heap = []
            self._behind = {}
            self._active = set(self._out)
            for ticket in (t for t in waiting if not predicate(t.item)):
                lane = ticket.lane
                if lane is not None and lane in self._active:
                    self._behind.setdefault(lane, deque()).append(ticket)
                else:
                    if lane is not None:
                        self._active.add(lane)
                    self._heap.append(ticket)
            heapq.heapify(self._heap)
            self._changed()
            return removed

    def items(self) -> list[T]:
        with self._cond:
            return [t.item for t in sorted(self._waiting())]

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap) + sum(len(q) for q in self._behind.values())

    def _waiting(self) -> list[Ticket[T]]:
        return [*self._heap, *(t for q in self._behind.values() for t in q)]

    def _changed(self) -> None:
        self._gauge.set(len(self._heap) + sum(len(q) for q in self._behind.values()))
        self._cond.notify()
