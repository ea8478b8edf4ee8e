"""Order-path races driven against the simulator (issue 9, items 1-6 and 11).

Each test drives one ordering that once made the bridge trade twice, revive a dead order, lose a
cancel or let a queued command overtake another, and checks what the venue ends up with. They
use only the bridge's public surface (the command stream, Redis markers, the simulator's books),
so the same file ran against the code before the fixes and failed there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import redis

from ibgateway_bridge import client_api
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.killswitch import kill_switch, resume
from ibgateway_bridge.runtime import Bridge
from tests.bridge.harness import (
    SPY_CON,
    TcpProxy,
    bridge_in_process,
    ledger_messages,
    poll,
    sim_orders,
    sim_status,
    sim_thread,
    wait_ready,
)
from tws_sim.market.scenario import Scenario
from tws_sim.server.app import SimServerThread

SPY = {"con_id": SPY_CON, "symbol": "SPY", "sec_type": "STK"}
MKT_BUY_10 = {"action": "BUY", "quantity": "10", "order_type": "MKT"}
WORKING = ("PreSubmitted", "Submitted", "PendingSubmit", "ApiPending")


def resting(price: str = "1.00", order_type: str = "LMT") -> dict[str, str]:
    """A buy far below the market: it works at the venue and never fills."""
    spec = {"action": "BUY", "quantity": "1", "order_type": order_type}
    if order_type == "LMT":
        spec["lmt_price"] = price
    return spec


def audit(r: redis.Redis, action: str) -> list[dict[str, str]]:
    return [f for _i, f in r.xrange(cmds.AUDIT_STREAM) if f["action"] == action]


def order_errors(r: redis.Redis, order_id: int) -> list[int]:
    return [
        int(f["code"])
        for _i, f in r.xrange("epm:bridge:order_errors")
        if f.get("ib_order_id") == str(order_id)
    ]


def rejects(r: redis.Redis) -> list[dict[str, str]]:
    return [f for _i, f in r.xrange(cmds.REJECT_STREAM)]


def barrier(r: redis.Redis, sim: SimServerThread, ref: str = "c-barrier") -> int:
    """Place one more resting order and wait for its openOrder to be published: the venue answers
    on one socket in order and the outbox publishes in arrival order, so every callback about an
    earlier command has been handled by then."""
    oid = client_api.allocate_order_id(r)
    client_api.enqueue_place(oid, ref, SPY, resting(), client=r)
    poll(
        lambda: any(
            p["ib_order_id"] == oid
            for _n, p in ledger_messages(r, "tasks.ledger.record_open_order")
        ),
        15,
        what=f"the barrier order {oid}'s openOrder",
    )
    return oid


def venue_filled(sim: SimServerThread, order_ref: str) -> Decimal:
    """Shares the venue executed for one order ref, over every order id it was placed under."""
    return sim.call(
        lambda s: sum(
            (e.shares for e, _c in s.venue.executions(None) if e.order_ref == order_ref),
            Decimal(0),
        )
    )


def working_under_ref(sim: SimServerThread, order_ref: str) -> list[int]:
    return [
        oid
        for oid, snap in sim_orders(sim).items()
        if snap.request.order_ref == order_ref and str(snap.status.value) in WORKING
    ]


@contextmanager
def venue_down(sim: SimServerThread, bridge: Bridge) -> Iterator[None]:
    """IB loses its servers (1100, sockets kept): the bridge holds every command back."""
    sim.call(lambda s: s.set_connectivity(False))
    poll(lambda: not bridge.orders.ready.is_set(), 10, what="sending paused on 1100")
    try:
        yield
    finally:
        sim.call(lambda s: s.set_connectivity(True))


def read_by_bridge(r: redis.Redis, stream_id: str) -> None:
    """Wait until the bridge's reader has taken `stream_id` off the stream."""

    def delivered() -> bool:
        groups: Any = r.xinfo_groups(cmds.COMMAND_STREAM)
        return any(g["last-delivered-id"] == stream_id for g in groups)

    poll(delivered, 10, what=f"the bridge read {stream_id}")


# --- 1: a modify racing a fill never becomes a new order ------------------------------------


def test_modify_of_a_filled_order_is_refused_never_re_placed(
    r: redis.Redis, redis_url: str
) -> None:
    """A peg update that did not know the order had filled: IB refuses it (104; 103 on older
    paths) and the order must not be re-placed under a fresh id (20 bought instead of 10)."""
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "c-peg", SPY, MKT_BUY_10, client=r)
        poll(lambda: venue_filled(sim, "c-peg") == 10, 10, what="the market order filled")
        quote = sim.call(lambda s: s.market.quote(SPY_CON))
        peg = {**MKT_BUY_10, "order_type": "LMT", "lmt_price": str(quote.bid)}
        client_api.enqueue_modify(oid, 1, "c-peg", SPY, peg, client=r)
        other = barrier(r, sim)
        assert sorted(sim_orders(sim)) == [oid, other]
        assert venue_filled(sim, "c-peg") == 10
        assert audit(r, "order_replaced") == []
        assert order_errors(r, oid) in ([104], [103])


