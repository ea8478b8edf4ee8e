"""Bridge state against the simulator: 103 re-place, 1100/1101, farms, tick-49 halts, market data
lines and the contract cache."""

from __future__ import annotations

from pathlib import Path

import redis

from ibgateway_bridge import client_api
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.connection import SessionState
from ibgateway_bridge.runtime import FARMS_KEY, BridgeConfig
from tests.bridge.harness import (
    bridge_in_process,
    poll,
    sim_orders,
    sim_thread,
    wait_ready,
)

SPY = {"con_id": 756733, "symbol": "SPY", "sec_type": "STK"}
AAPL = {"con_id": 265598, "symbol": "AAPL", "sec_type": "STK"}
RESTING = {"action": "BUY", "quantity": "1", "order_type": "LMT", "lmt_price": "1.00"}
MKT = {"action": "BUY", "quantity": "1", "order_type": "MKT"}


def test_duplicate_id_103_replaced_under_fresh_id_with_link(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "c-first", SPY, MKT, client=r)
        poll(lambda: oid in sim_orders(sim), 10, what="first order")
        # Redis lost the marker (restored from an old snapshot): the id goes out again and the
        # venue answers 103 because that order is already done.
        r.delete(f"ib:sent:1:{oid}")
        client_api.enqueue_place(oid, "c-again", SPY, MKT, client=r)
        links = poll(
            lambda: [f for _i, f in r.xrange(cmds.AUDIT_STREAM) if f["action"] == "order_replaced"],
            15,
            what="order_replaced audit entry",
        )
        new_id = int(links[0]["new_ib_order_id"])
        assert links[0]["old_ib_order_id"] == str(oid) and new_id > oid
        assert links[0]["client_order_id"] == "c-again"
        placed = poll(lambda: sim_orders(sim).get(new_id), 10, what="replacement at the sim")
        assert placed.request.order_ref == "c-again"


def test_connectivity_1100_pauses_sending_1102_resyncs(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port) as bridge:
        wait_ready(r)
        sim.call(lambda s: s.set_connectivity(False))
        poll(lambda: bridge.orders.state == SessionState.VENUE_DOWN, 10, what="VENUE_DOWN")
        poll(
            lambda: [
                f for _i, f in r.xrange(cmds.ALERT_STREAM) if f["kind"] == "connectivity_lost"
            ],
            5,
            what="1100 alert",
        )
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "c-wait", SPY, RESTING, client=r)
        poll(lambda: len(bridge.orders.backlog) == 1, 5, what="place held while IB is away")
        assert oid not in sim_orders(sim)
        sim.call(lambda s: s.set_connectivity(True))
        poll(lambda: oid in sim_orders(sim), 15, what="place sent after 1101/1102 resync")
        assert bridge.orders.state == SessionState.READY


def test_farm_state_tracked_from_notices(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        poll(lambda: r.hget(FARMS_KEY, "usfarm") == "ok", 10, what="farm ok")
        sim.call(lambda s: s.set_md_farm(False))
        poll(lambda: r.hget(FARMS_KEY, "usfarm") == "broken", 10, what="farm broken")
        sim.call(lambda s: s.set_md_farm(True))
        poll(lambda: r.hget(FARMS_KEY, "usfarm") == "ok", 10, what="farm ok again")


def test_market_data_refcounted_lines_and_limit(r: redis.Redis, redis_url: str) -> None:
    config = BridgeConfig(send_extra_tasks=False, md_line_limit=1)
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port, config=config) as bridge:
        wait_ready(r)
        wait_ready(r, client_id=2)
        client_api.enqueue_subscribe(756733, "w1", contract=SPY, bars=True, depth=True, client=r)
        client_api.enqueue_subscribe(756733, "w2", client=r)
        md = poll(
            lambda: (h := r.hgetall("md:756733")) and "bid" in h and "ask" in h and h,
            15,
            what="top of book in md:756733",
        )
        assert "ts" in md and "ts_bid" in md
        poll(lambda: "depth" in r.hgetall("md:756733"), 15, what="L2 snapshot")
        assert bridge.md.open_lines() == 1
        client_api.enqueue_subscribe(265598, "w3", contract=AAPL, client=r)
        ((_i, refused),) = poll(lambda: r.xrange(cmds.REJECT_STREAM), 10, what="line limit refusal")
        assert refused["reason"] == "MARKET_DATA_LINES_EXHAUSTED"
        client_api.enqueue_unsubscribe(756733, "w1", client=r)
        poll(lambda: r.smembers("md:subs:756733") == {"w2"}, 10, what="one requester left")
        assert bridge.md.open_lines() == 1
        client_api.enqueue_unsubscribe(756733, "w2", client=r)
        poll(lambda: bridge.md.open_lines() == 0, 10, what="line closed after last requester")
        assert r.smembers("md:subscribed") == set()


