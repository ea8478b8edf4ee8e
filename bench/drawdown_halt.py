"""Drawdown breach → strategy halted (issue 13 acceptance, items 4 and 5).

Each run, on a fresh PostgreSQL ledger and Redis db: a book of `--positions` open positions
over the four strategies (fills recorded through the ledger's own use case), Momentum_EQ long
100 AAPL with one working entry order at the venue (its child placed, not filled), then a
closing SELL 100 fill at a loss beyond its `max_intraday_drawdown`. The clock runs from just
after that fill's ledger transaction returns to `post_trade.monitor` returning with the strategy
HALTED, its working entry marked CANCEL_REQUESTED and the cancel queued for the bridge ("pass");
beat runs the pass every `EPM_RISK_TICK_S` (1 s), so the detection latency is at most that tick
plus the pass. A second pass on the same book (nothing to change) is the steady cost of a tick.

No simulator: the cancel is queued on the bridge's command stream, which is where the orders
path's own cancels go. Run: `.venv/bin/python bench/drawdown_halt.py [--runs N] [--positions N]`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import redis
from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results import record  # noqa: E402
from epm.limits import load_limits  # noqa: E402
from models.limits import Limits, parse_limits  # noqa: E402
from models.strategy_state import TradingState  # noqa: E402
from services.ledger.callbacks import process_callback  # noqa: E402
from services.orders.plan_intent import plan_admitted  # noqa: E402
from services.orders.send_due import send_due  # noqa: E402
from services.risk.post_trade import monitor  # noqa: E402
from store.db import make_engine, write_transaction  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.schema import execution_orders  # noqa: E402
from tasks.orders import BridgeVenue  # noqa: E402
from tests.integration.conftest import wipe  # noqa: E402
from tests.integration.test_orders_path import (  # noqa: E402
    AAPL,
    T0,
    admit,
    children,
    describe_aapl,
    execute,
    fill,
    quote,
)
from tests.services import postgres_database, redis_database  # noqa: E402

OTHERS = ("0DTE_Scalp", "Spread_Roll", "Gamma_Rebalance")


def limits() -> Limits:
    doc = load_limits().model_dump(mode="json", exclude_none=True)
    doc["strategies"] = {"Momentum_EQ": {"max_intraday_drawdown": "1000"}}
    return parse_limits(doc)


def background(engine: Engine, n: int) -> None:
    """`n` open positions in the other strategies, each from one fill through the ledger."""
    with write_transaction(engine) as conn:
        conn.execute(
            execution_orders.insert(),
            [
                {
                    "client_order_id": f"bg-{i}",
                    "client_id": 1,
                    "ib_order_id": 50_000 + i,
                    "strategy": OTHERS[i % len(OTHERS)],
                    "con_id": 10_000 + i,
                    "symbol": f"BG{i}",
                    "sec_type": "STK",
                    "action": "BUY",
                    "quantity": 100,
                    "state": "PLACED",
                    "filled_qty": 0,
                    "created_at": T0,
                    "updated_at": T0,
                    "version": 1,
                }
                for i in range(n)
            ],
        )
    for i in range(n):
        process_callback(
            "execution",
            {
                "exec_id": f"{i:08x}.bg.01",
                "ib_order_id": 50_000 + i,
                "client_id": 1,
                "perm_id": 80_000 + i,
                "order_ref": f"bg-{i}",
                "con_id": 10_000 + i,
                "symbol": f"BG{i}",
                "sec_type": "STK",
                "side": "BOT",
                "shares": "100",
                "price": "50.00",
                "currency": "USD",
                "account": "DU1",
                "time": T0.isoformat(),
                "received_at": T0.isoformat(),
            },
            engine=engine,
            redis_client=None,
            now=T0,
        )


def one_run(url: str, r: redis.Redis, n: int) -> tuple[float, float]:
    engine = make_engine(url)
    wipe(engine)
    r.flushdb()
    r.set("ib:order:last_id", 100)
    venue = BridgeVenue(engine, r, client_id=1)
    background(engine, n)
    describe_aapl(engine)
    quote(r, T0)
    bought = admit(engine, r, signal_id="b-long", quantity="100")
    plan_admitted(engine, venue, bought, client_id=1, now=T0)
    send_due(engine, venue, T0, intent_id=bought)
    fill(engine, children(engine, bought)[0], "100", "200.00", "0001.01.01")
    working = admit(engine, r, signal_id="b-working", quantity="50", urgency="Normal")
    plan_admitted(engine, venue, working, client_id=1, now=T0)
    send_due(engine, venue, T0, intent_id=working)
    closing = admit(engine, r, signal_id="b-close", side="SELL", quantity="100")
    plan_admitted(engine, venue, closing, client_id=1, now=T0)
    send_due(engine, venue, T0, intent_id=closing)
    sell = children(engine, closing)[0]
    rules = limits()
    now = T0 + timedelta(seconds=1)
    execute(
        engine, sell, exec_id="0002.01.01", perm_id=7000 + sell.ib_order_id, con_id=AAPL,
        symbol="AAPL", sec_type="STK", side="SLD", shares="100", price="150.00",
    )  # fmt: skip
    start = time.perf_counter()
    (halted,) = monitor(engine, venue, rules, now)
    took = time.perf_counter() - start
    if halted.record.state is not TradingState.HALTED or not halted.cancels_sent:
        raise SystemExit(f"not halted as expected: {halted}")
    start = time.perf_counter()
    if monitor(engine, venue, rules, now) != []:
        raise SystemExit("a second pass changed something")
    steady = time.perf_counter() - start
    engine.dispose()
    return took, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--positions", type=int, default=200)
    args = parser.parse_args()
    with postgres_database() as url, redis_database() as redis_url:
        upgrade(url)
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        samples = [one_run(url, r, args.positions) for _ in range(args.runs)]
    passes = sorted(s[0] * 1000 for s in samples)
    steady = sorted(s[1] * 1000 for s in samples)
    p50, p50_steady = statistics.median(passes), statistics.median(steady)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(
        f"{args.runs} runs, {args.positions + 1} positions: breach → HALTED + cancel queued "
        f"p50 {p50:.1f} ms, max {passes[-1]:.1f} ms; steady pass p50 {p50_steady:.1f} ms, "
        f"max {steady[-1]:.1f} ms"
    )
    record("drawdown_halt", "fill committed → HALTED, entry cancel queued (one pass), p50",
           p50, "ms", n=args.runs)  # fmt: skip
    record("drawdown_halt", "steady monitor pass, p50", p50_steady, "ms", n=args.runs)


if __name__ == "__main__":
    main()
