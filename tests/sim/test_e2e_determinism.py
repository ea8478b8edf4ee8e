"""Same scenario + seed + order flow at the same simulated times → the same fills, through the
whole stack (sockets, server, driver, venue): two runs write identical exec logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from ibapi.contract import Contract
from ibapi.order import Order

from tws_sim.server import SimServerThread
from tws_sim.server.testing import RecordingClient

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def run(exec_log: Path, seed: int) -> list[dict[str, object]]:
    # A pinned incarnation: the same exec and perm ids in both runs (by default each instance
    # gets its own, so a restarted simulator never reissues an id a ledger already holds).
    with SimServerThread(
        stepped=True, seed=seed, start=START, exec_log=exec_log, incarnation=7
    ) as sim:
        app = RecordingClient()
        try:
            oid = app.start(sim.port, 1)
            sim.advance(3)
            for k, (symbol, action, offset) in enumerate(
                [("SPY", "BUY", "0.00"), ("AAPL", "SELL", "0.00"), ("QQQ", "BUY", "-0.02")]
            ):
                app.reqMktData(k + 1, stock(symbol), "", True, False, [])
                app.wait_for(lambda k=k: [a for a in app.of("tickSnapshotEnd") if a[0] == k + 1])
                side = 2 if action == "BUY" else 1
                touch = [a[2] for a in app.of("tickPrice") if a[0] == k + 1 and a[1] == side][-1]
                o = Order()
                o.action, o.orderType, o.totalQuantity, o.tif = action, "LMT", Decimal(1500), "DAY"
                o.lmtPrice = float(Decimal(str(touch)) + Decimal(offset))
                app.placeOrder(oid + k, stock(symbol), o)
                app.wait_for(lambda k=k: [s for s in app.of("orderStatus") if s[0] == oid + k])
                sim.advance(2)
            for _ in range(120):
                sim.advance(1)
        finally:
            app.stop()
    return [json.loads(x) for x in exec_log.read_text().splitlines() if x.strip()]


def test_same_seed_and_flow_give_identical_exec_logs(tmp_path: Path) -> None:
    first = run(tmp_path / "a.jsonl", seed=21)
    second = run(tmp_path / "b.jsonl", seed=21)
    assert len(first) >= 3
    assert first == second
    other = run(tmp_path / "c.jsonl", seed=22)
    assert [(r.get("price"), r.get("shares")) for r in other] != [
        (r.get("price"), r.get("shares")) for r in first
    ]