def test_modify_of_a_cancelled_order_is_refused_never_re_placed(
    r: redis.Redis, redis_url: str
) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "c-gone", SPY, resting(), client=r)
        poll(lambda: sim_status(sim, oid) == "Submitted", 10, what="working order")
        client_api.enqueue_cancel(oid, client=r)
        poll(lambda: sim_status(sim, oid) == "Cancelled", 10, what="cancelled at the venue")
        client_api.enqueue_modify(oid, 1, "c-gone", SPY, resting("1.01"), client=r)
        barrier(r, sim)
        assert working_under_ref(sim, "c-gone") == []
        assert audit(r, "order_replaced") == []
        assert 103 in order_errors(r, oid)


# --- 2: crash recovery never revives a finished order ---------------------------------------


def _crash_left_pending(r: redis.Redis, oid: int, ref: str, spec: dict[str, str]) -> None:
    """As if the bridge died between writing `pending` and learning the bytes left, with the
    placement's stream entry still unacknowledged: the next start must settle it."""
    r.set(f"ib:sent:1:{oid}", "pending:0-1")
    client_api.enqueue_place(oid, ref, SPY, spec, client=r)


def test_crash_recovery_does_not_revive_a_cancelled_order(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim:
        with bridge_in_process(redis_url, sim.port):
            wait_ready(r)
            oid = client_api.allocate_order_id(r)
            client_api.enqueue_place(oid, "c-dead", SPY, resting(), client=r)
            poll(lambda: sim_status(sim, oid) == "Submitted", 10, what="working order")
            client_api.enqueue_cancel(oid, client=r)
            poll(lambda: sim_status(sim, oid) == "Cancelled", 10, what="cancelled")
        _crash_left_pending(r, oid, "c-dead", resting())
        with bridge_in_process(redis_url, sim.port):
            wait_ready(r)
            barrier(r, sim)
            poll(
                lambda: r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"] == 0,
                10,
                what="the replayed placement settled",
            )
        assert working_under_ref(sim, "c-dead") == []
        assert sim_status(sim, oid) == "Cancelled"
        assert audit(r, "order_replaced") == []
        assert r.get(f"ib:sent:1:{oid}").startswith("sent:")


def test_crash_recovery_does_not_revive_a_rejected_order(r: redis.Redis, redis_url: str) -> None:
    off_tick = {"action": "BUY", "quantity": "1", "order_type": "LMT", "lmt_price": "1.005"}
    with sim_thread() as sim:
        with bridge_in_process(redis_url, sim.port):
            wait_ready(r)
            oid = client_api.allocate_order_id(r)
            client_api.enqueue_place(oid, "c-rejected", SPY, off_tick, client=r)
            poll(lambda: 110 in order_errors(r, oid), 10, what="the venue's reject (110)")
        _crash_left_pending(r, oid, "c-rejected", off_tick)
        with bridge_in_process(redis_url, sim.port):
            wait_ready(r)
            barrier(r, sim)
        assert order_errors(r, oid) == [110]  # never sent again: no second 110, no 103
        assert audit(r, "order_replaced") == []


# --- 3: a cancel is never swallowed by a duplicate placement --------------------------------


def test_cancel_reaches_the_venue_when_a_copy_of_its_placement_was_queued(
    r: redis.Redis, redis_url: str
) -> None:
    """Copy 1 was sent; copy 2 (a Celery redelivery) still waits in the backlog when the cancel
    arrives. Dropping copy 2 is right; dropping the cancel with it left the order working."""
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port) as bridge:
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "c-twice", SPY, resting(), client=r)
        poll(lambda: sim_status(sim, oid) == "Submitted", 10, what="copy 1 working")
        with venue_down(sim, bridge):
            client_api.enqueue_place(oid, "c-twice", SPY, resting(), client=r)
            cancel = client_api.enqueue_cancel(oid, client=r)
            read_by_bridge(r, cancel)
            poll(
                lambda: r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"] <= 1,
                10,
                what="the cancel taken in",
            )
        poll(lambda: sim_status(sim, oid) == "Cancelled", 15, what="the cancel at the venue")
        assert [f for f in rejects(r) if f.get("ib_order_id") == str(oid)] == []


# --- 4: every cancel goes out, also after IB refused one -------------------------------------


