"""Wrapper signature tolerance (ibapi 9.81 and both 10.x `error` forms), backoff, metrics."""

from __future__ import annotations

import queue
import random
import urllib.request
from datetime import UTC, datetime

import redis
from ibapi.contract import Contract
from ibapi.execution import Execution
from ibapi.wrapper import EWrapper

from epm.backoff import Backoff
from ibgateway_bridge import client_api
from ibgateway_bridge.connection import IBSession
from ibgateway_bridge.runtime import STATE_KEY, BridgeConfig
from ibgateway_bridge.translate import parse_connection_time_zone
from ibgateway_bridge.wrapper import BridgeWrapper, Message
from tests.bridge.harness import bridge_in_process, poll, sim_thread, wait_ready

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def wrapper() -> tuple[BridgeWrapper, queue.Queue[Message], queue.Queue[Message]]:
    data: queue.Queue[Message] = queue.Queue()
    control: queue.Queue[Message] = queue.Queue()
    return BridgeWrapper(1, data, control, clock=lambda: NOW), data, control


def test_error_three_signatures_give_the_same_message() -> None:
    forms = [
        (12, 201, "Order rejected"),  # 9.81
        (12, 201, "Order rejected", '{"reason": "x"}'),  # 10.x before errorTime
        (12, 1795703401000, 201, "Order rejected", '{"reason": "x"}'),  # 10.3x+
    ]
    for args in forms:
        w, data, control = wrapper()
        w.error(*args)
        msg = data.get_nowait()
        assert msg.kind == "error" and msg.data["code"] == 201 and msg.data["ib_order_id"] == 12
        assert msg.data["message"] == "Order rejected"
        if len(args) == 5:
            assert msg.data["error_time"] == "2026-11-26T14:30:01+00:00"
        # An order's error is the venue's answer to it: the connection manager hears it too
        # (it settles the placement it waited for), the ledger gets it through the data queue.
        assert control.get_nowait().data == msg.data and control.empty()


def test_error_control_codes_reach_the_connection_manager() -> None:
    w, data, control = wrapper()
    w.error(-1, 1100, "Connectivity between IB and TWS has been lost.")
    assert control.get_nowait().data["code"] == 1100
    w.error(-1, 2158, "Sec-def data farm connection is OK:secdefil")
    assert control.get_nowait().data["code"] == 2158
    w.error(-1, 399, "Order message: a warning for nobody in particular")
    assert control.empty()  # a notice for no request is not the connection manager's matter
    assert data.empty()  # reqId -1: no order to tell the ledger about


def test_commission_and_fees_report_10x_maps_to_commission() -> None:
    class CommissionAndFeesReport:  # the 10.3x+ shape: commissionAndFees instead of commission
        execId = "e.01"
        commissionAndFees = 1.25
        currency = "USD"
        realizedPNL = 1.7976931348623157e308
        yield_ = 1.7976931348623157e308
        yieldRedemptionDate = 0

    w, data, _control = wrapper()
    w.commissionAndFeesReport(CommissionAndFeesReport())
    msg = data.get_nowait()
    assert msg.kind == "commission" and msg.data["commission"] == "1.25"
    assert msg.data["realized_pnl"] is None


def test_callback_failure_never_raises_into_the_decoder() -> None:
    w, data, _control = wrapper()
    w.execDetails(1, object(), object())  # nothing decodable
    assert data.empty()


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    assert all(d <= 4.0 for d in delays)
    assert delays[0] <= 0.5 and max(delays) > 2.0
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_metrics_exported_on_localhost(r: redis.Redis, redis_url: str) -> None:
    config = BridgeConfig(send_extra_tasks=False, metrics_port=0)
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port, config=config) as bridge:
        wait_ready(r)
        client_api.enqueue_place(
            client_api.allocate_order_id(r),
            "m-1",
            {"con_id": 756733, "symbol": "SPY"},
            {"action": "BUY", "quantity": "1", "order_type": "MKT"},
            client=r,
        )
        assert r.hget(STATE_KEY, "metrics_port") == str(bridge.metrics_port)

        def scrape() -> str:
            url = f"http://127.0.0.1:{bridge.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode()

        text = poll(
            lambda: (
                (t := scrape())
                and 'epm_bridge_send_wait_seconds_count{connection="orders"' in t
                and t
            ),
            10,
            what="send wait metric",
        )
        assert 'epm_bridge_backlog{connection="orders"}' in text
        assert "epm_bridge_messages_sent_total" in text


