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


CALENDAR = """
name: calendar
always_open: false
instruments: [{symbol: SPY, price: "600.00"}]
"""


def run_through_a_close(exec_log: Path, seed: int) -> list[dict[str, object]]:
    """A combo filled as the legs allow, 0DTE positions settled at the close, a night and a
    holiday crossed, Friday's session traded: the same again must give the same log line for
    line (executions, commissions, exercises, assignments, expiries)."""
    from ibapi.contract import ComboLeg

    from tws_sim.market.scenario import Scenario

    start = datetime(2026, 11, 25, 20, 57, tzinfo=UTC)  # Wednesday 15:57 ET
    with SimServerThread(
        stepped=True,
        seed=seed,
        start=start,
        scenario=Scenario.from_text(CALENDAR),
        exec_log=exec_log,
        incarnation=7,
    ) as sim:
        app = RecordingClient()
        try:
            oid = app.start(sim.port, 1)
            app.reqMktData(1, stock("SPY"), "", True, False, [])
            app.wait_for(lambda: [a for a in app.of("tickSnapshotEnd") if a[0] == 1])
            ticks = {a[1]: a[2] for a in app.of("tickPrice") if a[0] == 1}
            spot = round((ticks[1] + ticks[2]) / 2)  # the mid of bid and ask
            legs = []
            for k, (strike, right) in enumerate(((spot - 3, "C"), (spot + 3, "P"), (spot, "C"))):
                c = Contract()
                c.symbol, c.secType, c.exchange, c.currency = "SPY", "OPT", "SMART", "USD"
                c.lastTradeDateOrContractMonth, c.strike, c.right = "20261125", strike, right
                app.reqContractDetails(10 + k, c)
                app.wait_for(
                    lambda k=k: [a for a in app.of("contractDetailsEnd") if a[0] == 10 + k]
                )
                legs.append(
                    next(a[1].contract for a in app.of("contractDetails") if a[0] == 10 + k)
                )
            bag = Contract()
            bag.symbol, bag.secType, bag.exchange, bag.currency = "SPY", "BAG", "SMART", "USD"
            bag.comboLegs = []
            for contract, action in zip(legs, ("BUY", "SELL", "BUY"), strict=True):
                leg = ComboLeg()
                leg.conId, leg.ratio, leg.action, leg.exchange = contract.conId, 1, action, "SMART"
                bag.comboLegs.append(leg)
            o = Order()
            o.action, o.orderType, o.totalQuantity, o.tif = "BUY", "MKT", Decimal(40), "DAY"
            app.placeOrder(oid, bag, o)
            app.wait_for(lambda: [s for s in app.of("orderStatus") if s[0] == oid])
            sim.advance(42 * 3600)  # through the close, Thanksgiving, into Friday's session
        finally:
            app.stop()
    return [json.loads(x) for x in exec_log.read_text().splitlines() if x.strip()]


def test_a_day_through_its_close_and_a_holiday_replays_identically(tmp_path: Path) -> None:
    first = run_through_a_close(tmp_path / "a.jsonl", seed=21)
    second = run_through_a_close(tmp_path / "b.jsonl", seed=21)
    assert first == second
    kinds = {r["type"] for r in first}
    assert {"execution", "commission"} <= kinds and kinds & {"exercise", "assignment"}
    bags = [r for r in first if r["type"] == "execution" and r["secType"] == "BAG"]
    assert len(bags) >= 2  # 40 units do not fit the legs' displayed size at once