def test_second_cancel_is_sent_after_ib_refused_the_first(r: redis.Redis, redis_url: str) -> None:
    """An MOC order inside the closing cross's cutoff cannot be cancelled (161) and keeps
    working; a later cancel of it must still reach the venue (and be answered)."""
    # A real session day (the default scenario is always open, so it has no close).
    session = Scenario.default().model_copy(update={"always_open": False})
    with (
        sim_thread(scenario=session, start="15:49", stepped=True) as sim,
        bridge_in_process(redis_url, sim.port),
    ):
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "c-moc", SPY, resting(order_type="MOC"), client=r)
        poll(lambda: sim_status(sim, oid) in WORKING, 10, what="MOC working")
        sim.advance(120)  # 15:51 ET: inside the cutoff
        client_api.enqueue_cancel(oid, client=r)
        poll(lambda: order_errors(r, oid) == [161], 10, what="the first cancel refused")
        client_api.enqueue_cancel(oid, client=r)
        poll(lambda: order_errors(r, oid) == [161, 161], 10, what="the second cancel answered")
        assert sim_status(sim, oid) in WORKING


# --- 5: the kill switch reaches what the bridge already read --------------------------------


def test_purged_placement_held_in_the_backlog_is_not_sent_after_resume(
    r: redis.Redis, redis_url: str
) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port) as bridge:
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        with venue_down(sim, bridge):
            sid = client_api.enqueue_place(oid, "c-purged", SPY, resting(), client=r)
            read_by_bridge(r, sid)
            poll(lambda: len(bridge.orders.backlog) == 1, 5, what="held in the backlog")
            report = kill_switch(r, "127.0.0.1", sim.port, reason="drill")
            assert report.purged == 1
            assert resume(r, "tester", "drill over") is True
        wait_ready(r)
        barrier(r, sim)
        assert oid not in sim_orders(sim)
        purged = [f for f in rejects(r) if f.get("ib_order_id") == str(oid)]
        assert [f["reason"] for f in purged] == ["HALTED_GLOBAL"]  # announced once


def test_halt_set_during_the_pacing_wait_stops_the_order_at_the_socket(
    r: redis.Redis, redis_url: str
) -> None:
    """Five messages a second: the sixth order passes the early halt check, then waits for a
    pacing slot; the kill switch's halt lands meanwhile. It must not reach the venue."""
    with (
        sim_thread() as sim,
        bridge_in_process(redis_url, sim.port, pacing_msgs_per_sec=5),
    ):
        wait_ready(r)
        ids = [client_api.allocate_order_id(r) for _ in range(6)]
        for n, oid in enumerate(ids):
            client_api.enqueue_place(oid, f"c-paced-{n}", SPY, resting(), client=r)
        poll(lambda: len(sim_orders(sim)) >= 5, 10, what="five orders through the window")
        r.set(cmds.HALT_GLOBAL_KEY, "drill")
        refused = poll(
            lambda: [f for f in rejects(r) if f.get("ib_order_id") == str(ids[5])],
            10,
            what="the sixth order refused",
        )
        assert refused[0]["reason"] == "HALTED_GLOBAL"
        assert ids[5] not in sim_orders(sim)


# --- 6: one order's commands keep their order ------------------------------------------------


def test_modify_queued_with_its_placement_does_not_overtake_it(
    r: redis.Redis, redis_url: str
) -> None:
    """Place at 1.00 and modify to 1.05 queued together: if the modify went first IB would take
    it as the new order and the placement would then revert it to 1.00."""
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port) as bridge:
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        with venue_down(sim, bridge):
            client_api.enqueue_place(oid, "c-lane", SPY, resting("1.00"), client=r)
            mod = client_api.enqueue_modify(oid, 1, "c-lane", SPY, resting("1.05"), client=r)
            read_by_bridge(r, mod)
            poll(lambda: len(bridge.orders.backlog) == 2, 5, what="both held")
        poll(lambda: oid in sim_orders(sim), 15, what="the order at the venue")
        barrier(r, sim)
        assert sim_orders(sim)[oid].request.lmt_price == Decimal("1.05")


# --- 11: a placement whose bytes died with the connection is settled -------------------------


def test_placement_lost_with_a_reset_connection_is_sent_again(
    r: redis.Redis, redis_url: str
) -> None:
    """The kernel took the bytes (marker `sent`), the network swallowed them and the connection
    reset. After the reconnect the venue's lists do not know the order: it goes out again."""
    with (
        sim_thread() as sim,
        TcpProxy("127.0.0.1", sim.port) as link,
        bridge_in_process(redis_url, link.port),
    ):
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        link.swallow_upstream = True
        client_api.enqueue_place(oid, "c-lost", SPY, resting(), client=r)
        poll(lambda: (r.get(f"ib:sent:1:{oid}") or "").startswith("sent:"), 10, what="sent")
        link.cut()
        link.swallow_upstream = False
        link.restore()
        poll(lambda: oid in sim_orders(sim), 20, what="the lost placement at the venue")
        barrier(r, sim)
        assert working_under_ref(sim, "c-lost") == [oid]
