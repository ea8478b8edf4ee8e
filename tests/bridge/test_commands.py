"""Command stream: shapes, parsing to reason codes, fenced markers, halts, client_api."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis

from ibgateway_bridge import client_api
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.ids import OrderIdAllocator
from ibgateway_bridge.lease import BridgeLease

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
SPY = {"con_id": 756733, "symbol": "SPY"}


def test_place_roundtrip_keeps_decimals_exact() -> None:
    cmd = cmds.PlaceOrder(
        order_id=7,
        client_order_id="c-7",
        contract=cmds.ContractSpec(**SPY),
        order=client_api.limit_order("BUY", "100", "450.05"),
    )
    fields = cmds.encode_command(cmd, NOW)
    assert '"450.05"' in fields["body"]
    parsed = cmds.parse_entry("1-0", fields)
    assert isinstance(parsed, cmds.Envelope)
    assert parsed.command == cmd
    assert parsed.command.order.lmt_price == Decimal("450.05")
    assert parsed.enqueued_at == NOW


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"type": "teleport", "body": "{}"}, cmds.BridgeRejectReason.UNKNOWN_COMMAND),
        ({"body": "{}"}, cmds.BridgeRejectReason.UNKNOWN_COMMAND),
        ({"type": "place", "body": "{not json"}, cmds.BridgeRejectReason.MALFORMED_COMMAND),
        ({"type": "place", "body": "[1]"}, cmds.BridgeRejectReason.MALFORMED_COMMAND),
        ({"type": "cancel", "body": '{"order_id": 0}'}, cmds.BridgeRejectReason.MALFORMED_COMMAND),
        (
            {
                "type": "place",
                "body": '{"order_id": 3, "client_order_id": "x", "contract": {"con_id": 1},'
                ' "order": {"action": "BUY", "quantity": "-5"}}',
            },
            cmds.BridgeRejectReason.MALFORMED_COMMAND,
        ),
        (
            {"type": "cancel", "body": '{"order_id": 5, "extra": 1}'},
            cmds.BridgeRejectReason.MALFORMED_COMMAND,
        ),
    ],
)
def test_parse_entry_bad_input_gives_reason_code(fields: dict[str, str], reason: str) -> None:
    parsed = cmds.parse_entry("9-0", fields)
    assert isinstance(parsed, cmds.BadCommand)
    assert parsed.reason == reason


def test_sent_keys_distinguish_place_and_modify_versions_cancels_have_none() -> None:
    spec = cmds.ContractSpec(**SPY)
    order = client_api.limit_order("BUY", "1", "1")
    place = cmds.PlaceOrder(order_id=5, client_order_id="a", contract=spec, order=order)
    mod1 = cmds.ModifyOrder(order_id=5, version=1, client_order_id="a", contract=spec, order=order)
    mod2 = cmds.ModifyOrder(order_id=5, version=2, client_order_id="a", contract=spec, order=order)
    keys = {cmds.sent_key(1, place), cmds.sent_key(1, mod1), cmds.sent_key(1, mod2)}
    assert keys == {"ib:sent:1:5", "ib:sent:1:5:v1", "ib:sent:1:5:v2"}
    # Every cancel goes out: a second cancel after IB refused the first must reach the venue.
    assert cmds.sent_key(1, cmds.CancelOrder(order_id=5)) is None
    assert cmds.sent_key(1, cmds.GlobalCancel()) is None


def test_marker_round_trip_and_legacy_values() -> None:
    marker = cmds.Marker.parse(cmds.marker_value(cmds.MarkerState.SENT, "5-0", "c:with:colons"))
    assert marker == cmds.Marker(cmds.MarkerState.SENT, "5-0", "", "c:with:colons")
    assert marker.other_order("c-other") and not marker.other_order("c:with:colons")
    legacy = cmds.Marker.parse("pending:7-1")
    assert legacy == cmds.Marker(cmds.MarkerState.PENDING, "7-1")
    assert not legacy.other_order("anything")  # written before refs were kept: not proof
    refused = cmds.marker_value(cmds.MarkerState.REFUSED, "8-0", None, "HALTED_GLOBAL")
    assert cmds.Marker.parse(refused).reason == "HALTED_GLOBAL"


def _log(r: redis.Redis) -> tuple[cmds.CommandLog, BridgeLease]:
    lease = BridgeLease(r, ttl_ms=5000)
    grant = lease.acquire()
    cmds.ensure_group(r)
    cmds.ensure_group(r)  # idempotent
    return cmds.CommandLog(r, lease.key, grant.value), lease


def test_marker_then_ack_removes_from_pending_and_blocks_resend(r: redis.Redis) -> None:
    log, _lease = _log(r)
    sid = client_api.enqueue_place(
        42, "c-42", SPY, client_api.limit_order("BUY", "1", "1"), client=r
    )
    entries = log.read(start=None)
    assert [e[0] for e in entries] == [sid]
    key = "ib:sent:1:42"
    assert log.mark_pending(key, sid, "c-42") is None
    # A second attempt sees the pending marker of the first.
    assert log.mark_pending(key, sid, "c-42") == f"pending:{sid}::c-42"
    log.mark_sent_and_ack(key, sid, "c-42")
    assert r.get(key) == f"sent:{sid}::c-42"
    assert r.xpending(cmds.COMMAND_STREAM, cmds.COMMAND_GROUP)["pending"] == 0
    # A refusal never overwrites a marker, and settling touches only our own pending one.
    assert log.claim_refusal(key, "9-9", "HALTED_GLOBAL", "c-42") == f"sent:{sid}::c-42"
    log.refuse_pending(key, sid, "HALTED_GLOBAL", "c-42")
    log.clear_pending(key, sid)
    assert r.get(key) == f"sent:{sid}::c-42"


def test_pending_marker_settles_to_refused_or_cleared(r: redis.Redis) -> None:
    log, _lease = _log(r)
    log.mark_pending("ib:sent:1:7", "1-0", "c-7")
    log.refuse_pending("ib:sent:1:7", "1-0", "HALTED_GLOBAL", "c-7")
    assert r.get("ib:sent:1:7") == "refused:1-0:HALTED_GLOBAL:c-7"
    log.mark_pending("ib:sent:1:8", "2-0", "c-8")
    log.clear_pending("ib:sent:1:8", "2-0")
    assert r.get("ib:sent:1:8") is None
    assert log.claim_refusal("ib:sent:1:8", "2-0", "CANCELED_BEFORE_SEND") is None
    assert r.get("ib:sent:1:8") == "refused:2-0:CANCELED_BEFORE_SEND:"


def test_unacked_entry_is_redelivered_to_the_same_consumer(r: redis.Redis) -> None:
    log, _lease = _log(r)
    sid = client_api.enqueue_cancel(1, client=r)
    assert [e[0] for e in log.read(start=None)] == [sid]
    # After a crash the new process reads its pending entries from "0".
    assert [e[0] for e in log.read(start="0")] == [sid]
    log.ack(sid)
    assert log.read(start="0") == []


def test_marker_write_fenced_when_lease_taken(r: redis.Redis) -> None:
    log, lease = _log(r)
    r.set(lease.key, "77:usurper:1")
    with pytest.raises(cmds.LeaseFencedError):
        log.mark_pending("ib:sent:1:9", "1-0")
    with pytest.raises(cmds.LeaseFencedError):
        log.mark_sent_and_ack("ib:sent:1:9", "1-0")
    assert r.get("ib:sent:1:9") is None


def test_orphans_of_another_consumer_are_claimed(r: redis.Redis) -> None:
    log, _lease = _log(r)
    sid = client_api.enqueue_cancel(3, client=r)
    r.xreadgroup(cmds.COMMAND_GROUP, "old-bridge", {cmds.COMMAND_STREAM: ">"})
    assert log.claim_orphans() == 1
    assert [e[0] for e in log.read(start="0")] == [sid]


def test_halt_reason_global_instrument_strategy(r: redis.Redis) -> None:
    assert cmds.halt_reason(r, 756733, "0DTE_Scalp") is None
    r.set("epm:halt:strategy:0DTE_Scalp", "1")
    assert cmds.halt_reason(r, 756733, "0DTE_Scalp") == cmds.BridgeRejectReason.HALTED_STRATEGY
    assert cmds.halt_reason(r, 756733, "Other") is None
    r.set("epm:halt:instrument:756733", "2")
    assert cmds.halt_reason(r, 756733, None) == cmds.BridgeRejectReason.HALTED_INSTRUMENT
    r.set("epm:halt:global", "kill-switch")
    assert cmds.halt_reason(r, None, None) == cmds.BridgeRejectReason.HALTED_GLOBAL


def test_client_api_enqueue_every_type_parses_back(r: redis.Redis) -> None:
    OrderIdAllocator(r).sync(1)  # what the bridge's connect does; a missing counter refuses
    oid = client_api.allocate_order_id(client=r)
    order = {"action": "SELL", "quantity": "2", "order_type": "MKT"}
    ids = [
        client_api.enqueue_place(oid, "c1", SPY, order, strategy="s", client=r),
        client_api.enqueue_modify(oid, 1, "c1", SPY, order, client=r),
        client_api.enqueue_cancel(oid, client=r),
        client_api.enqueue_global_cancel("drill", client=r),
        client_api.enqueue_contract_details({"symbol": "SPY"}, client=r),
        client_api.enqueue_subscribe(756733, "w1", depth=True, bars=True, client=r),
        client_api.enqueue_unsubscribe(756733, "w1", client=r),
        client_api.enqueue_req_executions(NOW, client=r),
        client_api.enqueue_req_positions(client=r),
    ]
    entries = r.xrange(cmds.COMMAND_STREAM)
    assert [e[0] for e in entries] == ids
    kinds = [cmds.parse_entry(sid, f).command.type for sid, f in entries]  # type: ignore[union-attr]
    assert kinds == list(cmds.CommandType)


def test_client_api_rejects_bad_order_before_enqueue(r: redis.Redis) -> None:
    with pytest.raises(ValueError):
        client_api.enqueue_place(1, "c", SPY, {"action": "HOLD", "quantity": "1"}, client=r)
    assert not r.exists(cmds.COMMAND_STREAM)


def test_publish_reject_carries_ids_and_reason(r: redis.Redis) -> None:
    cmd = cmds.CancelOrder(order_id=11)
    cmds.publish_reject(r, "5-0", cmds.BridgeRejectReason.HALTED_GLOBAL, "halted", cmd, NOW)
    ((_, fields),) = r.xrange(cmds.REJECT_STREAM)
    assert fields["reason"] == "HALTED_GLOBAL" and fields["ib_order_id"] == "11"
