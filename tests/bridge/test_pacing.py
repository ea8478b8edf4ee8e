"""Pacing: the sliding window never allows more than N in any window; priorities order sends."""

from __future__ import annotations

import threading
import time

import pytest

from ibgateway_bridge.pacing import Priority, PriorityBacklog, SlidingWindowLimiter


def max_in_any_window(times: list[float], window: float) -> int:
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_limiter_every_one_second_window_holds_at_most_rate() -> None:
    limiter = SlidingWindowLimiter(20, connection="test-window")
    sent: list[float] = []
    started = time.monotonic()
    for _ in range(50):
        limiter.acquire()
        sent.append(time.monotonic())
    elapsed = time.monotonic() - started
    assert max_in_any_window(sent, 1.0) <= 20
    # 50 messages at 20/s need at least two full windows after the first burst.
    assert elapsed >= 2.0


def test_limiter_delay_zero_until_full() -> None:
    now = [100.0]
    limiter = SlidingWindowLimiter(3, connection="test-delay", clock=lambda: now[0])
    for _ in range(3):
        assert limiter.delay() == 0.0
        limiter.acquire()
    assert limiter.delay() == pytest.approx(1.02)
    now[0] += 1.03
    assert limiter.delay() == 0.0


def test_limiter_rejects_zero_rate() -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0)


def test_backlog_cancels_overtake_placements_fifo_within_priority() -> None:
    backlog: PriorityBacklog[str] = PriorityBacklog(connection="test-prio")
    for i in range(3):
        backlog.put(f"place{i}", Priority.PLACE)
    backlog.put("cancel0", Priority.CANCEL)
    backlog.put("req", Priority.REQUEST)
    backlog.put("global", Priority.GLOBAL_CANCEL)
    backlog.put("cancel1", Priority.CANCEL)
    order = []
    while (got := backlog.get(timeout=0)) is not None:
        order.append(got[0])
    assert order == ["global", "cancel0", "cancel1", "place0", "place1", "place2", "req"]


def test_backlog_remove_if_takes_out_matching_items() -> None:
    backlog: PriorityBacklog[tuple[str, int]] = PriorityBacklog(connection="test-remove")
    for i in range(5):
        backlog.put(("place", i), Priority.PLACE)
    removed = backlog.remove_if(lambda item: item[1] % 2 == 0)
    assert sorted(removed) == [("place", 0), ("place", 2), ("place", 4)]
    assert len(backlog) == 2


def test_backlog_get_blocks_until_put() -> None:
    backlog: PriorityBacklog[str] = PriorityBacklog(connection="test-block")
    threading.Timer(0.1, lambda: backlog.put("late", Priority.PLACE)).start()
    got = backlog.get(timeout=5)
    assert got is not None and got[0] == "late"
    assert backlog.get(timeout=0.05) is None
