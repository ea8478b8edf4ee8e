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
        order.append(got.item)
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
    assert got is not None and got.item == "late"
    assert backlog.get(timeout=0.05) is None


def drain(backlog: PriorityBacklog[str], fail_first: frozenset[str] = frozenset()) -> list[str]:
    """Hand items out like the sender does; each one in `fail_first` is requeued once."""
    sent: list[str] = []
    failed: set[str] = set()
    while (ticket := backlog.get(timeout=0)) is not None:
        if ticket.item in fail_first and ticket.item not in failed:
            failed.add(ticket.item)
            backlog.requeue(ticket)
            continue
        sent.append(ticket.item)
        backlog.done(ticket)
    return sent


def test_backlog_one_orders_commands_keep_their_order_across_priorities() -> None:
    """A modify queued behind its placement must not go first (IB would take it as the new
    order, and the placement would then revert it); other orders' modifies may overtake."""
    backlog: PriorityBacklog[str] = PriorityBacklog(connection="test-lane")
    backlog.put("place-1", Priority.PLACE, lane=1)
    backlog.put("place-2", Priority.PLACE, lane=2)
    backlog.put("modify-1", Priority.MODIFY, lane=1)
    backlog.put("modify-3", Priority.MODIFY, lane=3)
    backlog.put("cancel-2", Priority.CANCEL, lane=2)
    assert drain(backlog) == ["modify-3", "place-1", "modify-1", "place-2", "cancel-2"]


def test_backlog_requeued_command_stays_ahead_of_its_lane() -> None:
    backlog: PriorityBacklog[str] = PriorityBacklog(connection="test-requeue")
    backlog.put("place-1", Priority.PLACE, lane=1)
    backlog.put("modify-1-v1", Priority.MODIFY, lane=1)
    backlog.put("modify-1-v2", Priority.MODIFY, lane=1)
    backlog.put("place-2", Priority.PLACE, lane=2)
    sent = drain(backlog, fail_first={"place-1", "modify-1-v1"})
    assert [s for s in sent if s.endswith(("-1", "v1", "v2"))] == [
        "place-1",
        "modify-1-v1",
        "modify-1-v2",
    ]
    assert sorted(sent) == sorted(["place-1", "modify-1-v1", "modify-1-v2", "place-2"])


def test_backlog_lane_waits_while_its_head_is_out() -> None:
    backlog: PriorityBacklog[str] = PriorityBacklog(connection="test-out")
    backlog.put("place-1", Priority.PLACE, lane=1)
    backlog.put("cancel-1", Priority.CANCEL, lane=1)
    head = backlog.get(timeout=0)
    assert head is not None and head.item == "place-1"
    assert backlog.get(timeout=0) is None  # the cancel waits for the placement's send
    backlog.done(head)
    nxt = backlog.get(timeout=0)
    assert nxt is not None and nxt.item == "cancel-1"


def test_backlog_remove_if_keeps_lanes_consistent() -> None:
    backlog: PriorityBacklog[str] = PriorityBacklog(connection="test-remove-lane")
    backlog.put("place-1", Priority.PLACE, lane=1)
    backlog.put("modify-1", Priority.MODIFY, lane=1)
    backlog.put("modify-1b", Priority.MODIFY, lane=1)
    out = backlog.get(timeout=0)
    assert out is not None and out.item == "place-1"
    assert backlog.remove_if(lambda item: item == "modify-1") == ["modify-1"]
    assert len(backlog) == 1
    assert backlog.get(timeout=0) is None
    backlog.done(out)
    assert drain(backlog) == ["modify-1b"]
    backlog.put("place-2", Priority.PLACE, lane=2)
    backlog.put("modify-2", Priority.MODIFY, lane=2)
    assert backlog.remove_if(lambda item: item == "place-2") == ["place-2"]
    assert drain(backlog) == ["modify-2"]
