"""Outbox: a lone callback leaves as its own ledger task; a burst leaves as `record_batch`
messages in arrival order; Redis mirrors for account data. Real Redis broker, no worker."""

from __future__ import annotations

import queue
import threading
from datetime import UTC, datetime

import redis

from ibgateway_bridge.marketdata import MarketDataLines
from ibgateway_bridge.outbox import Outbox
from ibgateway_bridge.wrapper import Message
from tests.bridge.harness import celery_for, ledger_message_count, ledger_messages

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def execution(i: int) -> Message:
    data = {"exec_id": f"e.{i:02d}", "ib_order_id": 1, "client_id": 1, "shares": "1", "price": "1"}
    return Message("execution", 1, data, NOW)


def outbox(r: redis.Redis, redis_url: str, batch_items: int = 50) -> Outbox:
    return Outbox(
        queue.Queue(),
        r,
        celery_for(redis_url),
        MarketDataLines(r),
        orders_client_id=1,
        batch_items=batch_items,
    )


def test_lone_fill_is_its_own_task(r: redis.Redis, redis_url: str) -> None:
    box = outbox(r, redis_url)
    box.handle_batch([execution(1)])
    raw = r.lrange("ledger", 0, -1)
    assert len(raw) == 1 and "tasks.ledger.record_execution" in raw[0]
    assert ledger_messages(r) == [("tasks.ledger.record_execution", execution(1).data)]


def test_burst_is_batched_in_order_in_chunks(r: redis.Redis, redis_url: str) -> None:
    box = outbox(r, redis_url, batch_items=4)
    burst = [execution(i) for i in range(10)]
    burst.insert(3, Message("commission", 1, {"exec_id": "e.01", "commission": "1.0"}, NOW))
    box.handle_batch(burst)
    assert ledger_message_count(r) == 3  # 11 callbacks in chunks of 4
    got = ledger_messages(r)
    assert [p["exec_id"] for _n, p in got] == [m.data["exec_id"] for m in burst]
    assert got[3][0] == "tasks.ledger.record_commission"
    assert box.published == 11


def test_order_error_goes_to_stream_and_task(r: redis.Redis, redis_url: str) -> None:
    box = outbox(r, redis_url)
    data = {
        "ib_order_id": 7,
        "client_id": 1,
        "code": 201,
        "message": "rejected",
        "received_at": "x",
    }
    box.handle_batch([Message("error", 1, data, NOW)])
    ((_i, fields),) = r.xrange("epm:bridge:order_errors")
    assert fields["code"] == "201" and fields["ib_order_id"] == "7"
    assert ledger_messages(r, "tasks.ledger.record_order_error")[0][1]["code"] == 201


def test_account_data_mirrored_to_redis_hashes(r: redis.Redis, redis_url: str) -> None:
    box = outbox(r, redis_url)
    box.register_pnl_request(5, "DU1", None)
    box.handle_batch(
        [
            Message(
                "account_summary",
                2,
                {
                    "req_id": 1,
                    "account": "DU1",
                    "tag": "NetLiquidation",
                    "value": "100000.00",
                    "currency": "USD",
                },
                NOW,
            ),
            Message(
                "pnl", 2, {"req_id": 5, "daily": "12.5", "unrealized": "3", "realized": None}, NOW
            ),
            Message(
                "position",
                2,
                {"account": "DU1", "con_id": 756733, "position": "10", "avg_cost": "450.1"},
                NOW,
            ),
        ]
    )
    assert r.hget("ib:account:DU1", "NetLiquidation") == "100000.00"
    pnl = r.hgetall("ib:pnl:DU1")
    assert pnl["daily"] == "12.5" and "realized" not in pnl and pnl["ts"]
    assert '"position": "10"' in r.hget("ib:positions:DU1", "756733")
    assert ledger_message_count(r) == 0


def test_redis_refusing_a_mirror_write_does_not_hold_back_fills(
    r: redis.Redis, redis_url: str
) -> None:
    """A command Redis refuses (WRONGTYPE) fails identically on every retry: it is logged, and
    the fill in the same batch still leaves, instead of the batch being retried forever."""
    box = outbox(r, redis_url)
    r.set("ib:account:DU1", "not a hash")
    summary = {"req_id": 1, "account": "DU1", "tag": "NetLiquidation", "value": "1", "currency": ""}
    done = threading.Event()

    def run() -> None:
        box.handle_batch([Message("account_summary", 2, summary, NOW), execution(1)])
        done.set()

    threading.Thread(target=run, daemon=True).start()
    try:
        assert done.wait(10), "the batch was retried instead of handled"
    finally:
        box.stop()  # lets a retrying handle_batch give up, so the thread ends either way
    assert ledger_messages(r) == [("tasks.ledger.record_execution", execution(1).data)]
    assert box.publish_retries == 0
