"""Kill switch (issue 13 item 6 bench): `epm kill-switch` process start → every order cancelled.

Each run: a real bridge process (`python -m ibgateway_bridge`) places 20 resting limit orders on
the simulator (running in this process, on its own thread); the bridge is then frozen (SIGSTOP) or
killed (SIGKILL); `epm kill-switch` is started as a subprocess (`python -m epm`, the way an
operator runs it) and the clock runs from just before `Popen` until the simulator's venue, polled
every 2 ms from this process, holds no working order (so the figure is high by up to ~2 ms). The
process's own exit (after the purge and the audit writes to Redis and the SQLite ledger) is timed
too. Between runs the halt is lifted and a fresh bridge started.

Needs the machine's Redis (a leased db number, the way the tests do). Run:
`.venv/bin/python bench/kill_switch.py [--runs N] [--orders N]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results import record  # noqa: E402
from ibgateway_bridge import commands as cmds  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from tests.bridge.harness import (  # noqa: E402
    BridgeProcess,
    enqueue_new,
    poll,
    sim_orders,
    sim_thread,
    wait_ready,
)
from tests.services import redis_database  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def one_run(
    r: redis.Redis, redis_url: str, sim: object, tmp: Path, orders: int, state: str, n: int
) -> tuple[float, float]:
    """(seconds to every order cancelled, seconds to the kill-switch process exit)."""
    r.flushdb()  # the halt, the last bridge's lease and READY state: each run starts clean
    bridge = BridgeProcess(redis_url, sim.port, tmp / f"bridge-{state}-{n}.log").start()  # type: ignore[attr-defined]
    try:
        wait_ready(r)
        spec = cmds.OrderSpec(action="BUY", quantity=Decimal(1), lmt_price=Decimal("1.00"))
        working = enqueue_new(r, orders, spec)
        poll(
            lambda: all(sim_orders(sim).get(o) is not None for o in working),  # type: ignore[arg-type]
            30,
            what="working orders",
        )
        if state == "frozen":
            bridge.signal(signal.SIGSTOP)
        else:
            bridge.signal(signal.SIGKILL)
            bridge.wait(10)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
        env.update(
            EPM_REDIS_URL=redis_url,
            EPM_IB_PORT=str(sim.port),  # type: ignore[attr-defined]
            EPM_DATA_DIR=str(tmp / "epm-data"),
            PYTHONPATH=str(REPO),
        )
        venue = sim.call  # type: ignore[attr-defined]
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "epm", "kill-switch", "--reason", "bench"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        while venue(lambda s: s.venue.open_orders(None)):
            time.sleep(0.002)
        cancelled = time.monotonic() - started
        out, err = proc.communicate(timeout=30)
        exited = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"kill switch failed: {out!r} {err!r}")
        return cancelled, exited
    finally:
        bridge.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--orders", type=int, default=20)
    args = parser.parse_args()
    print(f"# kill switch bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    py = platform.python_version()
    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} CPU, Python {py}")
    with tempfile.TemporaryDirectory() as d, redis_database() as redis_url, sim_thread() as sim:
        tmp = Path(d)
        (tmp / "epm-data").mkdir()
        upgrade(f"sqlite:///{tmp / 'epm-data' / 'ledger.db'}")
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        print(
            "| bridge | runs | orders | to all cancelled p50 / max (ms) | to exit p50 / max (ms) |"
        )
        print("|---|---|---|---|---|")
        for state in ("frozen", "dead"):
            results = [
                one_run(r, redis_url, sim, tmp, args.orders, state, n) for n in range(args.runs)
            ]
            c = [x[0] * 1000 for x in results]
            e = [x[1] * 1000 for x in results]
            record("kill_switch", f"epm kill-switch start → {args.orders} orders cancelled at "
                   f"the venue, bridge {state}, p50", pct(c, 0.5), "ms", n=args.runs,
                   aim=1000.0)  # fmt: skip
            print(
                f"| {state} | {args.runs} | {args.orders} | {pct(c, 0.5):.0f} / {max(c):.0f} | "
                f"{pct(e, 0.5):.0f} / {max(e):.0f} |"
            )
        r.close()


if __name__ == "__main__":
    main()
