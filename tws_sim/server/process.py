"""Running the simulator as a process: `serve_forever` (what `epm sim` calls) and `SimProcess`
(start `python -m tws_sim --port 0 ...` from a test or a drill, read the port it printed, stop it
by PID).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tws_sim.server.app import SimServer

LISTENING = "tws_sim listening on "


def serve_forever(**kwargs: Any) -> None:
    """Run a real-time `SimServer` until SIGINT/SIGTERM; print the bound address first."""

    async def main() -> None:
        server = SimServer(**kwargs)
        port = await server.start()
        print(f"{LISTENING}{server.host}:{port}", flush=True)
        print(
            f"scenario={server.scenario.name} seed={server.seed} "
            f"start={server.start_at.isoformat()} speed={server.speed} account={server.account}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(main())


class SimProcess:
    """`python -m tws_sim` in a child process on an OS-chosen port.

    `with SimProcess("--seed", "7", exec_log=path) as sim: sim.port` — stopped by its PID (SIGTERM,
    then SIGKILL after a grace period) on exit.
    """

    def __init__(
        self,
        *args: str,
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = ["--port", "0", *args]
        self.log_path = log_path  # the child's stderr (logs), so a full pipe never blocks it
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.banner: list[str] = []

    def start(self, timeout: float = 60.0) -> int:
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tws_sim", *self.args],
                cwd=self.cwd,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                err = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"tws_sim exited before listening: {err}")
            self.banner.append(line.rstrip("\n"))
            if line.startswith(LISTENING):
                self.port = int(line.rsplit(":", 1)[1])
                return self.port
        self.stop()
        raise TimeoutError("tws_sim did not print its port in time")

    def stop(self, grace: float = 10.0) -> int | None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(grace)
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        return proc.returncode

    def __enter__(self) -> SimProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
