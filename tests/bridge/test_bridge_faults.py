"""Fault drills: a second bridge, the kill switch with the bridge frozen, kill -9 mid-flow, and a
gateway that drops the connection and refuses reconnects while fills happen."""

from __future__ import annotations

import signal
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from ibgateway_bridge import client_api
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.killswitch import kill_switch, resume
from ibgateway_bridge.runtime import BridgeConfig
from tests.bridge.harness import (
    BridgeProcess,
    TcpProxy,
    bridge_in_process,
    enqueue_ladder,
    enqueue_many,
    enqueue_new,
    gateway_outage_with_fills,
    kill9_mid_burst,
    ledger_messages,
    poll,
    sent_markers,
    sim_exec_ids,
    sim_orders,
    sim_thread,
    wait_ready,
)

pytestmark = pytest.mark.slow


def resting_buy() -> cmds.OrderSpec:
    return cmds.OrderSpec(action="BUY", quantity=Decimal(1), lmt_price=Decimal("1.00"))


def test_second_bridge_process_refused(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    with sim_thread() as sim:
        first = BridgeProcess(redis_url, sim.port, tmp_path / "first.log").start()
        try:
            wait_ready(r)
            second = BridgeProcess(redis_url, sim.port, tmp_path / "second.log").start()
            try:
                assert second.wait(60) == 3
            finally:
                second.stop()
            assert "refusing to start" in second.log_text()
            assert first.proc is not None and first.proc.poll() is None
            assert r.hget("ib:bridge:state", "client1") == "READY"
        finally:
            first.stop()


def test_restarted_bridge_waits_for_predecessor_lease_when_told(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    with sim_thread() as sim:
        # What a kill -9 leaves behind: the dead bridge's lease, expiring on its own.
        r.set("ib:bridge:lease", "1:dead-host:4242", px=1500)
        bridge = BridgeProcess(
            redis_url, sim.port, tmp_path / "b.log", EPM_BRIDGE_LEASE_WAIT_S="10"
        ).start()
        try:
            wait_ready(r, 20)
            assert "lease_waiting" in bridge.log_text()
            assert r.get("ib:bridge:lease") != "1:dead-host:4242"
        finally:
            bridge.stop()


def test_kill_switch_cancels_all_with_bridge_sigstopped(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    with sim_thread() as sim:
        bridge = BridgeProcess(redis_url, sim.port, tmp_path / "bridge.log").start()
        try:
            wait_ready(r)
            working = enqueue_new(r, 20, resting_buy())
            poll(
                lambda: all(sim_orders(sim).get(o) is not None for o in working),
                20,
                what="20 working orders",
            )
            bridge.signal(signal.SIGSTOP)
            queued = enqueue_new(r, 5, resting_buy())

            # How fast is bench/kill_switch.py's to measure (BENCHMARKS.md); here, that it does.
            report = kill_switch(r, "127.0.0.1", sim.port, client_id=99, reason="drill")
            poll(
                lambda: sim.call(lambda s: s.venue.open_orders(None)) == [],
                20,
                interval=0.01,
                what="every working order cancelled",
            )
            assert report.global_cancel_sent and report.ib_error is None
            assert report.purged == 5
            assert r.get(cmds.HALT_GLOBAL_KEY) is not None
            purged = {int(f["ib_order_id"]) for _i, f in r.xrange(cmds.REJECT_STREAM)}
            assert purged == set(queued)
            audit = [f for _i, f in r.xrange(cmds.AUDIT_STREAM) if f["action"] == "kill_switch"]
            assert audit and audit[0]["purged"] == "5"

            bridge.signal(signal.SIGCONT)
            # Thawed, the bridge must not send anything it had not sent: the queue was purged
            # and the halt is in force. A placement queued after the thaw is the barrier: once
            # its halt refusal is out, the sender has been past anything queued before it.
            (barrier,) = enqueue_new(r, 1, resting_buy())
            refusal = poll(
                lambda: [
                    f
                    for _i, f in r.xrange(cmds.REJECT_STREAM)
                    if f.get("ib_order_id") == str(barrier)
                ],
                20,
                what="the thawed bridge refuses the barrier placement",
            )
            assert refusal[0]["reason"] == str(cmds.BridgeRejectReason.HALTED_GLOBAL)
            assert not any(o in sim_orders(sim) for o in [*queued, barrier])
            assert resume(r, "tester", "drill over") is True
            assert r.get(cmds.HALT_GLOBAL_KEY) is None
            assert [f["action"] for _i, f in r.xrange(cmds.AUDIT_STREAM)][-1] == "resume"
        finally:
            bridge.stop()


def test_kill9_during_200_orders_every_execution_once_no_id_reused(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    with sim_thread() as sim:
        ids = kill9_mid_burst(r, redis_url, sim.port, tmp_path / "b1.log", "BUY", kill_after=40)
        second = BridgeProcess(redis_url, sim.port, tmp_path / "b2.log").start()
        try:
            poll(
                lambda: (
                    sent_markers(r) == 200
                    and r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"] == 0
                ),
                60,
                interval=0.2,
                what="all 200 sent after restart",
            )
            at_sim = sim_orders(sim)
            assert sorted(at_sim) == ids  # every order once, under the id it was given
            errors = [f for _i, f in r.xrange("epm:bridge:order_errors") if f["code"] == "103"]
            assert errors == []
            venue_execs = poll(
                lambda: (e := sim_exec_ids(sim)) and len(e) >= 200 and e, 30, what="200 fills"
            )

            def published() -> set[str]:
                return {
                    p["exec_id"] for _n, p in ledger_messages(r, "tasks.ledger.record_execution")
                }

            poll(lambda: venue_execs <= published(), 30, what="every execution published")
            assert client_api.allocate_order_id(r) > max(ids)
        finally:
            second.stop()


def test_gateway_drop_and_refusal_fills_recovered_after_reconnect(
    r: redis.Redis, redis_url: str
) -> None:
    with sim_thread(stepped=True) as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        enqueue_ladder(r, sim)
        during = gateway_outage_with_fills(r, sim)

        def published() -> set[str]:
            return {p["exec_id"] for _n, p in ledger_messages(r, "tasks.ledger.record_execution")}

        poll(lambda: during <= published(), 20, what="fills made while away published")
        recovered = [
            p for _n, p in ledger_messages(r, "tasks.ledger.record_execution") if p["req_id"] != -1
        ]
        assert {p["exec_id"] for p in recovered} >= during


def test_broker_outage_buffers_callbacks_until_publish_succeeds(
    r: redis.Redis, redis_url: str
) -> None:
    """Fills that arrive while the Celery broker is unreachable are retried, never dropped."""
    with (
        sim_thread() as sim,
        TcpProxy.for_url(redis_url) as broker,
        bridge_in_process(redis_url, sim.port, broker_url=broker.url_via(redis_url)) as bridge,
    ):
        wait_ready(r)
        broker.cut()
        oid = client_api.allocate_order_id(r)
        mkt = cmds.OrderSpec(action="BUY", quantity=Decimal(1), order_type="MKT")
        enqueue_many(r, [(oid, mkt)])
        venue_execs = poll(lambda: sim_exec_ids(sim), 10, what="fill at the venue")
        poll(lambda: bridge.outbox.publish_retries >= 2, 20, what="publish retried twice")
        assert ledger_messages(r, "tasks.ledger.record_execution") == []
        broker.restore()

        def published() -> list[str]:
            return [p["exec_id"] for _n, p in ledger_messages(r, "tasks.ledger.record_execution")]

        poll(lambda: set(published()) == venue_execs, 20, what="buffered fill published")
        assert sorted(published()) == sorted(venue_execs)  # once each, not once per retry
        poll(lambda: ledger_messages(r, "tasks.ledger.record_commission"), 10, what="commission")
        outbox_threads = [t for t in bridge._threads if t.name == "outbox"]
        assert outbox_threads and outbox_threads[0].is_alive()


def test_broker_outage_during_103_replacement_still_places_and_links(
    r: redis.Redis, redis_url: str
) -> None:
    """A 103 re-place must not hinge on the broker: the order goes out, the link follows later."""
    config = BridgeConfig(send_extra_tasks=True, reconnect_base_s=0.1, reconnect_cap_s=1.0)
    with (
        sim_thread() as sim,
        TcpProxy.for_url(redis_url) as broker,
        bridge_in_process(redis_url, sim.port, config, broker.url_via(redis_url)),
    ):
        wait_ready(r)
        oid, later = client_api.allocate_order_id(r), client_api.allocate_order_id(r)
        mkt = cmds.OrderSpec(action="BUY", quantity=Decimal(1), order_type="MKT")
        # Two producers queued out of id order: the later id reached the venue first, so the
        # venue refuses the earlier one with 103 (ids must grow) and never accepted it.
        enqueue_many(r, [(later, mkt)])
        poll(lambda: later in sim_orders(sim), 10, what="the later id's order")
        broker.cut()
        enqueue_many(r, [(oid, mkt)])
        links = poll(
            lambda: [f for _i, f in r.xrange(cmds.AUDIT_STREAM) if f["action"] == "order_replaced"],
            15,
            what="order_replaced audit entry",
        )
        new_id = int(links[0]["new_ib_order_id"])
        poll(lambda: sim_orders(sim).get(new_id), 10, what="replacement placed, broker down")
        assert ledger_messages(r, "tasks.ledger.record_order_replaced") == []
        broker.restore()
        published = poll(
            lambda: ledger_messages(r, "tasks.ledger.record_order_replaced"),
            20,
            what="link published after the broker is back",
        )
        assert [(p["old_ib_order_id"], p["new_ib_order_id"]) for _n, p in published] == [
            (oid, new_id)
        ]


class FirstMarkerWriteFails(cmds.CommandLog):
    """The bridge's real command log, except that the first `sent:` marker of a placement meets
    a dropped Redis connection, after the order's bytes went out. Redis cannot be made to fail at
    that exact instant from outside, so the fault is injected here; everything else is real."""

    failed: list[str]
    # Runs before the failure surfaces: a dead Redis connection is noticed only after a timeout.
    detected_after: Callable[[], object]

    def mark_sent_and_ack(
        self, key: str | None, stream_id: str, order_ref: str | None = None
    ) -> None:
        if key is not None and ":" not in key.removeprefix("ib:sent:1:") and not self.failed:
            self.failed.append(key)
            self.detected_after()
            raise redis.ConnectionError("connection lost after the order was written")
        super().mark_sent_and_ack(key, stream_id, order_ref)


def test_marker_write_failing_after_the_write_does_not_send_the_order_again(
    r: redis.Redis, redis_url: str
) -> None:
    """The order left; only its `sent:` marker failed. With the venue's echo still in flight
    (a slow link), a retry must not send the same id again: for a filled order IB answers 103,
    and the 103 re-place would then trade it twice."""
    with (
        sim_thread() as sim,
        TcpProxy("127.0.0.1", sim.port) as link,
        bridge_in_process(redis_url, link.port) as bridge,
    ):
        wait_ready(r)
        live = bridge.commands
        flaky = FirstMarkerWriteFails(bridge.redis, live._lease_key, live._lease_value)
        flaky.failed = []
        # By the time the failure is noticed the market order has filled at the venue; its
        # echo is still on the slow link.
        flaky.detected_after = lambda: poll(lambda: sim_exec_ids(sim), 10, what="the fill")
        bridge._command_log = flaky
        link.reply_delay_s = 1.0
        oid = client_api.allocate_order_id(r)
        mkt = cmds.OrderSpec(action="BUY", quantity=Decimal(1), order_type="MKT")
        enqueue_many(r, [(oid, mkt)])
        poll(lambda: flaky.failed, 10, what="the marker write failed once")
        poll(lambda: r.get(f"ib:sent:1:{oid}") or "", 10, what="marker").startswith("sent:")
        link.reply_delay_s = 0.0
        (barrier,) = enqueue_new(r, 1, mkt)
        # The venue answers on one socket in order, and the outbox handles callbacks in arrival
        # order: once the barrier's openOrder is out, any 103 for the first id has been recorded.
        poll(
            lambda: any(
                p["ib_order_id"] == barrier
                for _n, p in ledger_messages(r, "tasks.ledger.record_open_order")
            ),
            15,
            what="the barrier's openOrder published",
        )
        errors = [f for _i, f in r.xrange("epm:bridge:order_errors") if f["code"] == "103"]
        assert errors == []
        assert sorted(sim_orders(sim)) == [oid, barrier]
        assert r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"] == 0


def test_command_reader_survives_a_refusal_redis_will_not_store(
    r: redis.Redis, redis_url: str
) -> None:
    """A refusal that cannot be written (here WRONGTYPE on the rejects stream) must not stop the
    command reader: later orders still go out, and the refused entry stays pending for the next
    start instead of being acknowledged unannounced."""
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port) as bridge:
        wait_ready(r)
        r.set(cmds.REJECT_STREAM, "not a stream")
        bad = r.xadd(cmds.COMMAND_STREAM, {"type": "no_such_command", "body": "{}"})
        (oid,) = enqueue_new(r, 1, resting_buy())
        poll(lambda: oid in sim_orders(sim), 10, what="the next order sent")
        pending = r.xpending_range(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP, "-", "+", 10)
        assert [p["message_id"] for p in pending] == [bad]
        assert all(t.is_alive() for t in bridge._threads if t.name == "commands")


def test_session_reconnects_after_its_resync_hit_a_redis_error(
    r: redis.Redis, redis_url: str
) -> None:
    """A Redis error during the connect resync (here a corrupt id counter) must end in a
    reconnect with backoff, not in a dead connect loop that never trades again."""
    r.set("ib:order:last_id", "corrupt")
    # Reconnecting right after our own disconnect can meet a 326 (the venue has not freed the id
    # yet): that one is retried with the reconnect backoff, not the 30 s id-in-use policy.
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port) as bridge:
        poll(lambda: bridge.orders.connection_number >= 2, 20, what="a second connect attempt")
        assert r.hget("ib:bridge:state", "client1") != "READY"
        r.set("ib:order:last_id", "0")
        wait_ready(r, 10)
        (oid,) = enqueue_new(r, 1, resting_buy())
        poll(lambda: oid in sim_orders(sim), 10, what="an order sent after recovery")


def test_kill_switch_cancels_at_ib_with_redis_unreachable(r: redis.Redis, redis_url: str) -> None:
    """The emergency path must not hinge on Redis: with its Redis unreachable the kill switch
    still sends reqGlobalCancel, and says what it could not record."""
    with (
        sim_thread() as sim,
        bridge_in_process(redis_url, sim.port),
        TcpProxy.for_url(redis_url) as dead,
    ):
        wait_ready(r)
        working = enqueue_new(r, 3, resting_buy())
        poll(lambda: all(o in sim_orders(sim) for o in working), 10, what="working orders")
        dead.cut()
        unreachable = redis.Redis.from_url(dead.url_via(redis_url), decode_responses=True)
        report = kill_switch(unreachable, "127.0.0.1", sim.port, client_id=99, reason="drill")
        assert report.global_cancel_sent and report.ib_error is None
        assert report.redis_error is not None and report.purged == 0
        poll(
            lambda: sim.call(lambda s: s.venue.open_orders(None)) == [],
            5,
            what="every working order cancelled",
        )
        assert r.get(cmds.HALT_GLOBAL_KEY) is None  # not recorded: the report says so
