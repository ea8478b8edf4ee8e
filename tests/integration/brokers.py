"""The two Celery brokers epm runs on, for tests parametrised over both: the machine's Redis (this
run's leased db number) and the machine's RabbitMQ (a vhost of this run's own, created with
`rabbitmqctl` and deleted afterwards, so concurrent runs never share a queue).

Each broker answers the questions a queue test asks (messages waiting, messages taken but not
acknowledged) in its own terms: kombu's Redis keys, or AMQP's passive queue declare plus
`rabbitmqctl list_queues` for the unacknowledged count, which AMQP itself does not report.
RabbitMQ unreachable, or `rabbitmqctl` unusable, skips with the reason (fails under
EPM_REQUIRE_SERVICES=1), like PostgreSQL and Redis in `tests/services.py`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
import redis
from amqp.exceptions import NotFound
from kombu import Connection

from tests.services import unavailable

AMQP_HOST = os.environ.get("EPM_TEST_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("EPM_TEST_AMQP_PORT", "5672"))
AMQP_USER = os.environ.get("EPM_TEST_AMQP_USER", "guest")
AMQP_PASSWORD = os.environ.get("EPM_TEST_AMQP_PASSWORD", "guest")
EPM_QUEUES = ("intake", "orders", "ledger", "pnl", "recon")


def _rabbitmqctl(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout_s, check=True
    )


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """An AMQP URL on a fresh vhost of the machine's RabbitMQ; the vhost (and every queue and
    message in it) is deleted afterwards."""
    base = f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@{AMQP_HOST}:{AMQP_PORT}"
    try:
        with Connection(f"{base}//", connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as e:  # any failure to connect means: not available here
        unavailable(f"RabbitMQ at {AMQP_HOST}:{AMQP_PORT}", e)
        raise
    if shutil.which("rabbitmqctl") is None:
        unavailable("rabbitmqctl (to create this run's vhost)", FileNotFoundError("not on PATH"))
    vhost = f"epm_t_{uuid.uuid4().hex[:12]}"
    try:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, AMQP_USER, ".*", ".*", ".*")
    except (subprocess.SubprocessError, OSError) as e:
        detail = getattr(e, "stderr", "") or ""
        unavailable(f"rabbitmqctl add_vhost ({detail.strip()[:200]})", e)
        raise
    try:
        yield f"{base}/{quote(vhost, safe='')}"
    finally:
        # The server gone away has nothing of this run left to clean.
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _rabbitmqctl("delete_vhost", vhost)


@dataclass
class Broker:
    """One broker under test: its URL and how to read its queues."""

    name: str
    url: str
    redis_url: str
    _vhost: str | None = field(default=None, repr=False)

    @property
    def gives_back_on_disconnect(self) -> bool:
        """RabbitMQ requeues a dead consumer's unacknowledged messages at once; Redis (kombu)
        leaves them in its `unacked` hash until the visibility timeout has passed."""
        return self.name == "rabbitmq"

    def env(self) -> dict[str, str]:
        """The EPM_* settings of a process on this broker (Redis stays the store either way)."""
        out = {"EPM_REDIS_URL": self.redis_url}
        if self.name == "rabbitmq":
            out["EPM_BROKER_URL"] = self.url
        return out

    def ready(self, queue: str) -> int:
        """Messages waiting in `queue` (not taken by any worker)."""
        if self.name == "redis":
            client = redis.Redis.from_url(self.url)
            try:
                return int(client.llen(queue))
            finally:
                client.close()
        with Connection(self.url, connect_timeout=5) as conn:
            channel = conn.default_channel
            try:
                _, count, _ = channel.queue_declare(queue=queue, passive=True)
            except NotFound:  # never declared: nothing ever waited there
                return 0
            return int(count)

    def unacked(self, queue: str) -> int:
        """Messages a worker took from `queue` and has not acknowledged.

        On Redis kombu keeps one `unacked` hash for every queue of the db (this run's own), so
        the count is of all queues.
        """
        if self.name == "redis":
            client = redis.Redis.from_url(self.url)
            try:
                return int(client.hlen("unacked"))
            finally:
                client.close()
        assert self._vhost is not None
        listed = _rabbitmqctl(
            "list_queues", "-p", self._vhost, "-q", "--no-table-headers",
            "name", "messages_unacknowledged",
        ).stdout  # fmt: skip
        for line in listed.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return int(parts[1])
        return 0

    def idle(self, queue: str) -> bool:
        """Nothing waiting in `queue` and nothing taken but unacknowledged."""
        return self.ready(queue) == 0 and self.unacked(queue) == 0

    def purge(self) -> None:
        """Drop every message left in epm's queues (a test's leftovers must not reach the next
        test's workers on the same db or vhost)."""
        if self.name == "redis":
            client = redis.Redis.from_url(self.url)
            try:
                client.delete(*EPM_QUEUES, "unacked", "unacked_index")
            finally:
                client.close()
            return
        with Connection(self.url, connect_timeout=5) as conn:
            for queue in EPM_QUEUES:
                # A queue never declared makes the broker close the channel: one per queue.
                channel = conn.channel()
                try:
                    channel.queue_purge(queue)
                except NotFound:  # never declared: nothing to drop
                    pass
                finally:
                    with contextlib.suppress(Exception):
                        channel.close()


def make_broker(name: str, redis_url: str, amqp_url: str | None) -> Broker:
    if name == "redis":
        return Broker("redis", redis_url, redis_url)
    assert amqp_url is not None
    vhost = amqp_url.rsplit("/", 1)[1]
    return Broker("rabbitmq", amqp_url, redis_url, _vhost=vhost)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """This run's own vhost on the machine's RabbitMQ."""
    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Broker]:
    """Each test of a module that asks for it runs once per broker, the same body."""
    amqp = request.getfixturevalue("amqp_url") if request.param == "rabbitmq" else None
    chosen = make_broker(str(request.param), redis_url, amqp)
    chosen.purge()
    yield chosen
    chosen.purge()
