"""Broker publish cost (issue 14 item 9 bench): one Celery `send_task` of a small ledger-sized
task, on Redis, on RabbitMQ without publisher confirms, and on RabbitMQ with them (epm's setting).

Each publish goes through one open producer connection, the way the bridge's outbox and the
relay publish; the clock runs around `send_task` only, per message, after a warm-up. Nothing
consumes: the queue is purged afterwards. Needs the machine's Redis (a leased db number) and
RabbitMQ (a vhost of its own, created with `rabbitmqctl` and deleted after), like the tests.
Run: `.venv/bin/python bench/broker_publish.py [--messages N]`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from celery import Celery  # noqa: E402
from kombu import Connection  # noqa: E402

from bench.results import record  # noqa: E402
from tests.integration.brokers import rabbitmq_vhost  # noqa: E402
from tests.services import redis_database  # noqa: E402

QUEUE = "bench-publish"
PAYLOAD = {"exec_id": "0000e.0001.01.01", "order_id": 11, "shares": "10", "price": "190.01"}


def publish_us(url: str, options: dict[str, object], messages: int) -> list[float]:
    """Microseconds per `send_task`, one sample per message."""
    app = Celery("bench-publish", broker=url)
    app.conf.broker_transport_options = options
    app.conf.task_routes = {"bench.*": {"queue": QUEUE}}
    app.conf.task_serializer = "json"
    samples: list[float] = []
    with app.connection_for_write() as conn:
        producer = app.amqp.Producer(conn)
        for _ in range(50):
            app.send_task("bench.record", args=[PAYLOAD], producer=producer)
        for _ in range(messages):
            started = time.perf_counter()
            app.send_task("bench.record", args=[PAYLOAD], producer=producer)
            samples.append((time.perf_counter() - started) * 1e6)
    with Connection(url) as conn:
        conn.default_channel.queue_purge(QUEUE)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    with redis_database() as redis_url, rabbitmq_vhost() as amqp_url:
        cases = [
            ("redis", redis_url, {}),
            ("rabbitmq_unconfirmed", amqp_url, {}),
            ("rabbitmq_confirmed", amqp_url, {"confirm_publish": True}),
        ]
        results = {name: publish_us(url, opts, args.messages) for name, url, opts in cases}
    redis_p50 = statistics.median(results["redis"])
    print("| broker | publishes | p50 | p99 |")
    print("|---|---|---|---|")
    for name, samples in results.items():
        ordered = sorted(samples)
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"| {name} | {len(samples)} | {p50:.0f} µs | {p99:.0f} µs |")
        record(
            "broker_publish",
            f"{name} send_task p50",
            round(p50, 1),
            "us",
            n=len(samples),
            reference=None if name == "redis" else round(redis_p50, 1),
            reference_label=None if name == "redis" else "redis send_task p50",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
