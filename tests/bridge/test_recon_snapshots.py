"""The bridge answers reconciliation snapshots against the simulator: the venue's executions
(reqExecutions) and positions (reqPositionsMulti) under the caller's request id, on Redis only."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from ibgateway_bridge import client_api
from tests.bridge.harness import (
    SPY_CON,
    bridge_in_process,
    ledger_messages,
    poll,
    sim_exec_ids,
    sim_thread,
    wait_ready,
)

pytestmark = [pytest.mark.slow]

SPY = {"con_id": SPY_CON, "symbol": "SPY", "sec_type": "STK"}


def test_snapshots_list_the_venue_and_stay_out_of_the_ledger(
    r: redis.Redis, redis_url: str
) -> None:
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r)
        for qty in ("100", "30"):
            oid = client_api.allocate_order_id(r)
            order = {"action": "BUY", "quantity": qty, "order_type": "MKT"}
            client_api.enqueue_place(oid, f"snap-{oid}", SPY, order, client=r)
        execs = poll(lambda: len(sim_exec_ids(sim)) >= 2, 20, what="fills") and sim_exec_ids(sim)
        poll(
            lambda: len(ledger_messages(r, "tasks.ledger.record_execution")) >= len(execs),
            20,
            what="live fills on the ledger queue",
        )
        live = ledger_messages(r, "tasks.ledger.record_execution")

        request_id = client_api.request_executions_snapshot(client=r)
        answer = client_api.read_snapshot(request_id, 20, client=r)
        assert answer is not None
        assert {e["exec_id"] for e in answer} == execs
        assert all(e["req_id"] != -1 for e in answer)
        # The answer is the caller's: nothing more went to the ledger.
        assert len(ledger_messages(r, "tasks.ledger.record_execution")) == len(live)

        request_id = client_api.request_positions_snapshot(client=r)
        positions = client_api.read_snapshot(request_id, 20, client=r)
        assert positions is not None
        spy = [p for p in positions if p["con_id"] == SPY_CON]
        assert [Decimal(p["position"]) for p in spy] == [Decimal("130")]
        # The keys are gone once read; a second snapshot gets its own answer.
        assert client_api.read_snapshot(request_id, 0.2, client=r) is None


def test_a_snapshot_nobody_answers_times_out(r: redis.Redis) -> None:
    request_id = client_api.request_executions_snapshot(client=r)
    assert client_api.read_snapshot(request_id, 0.3, client=r) is None


def test_a_connection_lost_mid_answer_ends_the_snapshot_as_incomplete(r: redis.Redis) -> None:
    from ibgateway_bridge.snapshots import SnapshotRequests

    snaps = SnapshotRequests(r)
    snaps.register(41, "ex-lost", "executions", session="orders")
    snaps.register(42, "pos-other", "positions", session="account")
    snaps.on_message("snapshot_execution", {"req_id": 41, "exec_id": "a.01"})
    assert 41 in snaps.ids
    assert snaps.abandon("orders") == 1
    assert 41 not in snaps.ids and 42 in snaps.ids
    with pytest.raises(client_api.SnapshotIncompleteError):
        client_api.read_snapshot("ex-lost", 1, client=r)
    # A late answer of the abandoned request is nobody's now.
    assert snaps.on_message("exec_details_end", {"req_id": 41}) is None
    snaps.on_message("position_multi_end", {"req_id": 42})
    assert client_api.read_snapshot("pos-other", 1, client=r) == []
