"""The one consumer of normalized callbacks: ledger tasks out, Redis mirrors updated.

`Outbox.run` takes the first waiting message as soon as it arrives, then whatever else is already
queued (up to `batch_max`), and handles them as one batch: Redis writes go in one pipeline round
trip and Celery messages through one producer connection. A lone fill therefore leaves at once; a
burst shares the round trips. Order/fill callbacks become `tasks.ledger.*` messages (idempotent on
exec_id / order id + status on the ledger side); high-rate data (ticks, P&L, positions, account
values) becomes Redis hashes.

Publishing never drops a message: a broker outage (kombu `OperationalError`) or a lost Redis
connection is retried with backoff while the queue grows in memory; and a bridge that dies with
messages queued loses nothing the ledger needs, because the reconnect's `reqExecutions`/
`reqOpenOrders` replays them (the ledger is idempotent on exec_id).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from kombu.exceptions import OperationalError
from prometheus_client import Counter, Histogram

from epm.backoff import Backoff
from epm.logging import get_logger
from ibgateway_bridge import payloads
from ibgateway_bridge.marketdata import CONTRACT_KEY, MarketDataLines
from ibgateway_bridge.translate import (
    TranslationError,
    iso_utc,
    normalize_occ,
    occ_symbol,
    parse_trading_hours,
)
from ibgateway_bridge.wrapper import Message

log = get_logger("ibgateway_bridge.outbox")

CONTRACT_OCC_KEY = "contract:occ:{occ}"
POSITIONS_KEY = "ib:positions:{account}"
ACCOUNT_KEY = "ib:account:{account}"
PNL_KEY = "ib:pnl:{account}"
PNL_SINGLE_KEY = "ib:pnl:{account}:{con_id}"
ORDER_ERRORS_STREAM = "epm:bridge:order_errors"

PUBLISH_LATENCY = Histogram(
    "epm_bridge_callback_publish_seconds",
    "From callback receipt to the task message handed to the broker",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
)

PUBLISH_RETRIES = Counter(
    "epm_bridge_outbox_retries_total",
    "Batches whose Redis write or broker publish failed and was retried",
)

# Failures worth waiting out: the broker or Redis unreachable, whatever layer reports it.
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError, OperationalError, OSError)

# The bridge's own (not IB's) callback kind: an order re-placed under a new id after error 103.
ORDER_REPLACED = "order_replaced"

_LEDGER_TASKS = {
    ORDER_REPLACED: payloads.TASK_RECORD_ORDER_REPLACED,
    "execution": payloads.TASK_RECORD_EXECUTION,
    "commission": payloads.TASK_RECORD_COMMISSION,
    "order_status": payloads.TASK_RECORD_ORDER_STATUS,
    "open_order": payloads.TASK_RECORD_OPEN_ORDER,
}

_KIND_OF = {
    payloads.TASK_RECORD_EXECUTION: "execution",
    payloads.TASK_RECORD_COMMISSION: "commission",
    payloads.TASK_RECORD_ORDER_STATUS: "order_status",
    payloads.TASK_RECORD_OPEN_ORDER: "open_order",
    payloads.TASK_RECORD_ORDER_ERROR: "order_error",
    payloads.TASK_RECORD_ORDER_REPLACED: "order_replaced",
    payloads.TASK_RECORD_CONTRACT: "contract",
}


class Outbox:
    """Drain the data queue into Celery tasks and Redis updates, in arrival order."""

    def __init__(
        self,
        data: queue.Queue[Message],
        client: redis.Redis,
        celery_app: Any,
        market_data: MarketDataLines,
        orders_client_id: int,
        batch_max: int = 200,
        send_extra_tasks: bool = True,
        batch_items: int = 50,
    ) -> None:
        self._data = data
        self._redis = client
        self._celery = celery_app
        self._md = market_data
        self._orders_client_id = orders_client_id
        self._batch_max = batch_max
        self._send_extra = send_extra_tasks
        self._batch_items = batch_items
        self._stop = threading.Event()
        self._pnl_req_account: dict[int, tuple[str, int | None]] = {}
        self.published = 0
        # Failed attempts that were retried (broker or Redis unreachable); also in Prometheus.
        self.publish_retries = 0
        # Set by the bridge: asks for reqPnLSingle the first time a position is seen.
        self.on_position: Callable[[str, int], None] | None = None

    def register_pnl_request(self, req_id: int, account: str, con_id: int | None) -> None:
        self._pnl_req_account[req_id] = (account, con_id)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set() or not self._data.empty():
            try:
                first = self._data.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self._batch_max:
                try:
                    batch.append(self._data.get_nowait())
                except queue.Empty:
                    break
            try:
                self.handle_batch(batch)
            except Exception as e:  # this thread is the only way callbacks leave: it must live
                log.error(
                    "outbox_batch_failed",
                    error=repr(e),
                    kinds=[m.kind for m in batch],
                    data=json.dumps([m.data for m in batch], default=str),
                )

    def handle_batch(self, batch: list[Message]) -> None:
        """Route one batch; retries transient broker/Redis failures until it is out.

        A broker outage surfaces as kombu's `OperationalError` once kombu's own short publish
        retries are spent; it is retried here with backoff for as long as it lasts (the data queue
        grows meanwhile). A partly published burst is published again whole: the ledger is
        idempotent on exec_id / order id + status, so a repeat is harmless and a gap is not.
        Only a stopping bridge gives up, and what it held is replayed by the next connection's
        `reqExecutions`/`reqOpenOrders` resync.
        """
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                self._handle(batch)
                return
            except _TRANSIENT as e:
                self.publish_retries += 1
                PUBLISH_RETRIES.inc()
                if self._stop.is_set():
                    log.error("outbox_abandoned_on_stop", error=repr(e), batch=len(batch))
                    return
                delay = backoff.next_delay()
                log.warning("outbox_retry", error=repr(e), batch=len(batch), delay_s=delay)
                self._stop.wait(delay)

    def _handle(self, batch: list[Message]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        tasks: list[tuple[str, dict[str, Any], float]] = []
        for msg in batch:
            try:
                self._route(msg, pipe, tasks)
            except (TranslationError, KeyError, ValueError, TypeError) as e:
                log.error("outbox_bad_message", kind=msg.kind, error=repr(e))
        # A command refused by Redis (say WRONGTYPE on a mirror key) would fail the same way on
        # every retry: it is logged, not retried; a lost connection still raises and is retried.
        for result in pipe.execute(raise_on_error=False):
            if isinstance(result, redis.ResponseError):
                log.error("outbox_redis_refused", error=repr(result))
        if tasks:
            self._publish(tasks)
            self.published += len(tasks)

    def _publish(self, tasks: list[tuple[str, dict[str, Any], float]]) -> None:
        # A lone callback goes as its own task at once; a burst goes as `record_batch` messages
        # (in order, at most `batch_items` callbacks each): one broker round trip instead of N.
        with self._celery.producer_or_acquire() as producer:
            if len(tasks) == 1 or self._batch_items <= 1:
                for name, payload, _received in tasks:
                    self._celery.send_task(name, args=[payload], producer=producer)
            else:
                for start in range(0, len(tasks), self._batch_items):
                    chunk = tasks[start : start + self._batch_items]
                    items = [{"kind": _KIND_OF[name], "payload": p} for name, p, _r in chunk]
                    self._celery.send_task(
                        payloads.TASK_RECORD_BATCH, args=[items], producer=producer
                    )
        sent_at = time.time()
        for _name, _payload, received in tasks:
            PUBLISH_LATENCY.observe(max(sent_at - received, 0.0))

    def _route(
        self, msg: Message, pipe: Any, tasks: list[tuple[str, dict[str, Any], float]]
    ) -> None:
        kind, data = msg.kind, msg.data
        received = msg.received_at.timestamp()
        ts = iso_utc(msg.received_at) or ""
        task = _LEDGER_TASKS.get(kind)
        if task is not None:
            tasks.append((task, data, received))
            return
        if kind in ("tick", "halt", "greeks", "bar", "depth"):
            self._md.apply(kind, data, ts, pipe)
        elif kind == "error":
            self._route_error(msg, pipe, tasks)
        elif kind == "contract_details":
            self._cache_contract(data, pipe, tasks, received)
        elif kind == "position":
            account = data["account"] or "-"
            pipe.hset(POSITIONS_KEY.format(account=account), str(data["con_id"]), json.dumps(data))
            if self.on_position is not None and data.get("con_id"):
                self.on_position(account, int(data["con_id"]))
        elif kind == "account_summary":
            account = data["account"] or "-"
            pipe.hset(ACCOUNT_KEY.format(account=account), data["tag"], data["value"])
            pipe.hset(ACCOUNT_KEY.format(account=account), "ts", ts)
        elif kind in ("pnl", "pnl_single"):
            account, con_id = self._pnl_req_account.get(int(data["req_id"]), ("-", None))
            if kind == "pnl":
                key = PNL_KEY.format(account=account)
            else:
                key = PNL_SINGLE_KEY.format(account=account, con_id=con_id)
            fields = {k: v for k, v in data.items() if v is not None and k != "req_id"}
            pipe.hset(key, mapping={**fields, "ts": ts})

    def _route_error(
        self, msg: Message, pipe: Any, tasks: list[tuple[str, dict[str, Any], float]]
    ) -> None:
        data = msg.data
        req_id = int(data["ib_order_id"])
        if msg.client_id != self._orders_client_id or req_id >= 1_000_000_000:
            found = self._md.con_id_for(req_id)
            if found is not None:
                pipe.hset(
                    f"md:{found[0]}",
                    mapping={"error_code": str(data["code"]), "error": data["message"]},
                )
            return
        fields = {k: str(v) for k, v in data.items() if v is not None}
        pipe.xadd(ORDER_ERRORS_STREAM, fields, maxlen=100_000, approximate=True)
        if self._send_extra:
            tasks.append((payloads.TASK_RECORD_ORDER_ERROR, data, msg.received_at.timestamp()))

    def _cache_contract(
        self,
        data: dict[str, Any],
        pipe: Any,
        tasks: list[tuple[str, dict[str, Any], float]],
        received: float,
    ) -> None:
        con_id = data.get("con_id")
        if not con_id:
            return
        record = dict(data)
        if data.get("sec_type") in ("OPT", "FOP") and data.get("expiry") and data.get("strike"):
            from decimal import Decimal

            try:
                occ = occ_symbol(
                    data["symbol"], data["expiry"], data["right"], Decimal(data["strike"])
                )
            except TranslationError:
                occ = None
            if occ is not None:
                record["occ"] = occ
                pipe.set(CONTRACT_OCC_KEY.format(occ=normalize_occ(occ)), con_id)
        if data.get("trading_hours"):
            try:
                sessions = parse_trading_hours(
                    data["trading_hours"], data.get("time_zone_id") or ""
                )
                record["sessions"] = json.dumps([[iso_utc(a), iso_utc(b)] for a, b in sessions])
            except TranslationError as e:
                log.warning("trading_hours_unparsed", con_id=con_id, error=repr(e))
        mapping = {k: str(v) for k, v in record.items() if v is not None}
        pipe.hset(CONTRACT_KEY.format(con_id=con_id), mapping=mapping)
        if self._send_extra:
            tasks.append((payloads.TASK_RECORD_CONTRACT, data, received))
