"""The bridge against the simulator (threaded) and the real Redis: order path, dedupe, halts,
pacing, 326 governance."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis

from ibgateway_bridge import client_api
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.connection import PacedClient, SessionState
from ibgateway_bridge.pacing import SlidingWindowLimiter
from ibgateway_bridge.runtime import BridgeConfig
from ibgateway_bridge.wrapper import BridgeWrapper
from tests.bridge.harness import (
    bridge_in_process,
    ledger_messages,
    poll,
    sim_exec_ids,
    sim_orders,
    sim_thread,
    wait_ready,
)

KIND_326 = "client_id_in_use"
SPY = {"con_id": 756733, "symbol": "SPY", "sec_type": "STK"}
MKT_BUY = {"action": "BUY", "quantity": "10", "order_type": "MKT"}


def resting(action: str = "BUY") -> dict[str, str]:
    """A limit far from the market: it works at the venue and never fills."""
    price = "1.00" if action == "BUY" else "99999.00"
    return {"action": action, "quantity": "1", "order_type": "LMT", "lmt_price": price}


def test_place_command_reaches_sim_fills_published_once(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "coid-fill-1", SPY, MKT_BUY, client=r)
        poll(lambda: oid in sim_orders(sim), 10, what="order at the sim")
        sim_ids = poll(lambda: sim_exec_ids(sim), 10, what="execution at the sim")
        published = poll(
            lambda: ledger_messages(r, "tasks.ledger.record_execution"), 10, what="exec task"
        )
        assert sorted(p["exec_id"] for _n, p in published) == sorted(sim_ids)
        (_name, payload), *_ = published
        assert payload["ib_order_id"] == oid and payload["order_ref"] == "coid-fill-1"
        assert payload["client_id"] == 1
        poll(lambda: ledger_messages(r, "tasks.ledger.record_commission"), 10, what="commission")
        assert r.get(f"ib:sent:1:{oid}").startswith("sent:")
        assert r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"] == 0


def test_replayed_place_same_order_id_is_sent_once(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "coid-dup", SPY, resting(), client=r)
        client_api.enqueue_place(oid, "coid-dup", SPY, resting(), client=r)
        poll(
            lambda: (
                r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"] == 0
                and r.xlen(cmds.COMMAND_STREAM) == 2
                and oid in sim_orders(sim)
            ),
            10,
            what="both entries acknowledged",
        )
        assert list(sim_orders(sim)) == [oid]
        # A re-sent place of a working order is a modification at the venue: a second openOrder
        # for `oid`. Callbacks are published in socket order, so once a later order's openOrder
        # is published, any openOrder of a resend would already be there.
        barrier = client_api.allocate_order_id(r)
        client_api.enqueue_place(barrier, "coid-barrier", SPY, resting(), client=r)

        def opens_of(order_id: int) -> list[dict[str, object]]:
            return [
                p
                for _n, p in ledger_messages(r, "tasks.ledger.record_open_order")
                if p["ib_order_id"] == order_id
            ]

        poll(lambda: opens_of(barrier), 10, what="the barrier order's openOrder")
        assert len(opens_of(oid)) == 1
        assert not r.exists(cmds.REJECT_STREAM)


def test_unallocated_order_id_refused(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        client_api.enqueue_place(10_000, "coid-wild", SPY, resting(), client=r)
        ((_, fields),) = poll(lambda: r.xrange(cmds.REJECT_STREAM), 10, what="reject")
        assert fields["reason"] == "ORDER_ID_NOT_ALLOCATED"
        assert sim_orders(sim) == {}


def test_global_halt_refuses_place_but_cancel_goes(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        working = client_api.allocate_order_id(r)
        client_api.enqueue_place(working, "coid-w", SPY, resting(), client=r)
        poll(lambda: working in sim_orders(sim), 10, what="working order")
        r.set(cmds.HALT_GLOBAL_KEY, "test")
        blocked = client_api.allocate_order_id(r)
        client_api.enqueue_place(blocked, "coid-b", SPY, resting(), client=r)
        client_api.enqueue_cancel(working, client=r)
        poll(
            lambda: (
                str(sim_orders(sim)[working].status) in ("Cancelled", "OrderStatusName.CANCELLED")
                or sim_orders(sim)[working].status.value == "Cancelled"
            ),
            10,
            what="cancel at the sim",
        )
        ((_, fields),) = poll(lambda: r.xrange(cmds.REJECT_STREAM), 10, what="halt reject")
        assert fields["reason"] == "HALTED_GLOBAL" and fields["ib_order_id"] == str(blocked)
        assert blocked not in sim_orders(sim)


def test_instrument_halt_from_tick_49_key_refuses_place(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        r.set("epm:halt:instrument:756733", "1")
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "coid-h", SPY, resting(), client=r)
        ((_, fields),) = poll(lambda: r.xrange(cmds.REJECT_STREAM), 10, what="halt reject")
        assert fields["reason"] == "HALTED_INSTRUMENT"
        assert sim_orders(sim) == {}


@pytest.mark.slow
def test_pacing_1000_commands_never_exceed_limit_cancels_overtake(
    r: redis.Redis, redis_url: str
) -> None:
    limit = 45
    with (
        sim_thread(pacing_limit=limit) as sim,
        bridge_in_process(redis_url, sim.port, pacing_msgs_per_sec=limit) as bridge,
    ):
        wait_ready(r)
        ids = [client_api.allocate_order_id(r) for _ in range(1000)]
        pipe_r = r.pipeline(transaction=False)
        for i, oid in enumerate(ids):
            cmd = cmds.PlaceOrder(
                order_id=oid,
                client_order_id=f"p-{i}",
                contract=cmds.ContractSpec(**SPY),
                order=cmds.OrderSpec.model_validate(resting("BUY" if i % 2 else "SELL")),
            )
            pipe_r.xadd(
                cmds.COMMAND_STREAM,
                cmds.encode_command(cmd, datetime.now(UTC)),
            )
        pipe_r.execute()
        early = ids[:5]
        poll(lambda: all(o in sim_orders(sim) for o in early), 20, what="first orders working")
        for oid in early + ids[-5:]:
            client_api.enqueue_cancel(oid, client=r)

        def early_cancelled() -> bool:
            snaps = sim_orders(sim)
            return all(str(snaps[o].status.value) == "Cancelled" for o in early)

        poll(early_cancelled, 10, what="early orders cancelled")
        # The cancels reached the venue while placements were still queued behind them.
        assert len(bridge.orders.backlog) > 100
        poll(
            lambda: (
                r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"] == 0
                and len(bridge.orders.backlog) == 0
            ),
            60,
            interval=0.5,
            what="backlog drained",
        )
        rejected = sim.call(lambda s: [x.pacing.rejected for x in s.sessions])
        assert rejected and all(n == 0 for n in rejected)
        assert not [f for _i, f in r.xrange(cmds.ALERT_STREAM) if f["kind"] == "pacing_violation"]
        overtaken = [f for _i, f in r.xrange(cmds.REJECT_STREAM)]
        assert {f["reason"] for f in overtaken} == {"CANCELED_BEFORE_SEND"}
        assert {int(f["ib_order_id"]) for f in overtaken} == set(ids[-5:])
        assert len(sim_orders(sim)) == 995


def test_client_id_in_use_326_halts_trading_and_alerts(r: redis.Redis, redis_url: str) -> None:
    import queue

    with sim_thread() as sim:
        squatter = PacedClient(
            BridgeWrapper(1, queue.Queue(), queue.Queue()),
            SlidingWindowLimiter(45, connection="squat"),
        )
        squatter.connect("127.0.0.1", sim.port, 1)
        assert squatter.isConnected()
        config = BridgeConfig(
            send_extra_tasks=False, id_in_use_retry_s=0.2, id_in_use_max_retries=0
        )
        try:
            with bridge_in_process(redis_url, sim.port, config=config) as bridge:
                alerts = poll(
                    lambda: [
                        f
                        for _i, f in r.xrange(cmds.ALERT_STREAM)
                        if f["kind"] == "client_id_in_use"
                    ],
                    15,
                    what="326 alert",
                )
                assert alerts[0]["client_id"] == "1"
                poll(lambda: bridge.orders.state == SessionState.ID_IN_USE, 10, what="ID_IN_USE")
                # Client 1 never got a nextValidId, so no counter yet: a worker seeds it from
                # the ledger's floor (empty here) instead of counting from nothing.
                oid = client_api.allocate_order_id(r, floor=lambda: 0)
                client_api.enqueue_place(oid, "coid-326", SPY, resting(), client=r)
                poll(lambda: len(bridge.orders.backlog) == 1, 5, what="place held back")
                assert not bridge.orders.ready.is_set()
                assert r.hget("ib:bridge:state", "client1") == "ID_IN_USE"
                assert oid not in sim_orders(sim, 1)
        finally:
            squatter.disconnect()


def test_crash_between_marker_and_write_resolved_by_venue_knowledge(
    r: redis.Redis, redis_url: str
) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        done_id = client_api.allocate_order_id(r)
        client_api.enqueue_place(done_id, "c-known", SPY, MKT_BUY, client=r)
        poll(lambda: sim_exec_ids(sim), 10, what="first order filled")
        poll(lambda: r.get(f"ib:sent:1:{done_id}").startswith("sent:"), 5, what="marked sent")
        # As if a bridge died after writing `pending:` but before knowing whether the bytes left:
        # this one did reach the venue, ...
        r.set(f"ib:sent:1:{done_id}", "pending:0-1")
        client_api.enqueue_place(done_id, "c-known", SPY, MKT_BUY, client=r)
        # ... and this one never did.
        lost_id = client_api.allocate_order_id(r)
        r.set(f"ib:sent:1:{lost_id}", "pending:0-2")
        client_api.enqueue_place(lost_id, "c-lost", SPY, MKT_BUY, client=r)
        poll(lambda: lost_id in sim_orders(sim), 10, what="never-sent order sent now")
        barrier = client_api.allocate_order_id(r)
        client_api.enqueue_place(barrier, "c-barrier", SPY, MKT_BUY, client=r)
        poll(lambda: barrier in sim_orders(sim), 10, what="barrier order")
        poll(
            lambda: r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"] == 0,
            5,
            what="all acknowledged",
        )
        # A re-sent id of a filled order would have drawn error 103 before the barrier's fill.
        assert [f for _i, f in r.xrange("epm:bridge:order_errors") if f["code"] == "103"] == []
        assert sorted(sim_orders(sim)) == [done_id, lost_id, barrier]
        assert r.get(f"ib:sent:1:{done_id}").startswith("sent:")


def test_modify_applied_once_per_version(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "c-mod", SPY, resting(), client=r)
        poll(lambda: oid in sim_orders(sim), 10, what="working order")
        moved = {**resting(), "lmt_price": "1.05"}
        client_api.enqueue_modify(oid, 1, "c-mod", SPY, moved, client=r)
        poll(lambda: sim_orders(sim)[oid].request.lmt_price == Decimal("1.05"), 10, what="modified")
        # Version 1 again with another price (a stale replay): must not reach the venue.
        client_api.enqueue_modify(
            oid, 1, "c-mod", SPY, {**resting(), "lmt_price": "1.10"}, client=r
        )
        client_api.enqueue_modify(
            oid, 2, "c-mod", SPY, {**resting(), "lmt_price": "1.02"}, client=r
        )
        poll(
            lambda: sim_orders(sim)[oid].request.lmt_price == Decimal("1.02"), 10, what="v2 applied"
        )
        poll(
            lambda: r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"] == 0,
            5,
            what="all acknowledged",
        )
        prices = [
            p["lmt_price"]
            for _n, p in ledger_messages(r, "tasks.ledger.record_open_order")
            if p["ib_order_id"] == oid
        ]
        assert "1.1" not in prices and "1.10" not in prices
        assert r.get(f"ib:sent:1:{oid}:v1").startswith("sent:")
        assert r.get(f"ib:sent:1:{oid}:v2").startswith("sent:")
