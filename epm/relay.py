"""The relay: Redis stream `signals.exec.intent` → `tasks.intake.submit_intent` (`epm relay`).

For producers that `XADD` instead of calling the task. Each relay process is one consumer of the
consumer group `epm-relay`, so several relays share the stream. Delivery is at-least-once:
- an entry is acknowledged (`XACK`) only after its task was handed to the broker; if enqueueing
  fails the entry stays pending and is retried by the claim below;
- on start and then periodically, a relay claims (`XAUTOCLAIM`) entries that have been pending
  longer than `claim_idle_ms` in any consumer, i.e. those of a relay that died between reading
  and acknowledging; a duplicate enqueue is harmless because intake is idempotent on signal_id.

A relay runs for days: each read blocks well under the Redis client's socket timeout (a 5 s block
on redis-py's default 5 s timeout once ended the relay after five idle seconds), and a Redis that
goes away (a restart, a failover, a network blip) is waited out with backoff, the consumer group
made again if the restarted Redis lost it.

Entry shapes (both accepted):
- `payload`: a single field holding the intent as JSON text (`XADD ... * payload '{...}'`);
- flat: the intent's fields themselves, as strings (`XADD ... * signal_id s1 strategy ...`).
  Empty values count as absent; `risk_tags` is a JSON array or a comma-separated list. Numbers
  stay text, which the intent model reads exactly.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import redis

from epm.backoff import Backoff
from epm.logging import get_logger
from epm.redis_conn import BLOCK_MS, blocking_ms
from epm.streams import INTENT_STREAM, RELAY_GROUP

log = get_logger(__name__)

Submit = Callable[[object, str], None]


def payload_from_fields(fields: Mapping[str, str]) -> object:
    """The intake payload carried by one stream entry (see the module docstring for shapes)."""
    if set(fields) == {"payload"}:
        return fields["payload"]
    payload: dict[str, Any] = {}
    for key, value in fields.items():
        if value == "":
            continue
        if key == "risk_tags":
            payload[key] = _risk_tags(value)
        else:
            payload[key] = value
    return payload


def _risk_tags(value: str) -> object:
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            return value  # intake refuses it with INVALID_TYPE
    return [tag.strip() for tag in value.split(",") if tag.strip()]


def celery_submit(payload: object, entry_id: str) -> None:
    """Hand one payload to the intake queue; raises when the broker did not take it."""
    from tasks.intake import submit_intent

    # The task id names the entry, so a task can be traced back to what the producer sent.
    submit_intent.apply_async(args=[payload], task_id=f"relay:{INTENT_STREAM}:{entry_id}")


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Relay:
    """One consumer of the relay group; `run()` forwards until stopped or a bound is reached."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        submit: Submit = celery_submit,
        consumer: str | None = None,
        stream: str = INTENT_STREAM,
        group: str = RELAY_GROUP,
        batch: int = 100,
        claim_idle_ms: int = 60_000,
        claim_interval_s: float = 30.0,
    ) -> None:
        self.client = client
        self.submit = submit
        self.consumer = consumer or default_consumer_name()
        self.stream = stream
        self.group = group
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self.claim_interval_s = claim_interval_s
        self._stop = threading.Event()
        self.forwarded = 0

    def stop(self) -> None:
        """Ask `run()` to return after the current read (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing; from the stream's start."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def _forward(self, entry_id: str, fields: Mapping[str, str] | None) -> bool:
        if fields is None:
            # Redis 6.2 returns a claimed entry whose data was trimmed away as nil: nothing to send.
            self.client.xack(self.stream, self.group, entry_id)
            return False
        try:
            self.submit(payload_from_fields(fields), entry_id)
        except Exception as e:
            # Left pending on purpose: the periodic claim retries it once it has been idle.
            log.warning("relay.enqueue_failed", entry_id=entry_id, error=repr(e))
            return False
        self.client.xack(self.stream, self.group, entry_id)
        self.forwarded += 1
        log.info("relay.forwarded", entry_id=entry_id, signal_id=fields.get("signal_id", ""))
        return True

    def claim_stale(self, *, limit: int | None = None) -> int:
        """Take over and forward entries idle longer than `claim_idle_ms`; returns how many."""
        forwarded = 0
        start = "0-0"
        while not self.stopping and (limit is None or forwarded < limit):
            reply: Any = self.client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=start,
                count=self.batch,
            )
            start, entries = str(reply[0]), reply[1]
            for entry_id, fields in entries:
                if limit is not None and forwarded >= limit:
                    break
                forwarded += self._forward(str(entry_id), fields)
            if start == "0-0":
                break
        if forwarded:
            log.info("relay.claimed", consumer=self.consumer, count=forwarded)
        self._forget_idle_consumers()
        return forwarded

    def _forget_idle_consumers(self) -> None:
        # Every relay process is a new consumer name (host-pid); without this the group would
        # list every relay that ever ran. Only consumers with nothing pending are removed, and a
        # live one that was merely idle is re-created by its next read.
        consumers: Any = self.client.xinfo_consumers(self.stream, self.group)
        for consumer in consumers:
            if (
                consumer["name"] != self.consumer
                and int(consumer["pending"]) == 0
                and int(consumer["idle"]) > self.claim_idle_ms
            ):
                self.client.xgroup_delconsumer(self.stream, self.group, consumer["name"])

    def run(
        self,
        *,
        max_entries: int | None = None,
        block_ms: int = BLOCK_MS,
        stop_when_idle: bool = False,
    ) -> int:
        """Forward entries until `stop()`, or until `max_entries` were forwarded; returns count.

        `block_ms` bounds each wait for new entries (and so how quickly a stop is noticed); it is
        kept under half the client's socket timeout. `stop_when_idle` also returns after the
        first wait that brought nothing (drain and exit). Redis being away is waited out.
        """
        block_ms = blocking_ms(self.client, block_ms)
        self.forwarded = 0
        backoff = Backoff(0.1, 5.0)
        while not self.stopping and not self._done(max_entries):
            try:
                self._serve(max_entries, block_ms, stop_when_idle)
                break
            except (redis.ConnectionError, redis.TimeoutError) as e:
                delay = backoff.next_delay()
                log.warning("relay.redis_unavailable", error=repr(e), retry_in_s=round(delay, 3))
                self._stop.wait(delay)
            except redis.ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                # A restarted Redis without persistence lost the stream and its group.
                log.warning("relay.group_recreated", stream=self.stream, group=self.group)
        return self.forwarded

    def _done(self, max_entries: int | None) -> bool:
        return max_entries is not None and self.forwarded >= max_entries

    def _remaining(self, max_entries: int | None) -> int | None:
        return None if max_entries is None else max_entries - self.forwarded

    def _serve(self, max_entries: int | None, block_ms: int, stop_when_idle: bool) -> None:
        """Claim, then read and forward until stopped or done; raises when Redis goes away."""
        self.ensure_group()
        self.claim_stale(limit=self._remaining(max_entries))
        last_claim = time.monotonic()
        while not self.stopping and not self._done(max_entries):
            remaining = self._remaining(max_entries)
            if time.monotonic() - last_claim >= self.claim_interval_s:
                self.claim_stale(limit=remaining)
                last_claim = time.monotonic()
                continue
            count = self.batch if remaining is None else min(self.batch, remaining)
            reply = cast(
                list[tuple[str, list[tuple[str, dict[str, str]]]]] | None,
                self.client.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
                ),
            )
            if not reply and stop_when_idle:
                return
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._forward(str(entry_id), fields)