def _execution(time: str) -> tuple[Contract, Execution]:
    contract = Contract()
    contract.conId, contract.symbol, contract.secType = 756733, "SPY", "STK"
    ex = Execution()
    ex.execId, ex.orderId, ex.clientId, ex.permId = "00aa.01", 12, 1, 9001
    ex.side, ex.shares, ex.price, ex.time = "BOT", 1.0, 450.0, time
    return contract, ex


def test_wrapper_reads_zone_less_execution_times_in_its_sessions_zone() -> None:
    data: queue.Queue[Message] = queue.Queue()
    control: queue.Queue[Message] = queue.Queue()
    w = BridgeWrapper(1, data, control, clock=lambda: NOW)
    # Before the handshake named a zone, a zone-less time is flagged, never read as New York.
    w.execDetails(-1, *_execution("20261126  09:30:01"))
    unknown = data.get_nowait().data
    assert unknown["time"] is None and unknown["time_zone_source"] == "unknown"
    w.set_server_zone(parse_connection_time_zone(b"20261126 10:28:21 CET"))
    w.execDetails(-1, *_execution("20261126  09:30:01"))
    msg = data.get_nowait()
    assert msg.kind == "execution"
    assert msg.data["time"] == "2026-11-26T08:30:01+00:00"
    assert msg.data["time_zone"] == "Europe/Berlin" and msg.data["time_zone_source"] == "session"


def test_session_wrapper_takes_the_gateway_zone_from_the_handshake() -> None:
    data: queue.Queue[Message] = queue.Queue()
    with sim_thread() as sim:
        session = IBSession(
            "orders",
            "127.0.0.1",
            sim.port,
            41,
            data,
            45,
            on_control=lambda _s, _m: None,
            on_connected=lambda _s: True,
            on_state=lambda _s, _st: None,
        )
        session.start()
        try:
            poll(session.ready.is_set, 15, what="session READY against the sim")
            client = session.client
            assert client is not None
            wrapper = client.wrapper
            assert isinstance(wrapper, BridgeWrapper)
            # The sim's handshake says UTC (tws_sim/protocol/framing.connection_time).
            assert wrapper.server_zone.known and wrapper.server_zone.name == "UTC"
            wrapper.execDetails(-1, *_execution("20261126  09:30:01"))
            msg = poll(lambda: _first_execution(data), 5, what="the execution message")
            assert msg.data["time"] == "2026-11-26T09:30:01+00:00"
            assert msg.data["time_zone_source"] == "session"
        finally:
            session.stop()


def _first_execution(data: queue.Queue[Message]) -> Message | None:
    while True:
        try:
            msg = data.get_nowait()
        except queue.Empty:
            return None
        if msg.kind == "execution":
            return msg


def test_every_callback_survives_an_undecodable_message() -> None:
    """A callback fed garbage logs and returns: one bad message must never stop the decoder
    thread (whichever callback IB's decoder calls with it)."""
    import inspect

    w, _data, _control = wrapper()
    overridden = [
        name
        for name, fn in vars(BridgeWrapper).items()
        if callable(fn) and hasattr(EWrapper, name) and not name.startswith("_")
    ]
    assert len(overridden) > 25
    garbage = object()  # int(), str.split(), Decimal(str()) all fail on it
    for name in overridden:
        params = [
            p
            for p in inspect.signature(getattr(BridgeWrapper, name)).parameters.values()
            if p.name != "self" and p.kind is not p.VAR_POSITIONAL and p.default is p.empty
        ]
        getattr(w, name)(*([garbage] * len(params)))
