"""The demo's processes: each a child in its own session, logging to its own file, stopped by PID.

A child that dies while the demo runs is an error (the demo cannot vouch for a session with a
missing part), so `check()` raises and the caller stops the rest. Stopping is SIGTERM to the
child, then SIGKILL to the process group it leads after a grace: the group holds only the
child and what it forked (prefork pool processes), never the demo itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class ChildDied(RuntimeError):
    """A supervised process exited while the demo still needed it."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return int(self.proc.pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a reused id owned by someone else is not ours
        return False
    return True


@dataclass
class Supervisor:
    """Starts children under `log_dir`; `stop_all()` leaves none of them (or their forks) behind."""

    log_dir: Path
    env: dict[str, str]
    cwd: Path
    grace_s: float = 15.0
    # Rewritten on every start: who to look for should the demo itself be killed.
    pid_file: Path | None = None
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        env = {**self.env, **(extra_env or {})}
        proc = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name, proc, log_path, log)
        self.children.append(child)
        if self.pid_file is not None:
            self.pid_file.write_text(json.dumps(self.pids()))
        return child

    def check(self) -> None:
        """Raise `ChildDied` naming the first child that has exited, with its log's tail."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                tail = child.log_path.read_text(errors="replace")[-1500:]
                raise ChildDied(f"{child.name} (pid {child.pid}) exited with {code}:\n{tail}")

    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children}

    def stop_all(self) -> list[str]:
        """Stop every child, newest first (the sim last, so the bridge leaves it cleanly);
        → what had to be killed."""
        killed: list[str] = []
        running = [c for c in reversed(self.children) if c.proc.poll() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for child in running:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(child.name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.proc.wait(timeout=10)
        # Forks the child left behind in its group (a prefork pool process whose parent died).
        for child in self.children:
            if _group_alive(child.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                killed.append(f"{child.name} group")
            child.log.close()
        return killed
