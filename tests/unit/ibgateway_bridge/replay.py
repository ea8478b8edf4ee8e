"""Replay a recorded callback sequence (`tests/fixtures/ib`) through the bridge's real parts.

`replay_wrapper` feeds every recorded callback, rebuilt as ibapi objects, into a
`BridgeWrapper` (as IB's decoder thread would) and returns what it put on its two queues.
`ledger_callbacks` hands the data queue's messages to the real `Outbox` (with a recording Celery
app and a Redis stand-in) and returns the ledger task calls it publishes as `(kind, payload)`,
`record_batch` messages expanded: exactly what `tasks.ledger` would get, in publication order.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis

from ibgateway_bridge import payloads
from ibgateway_bridge.marketdata import MarketDataLines
from ibgateway_bridge.outbox import Outbox
from ibgateway_bridge.translate import parse_connection_time_zone
from ibgateway_bridge.wrapper import BridgeWrapper, Message
from tests.fixtures.ib import Recording

# The bridge's receive time of the first callback; each later clock reading is 1 ms later, so
# received_at follows the recorded order (the ledger picks the newest openOrder view by it).
T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
TASK_PREFIX = "tasks.ledger.record_"

LedgerCall = tuple[str, dict[str, Any]]


class StepClock:
    """A clock that moves 1 ms forward at every reading."""

    def __init__(self, start: datetime = T0) -> None:
        self._next = start

    def __call__(self) -> datetime:
        now, self._next = self._next, self._next + timedelta(milliseconds=1)
        return now


def drain(q: queue.Queue[Message]) -> list[Message]:
    out: list[Message] = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def replay_wrapper(recording: Recording) -> tuple[list[Message], list[Message]]:
    """(data messages, control messages) the bridge's wrapper emits for the recording."""
    data: queue.Queue[Message] = queue.Queue()
    control: queue.Queue[Message] = queue.Queue()
    wrapper = BridgeWrapper(recording.client_id, data, control, clock=StepClock())
    # As the bridge's connection does right after the handshake.
    wrapper.set_server_zone(parse_connection_time_zone(recording.connection_time))
    for _event in recording.replay(wrapper):
        pass
    return drain(data), drain(control)


class _Pipeline:
    """What the outbox writes to Redis (mirrors, the order-error stream), kept, not sent."""

    def __init__(self, sink: list[tuple[str, tuple[Any, ...]]]) -> None:
        self._sink = sink

    def __getattr__(self, command: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self._sink.append((command, args))

        return call

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return []


class _Redis:
    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self.commands)


class _Celery:
    """Records `send_task` calls instead of publishing them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    @contextmanager
    def producer_or_acquire(self) -> Iterator[None]:
        yield None

    def send_task(self, name: str, args: list[Any], producer: object = None) -> None:
        self.sent.append((name, args[0]))


def ledger_callbacks(recording: Recording, messages: list[Message]) -> list[LedgerCall]:
    """The ledger task calls the real outbox publishes for `messages`, as (kind, payload)."""
    fake_redis = _Redis()
    celery = _Celery()
    outbox = Outbox(
        queue.Queue(),
        cast(redis.Redis, fake_redis),
        celery,
        MarketDataLines(cast(redis.Redis, fake_redis)),
        orders_client_id=recording.client_id,
    )
    outbox.handle_batch(messages)
    calls: list[LedgerCall] = []
    for name, arg in celery.sent:
        if name == payloads.TASK_RECORD_BATCH:
            calls.extend((item["kind"], item["payload"]) for item in arg)
        else:
            assert name.startswith(TASK_PREFIX), name
            calls.append((name.removeprefix(TASK_PREFIX), arg))
    return calls