def test_tick_49_halt_published_as_instrument_state(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    scenario = tmp_path / "halt.yaml"
    scenario.write_text(
        "name: halt-test\nextends: default\nversion: 1\nalways_open: true\n"
        "halts:\n  - {symbol: SPY, after_s: 5, duration_s: 20, state: 1}\n"
    )
    with (
        sim_thread(stepped=True, scenario=str(scenario)) as sim,
        bridge_in_process(redis_url, sim.port),
    ):
        wait_ready(r)
        wait_ready(r, client_id=2)
        client_api.enqueue_subscribe(756733, "w1", contract=SPY, client=r)
        poll(lambda: r.hget("md:756733", "bid") is not None or sim.advance(0.5), 15, what="md")
        sim.advance(6)
        poll(lambda: r.get("epm:halt:instrument:756733") == "1", 10, what="halt published")
        assert r.hget("md:756733", "halted") == "1"
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "c-halted", SPY, RESTING, client=r)
        ((_i, refused),) = poll(lambda: r.xrange(cmds.REJECT_STREAM), 10, what="halt refusal")
        assert refused["reason"] == "HALTED_INSTRUMENT"
        sim.advance(25)
        poll(lambda: r.get("epm:halt:instrument:756733") is None, 10, what="halt lifted")
        assert r.hget("md:756733", "halted") == "0"


def test_contract_details_cached_with_occ_mapping(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r, client_id=2)
        client_api.enqueue_contract_details({"symbol": "SPY", "sec_type": "STK"}, client=r)
        stock = poll(lambda: r.hgetall("contract:756733"), 10, what="stock contract cached")
        assert stock["symbol"] == "SPY" and stock["sec_type"] == "STK"
        client_api.enqueue_contract_details({"symbol": "SPY", "sec_type": "OPT"}, client=r)
        occ_keys = poll(lambda: list(r.scan_iter("contract:occ:*")), 15, what="occ keys")
        con_id = r.get(occ_keys[0])
        option = r.hgetall(f"contract:{con_id}")
        assert option["sec_type"] == "OPT"
        assert occ_keys[0] == f"contract:occ:{option['occ']}"
        assert len(option["occ"]) == 21


def test_account_session_mirrors_positions_pnl_and_summary(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        wait_ready(r, client_id=2)
        oid = client_api.allocate_order_id(r)
        client_api.enqueue_place(oid, "c-pos", SPY, MKT, client=r)
        poll(lambda: oid in sim_orders(sim), 10, what="order filled at the sim")
        account = poll(
            lambda: next((k for k in r.scan_iter("ib:positions:*")), None), 15, what="positions"
        ).split(":", 2)[2]
        position = poll(lambda: r.hget(f"ib:positions:{account}", "756733"), 15, what="SPY")
        assert '"position": "1' in position
        poll(lambda: r.hget(f"ib:account:{account}", "NetLiquidation"), 15, what="summary")
        poll(lambda: r.hgetall(f"ib:pnl:{account}:756733").get("position"), 15, what="pnlSingle")
        poll(lambda: r.hgetall(f"ib:pnl:{account}").get("daily"), 15, what="account pnl")


def test_market_data_lines_not_doubled_by_a_1102_resync(r: redis.Redis, redis_url: str) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port) as bridge:
        wait_ready(r)
        wait_ready(r, client_id=2)
        client_api.enqueue_subscribe(756733, "w1", contract=SPY, client=r)
        poll(lambda: r.hget("md:756733", "bid"), 15, what="md flowing")

        def sim_subs() -> int:
            return sim.call(lambda s: len(s.subs.md_subscribers(756733)))

        assert sim_subs() == 1
        sim.call(lambda s: s.set_connectivity(False))
        poll(
            lambda: bridge.account is not None and bridge.account.state == SessionState.VENUE_DOWN,
            10,
            what="account VENUE_DOWN",
        )
        sim.call(lambda s: s.set_connectivity(True))
        poll(lambda: r.hget("ib:bridge:state", "client2") == "READY", 15, what="account resynced")
        assert bridge.md.open_lines() == 1
        poll(lambda: sim_subs() == 1, 5, what="one subscription at the venue")
        before = r.hget("md:756733", "ts")
        poll(lambda: r.hget("md:756733", "ts") != before, 15, what="md still flowing")
        # Account streams are not doubled either: one positions/summary/pnl listener each.
        kinds = sim.call(lambda s: sorted(a.kind for a in s.subs.all_account_subs()))
        assert len(kinds) == len(set(kinds)), kinds
