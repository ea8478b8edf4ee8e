"""The `epm metrics` exposition: the workers' histograms (multi-process files) and the
scrape-time gauges in one registry, served over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.engine import Engine

from epm.metrics.collector import OpsCollector


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_registry(
    engine: Engine,
    client: redis.Redis,
    broker_url: str,
    queues: Iterable[str],
    multiproc_dir: Path,
    clock: Callable[[], datetime] = _utc_now,
) -> CollectorRegistry:
    multiproc_dir.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
    registry.register(OpsCollector(engine, client, broker_url, queues, clock))
    return registry


def serve(registry: CollectorRegistry, port: int, addr: str) -> tuple[Any, threading.Thread]:
    """Start serving `/metrics` (and `/`) on addr:port in a thread; the server and its thread."""
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return server, thread
