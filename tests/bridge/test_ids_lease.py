"""Order-id allocation and the single-bridge lease, against the real Redis."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from ibgateway_bridge import client_api
from ibgateway_bridge.ids import LAST_ID_KEY, OrderIdAllocator, OrderIdCounterMissingError
from ibgateway_bridge.lease import BridgeLease, LeaseHeldError, lease_holder


def test_allocator_sync_raises_to_next_valid_id_minus_one(r: redis.Redis) -> None:
    ids = OrderIdAllocator(r)
    assert ids.sync(100) == 99
    assert ids.allocate() == 100


def test_allocator_sync_with_a_fresh_accounts_first_id_creates_the_counter(r: redis.Redis) -> None:
    ids = OrderIdAllocator(r)
    assert ids.sync(1) == 0
    assert ids.allocate() == 1


def test_allocator_sync_never_lowers_the_counter(r: redis.Redis) -> None:
    ids = OrderIdAllocator(r)
    ids.sync(500)
    ids.allocate()
    # A gateway restarted with a forgotten history says 1 again: ids must still not repeat.
    assert ids.sync(1) == 500
    assert ids.allocate() == 501


def test_allocator_concurrent_allocations_are_unique(r: redis.Redis) -> None:
    ids = OrderIdAllocator(r)
    ids.sync(10)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: ids.allocate(), range(400)))
    assert len(set(got)) == 400
    assert min(got) == 10


def test_allocator_block_is_consecutive_and_fresh(r: redis.Redis) -> None:
    ids = OrderIdAllocator(r)
    ids.sync(1)
    first = ids.allocate()
    block = ids.allocate_block(3)
    assert block == [first + 1, first + 2, first + 3]
    with pytest.raises(ValueError):
        ids.allocate_block(0)


def test_allocation_refuses_when_redis_lost_the_counter(r: redis.Redis) -> None:
    ids = OrderIdAllocator(r)
    ids.sync(500)
    assert ids.allocate() == 500
    r.delete(LAST_ID_KEY)  # eviction, a failover without persistence, a FLUSHDB
    with pytest.raises(OrderIdCounterMissingError):
        ids.allocate()
    with pytest.raises(OrderIdCounterMissingError):
        ids.allocate_block(3)
    with pytest.raises(OrderIdCounterMissingError):
        client_api.allocate_order_id(r)
    # Refused, not counted from 0: the key is still absent, no id 1, 2, 3 handed out.
    assert r.exists(LAST_ID_KEY) == 0


def test_allocation_reseeds_above_the_floor_and_every_sent_marker(r: redis.Redis) -> None:
    r.set("ib:sent:1:700", "sent:1-0")
    r.set("ib:sent:1:705:cancel", "sent:2-0")
    r.set("ib:sent:1:702:v3", "sent:3-0")
    r.set("ib:sent:2:9999", "sent:4-0")  # another client id's sequence: not ours
    oid = client_api.allocate_order_id(r, floor=lambda: 650)
    assert oid > 705
    assert oid <= 705 + client_api.ORDER_ID_RESEED_MARGIN + 1
    # The ledger knows more than the markers: the floor wins.
    r.delete(LAST_ID_KEY)
    later = client_api.allocate_order_id(r, floor=lambda: oid + 5000)
    assert later > oid + 5000
    # A present counter is never touched by a floor (allocation is a plain INCR then).
    assert client_api.allocate_order_id(r, floor=lambda: 10**9) == later + 1


def test_concurrent_reseeds_agree_and_never_hand_out_an_id_twice(r: redis.Redis) -> None:
    calls: list[int] = []

    def floor() -> int:
        calls.append(1)
        return 1234

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: client_api.allocate_order_id(r, floor=floor), range(200)))
    assert len(set(got)) == 200
    assert min(got) > 1234
    assert calls  # the floor was asked only because the counter was missing
    # The bridge's sync at connect still only raises the counter.
    ids = OrderIdAllocator(r)
    assert ids.sync(5) == max(got)
    assert ids.allocate() == max(got) + 1


def test_reseed_only_when_missing_unless_told_to_raise(r: redis.Redis) -> None:
    assert client_api.reseed_order_ids(100, client=r) == 100 + client_api.ORDER_ID_RESEED_MARGIN
    assert client_api.reseed_order_ids(5, client=r) == 100 + client_api.ORDER_ID_RESEED_MARGIN
    raised = client_api.reseed_order_ids(10_000, client=r, raise_existing=True)
    assert raised == 10_000 + client_api.ORDER_ID_RESEED_MARGIN
    assert client_api.reseed_order_ids(1, client=r, raise_existing=True) == raised


def test_lease_second_bridge_refused_with_holder_named(r: redis.Redis) -> None:
    first = BridgeLease(r, ttl_ms=2000)
    grant = first.acquire()
    second = BridgeLease(r, ttl_ms=2000)
    with pytest.raises(LeaseHeldError) as e:
        second.acquire()
    assert grant.value in str(e.value)
    assert "refusing to start" in str(e.value)
    first.release()
    assert second.acquire().token > grant.token


def test_lease_tokens_increase_monotonically(r: redis.Redis) -> None:
    tokens = []
    for _ in range(3):
        lease = BridgeLease(r, ttl_ms=1000)
        tokens.append(lease.acquire().token)
        lease.release()
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


def test_lease_taken_over_renew_fails_and_calls_lost(r: redis.Redis) -> None:
    lost = threading.Event()
    lease = BridgeLease(r, ttl_ms=1000, on_lost=lost.set)
    lease.acquire()
    # Another holder after an expiry (simulated by overwriting the key as a new bridge would).
    r.set(lease.key, "999:other:1", px=5000)
    assert lease.renew() is False
    assert lost.is_set()
    assert lease.held() is False


def test_lease_held_expires_by_own_clock_without_renewal(r: redis.Redis) -> None:
    now = [0.0]
    lease = BridgeLease(r, ttl_ms=1000, clock=lambda: now[0])
    lease.acquire()
    assert lease.held()
    now[0] = 1.5
    assert not lease.held()


def test_lease_holder_reports_free_and_taken(r: redis.Redis) -> None:
    assert lease_holder(r) == (None, -2)
    lease = BridgeLease(r, ttl_ms=3000)
    grant = lease.acquire()
    holder, ttl = lease_holder(r)
    assert holder == grant.value and 0 < ttl <= 3000
