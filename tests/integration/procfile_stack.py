"""The Procfile's processes started with honcho against this run's stores, and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.integration.intake_procs import REPO, process_env, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Stack:
    honcho: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def assert_running(self) -> None:
        assert self.honcho.poll() is None, self.log_tail()


@contextmanager
def procfile_stack(
    database_url: str,
    redis_url: str,
    workdir: Path,
    *,
    lines: Sequence[str] = (),
    **extra_env: str,
) -> Iterator[Stack]:
    """Every Procfile line (or only `lines`), up with the bridge READY; all stopped on exit.

    honcho stops every line when one exits, so honcho running means all of them are.
    """
    venv_bin = Path(sys.executable).parent
    env = process_env(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL=database_url,
        EPM_DATA_DIR=str(workdir / "epm-data"),
        EPM_IB_PORT=str(free_port()),
        EPM_FLOWER_PORT=str(free_port()),
        EPM_METRICS_PORT=str(free_port()),
        EPM_FLOWER_BASIC_AUTH="ops:procfile-stack",  # epm flower refuses to run open
        EPM_BRIDGE_LEASE_TTL_MS="2000",
        **extra_env,
    )
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    log_path = workdir / "honcho.log"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    with log_path.open("ab") as log:
        honcho = subprocess.Popen(
            [str(venv_bin / "honcho"), "-f", str(REPO / "Procfile"), "start", *lines],
            cwd=workdir,  # beat's schedule file and flower's state land here
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = Stack(honcho=honcho, log_path=log_path, env=env)
    try:
        wait_for(
            # Both connections: intake's headroom gate needs the risk connection's account summary.
            lambda: (
                honcho.poll() is not None
                or r.hmget("ib:bridge:state", ["client1", "client2"]) == ["READY", "READY"]
            ),
            timeout_s=90,
            what="the bridge's clients 1 and 2 READY against the Procfile's simulator",
        )
        stack.assert_running()
        yield stack
    finally:
        if honcho.poll() is None:
            honcho.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                honcho.wait(timeout=30)
        if group_alive(honcho.pid):
            os.killpg(honcho.pid, signal.SIGKILL)
        wait_for(lambda: not group_alive(honcho.pid), timeout_s=30, what="no Procfile process left")
        r.close()
