"""State snapshots across a restart, the exec log, and determinism of ids and fills."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from ibapi.contract import Contract
from ibapi.order import Order

from tests.sim.engine_kit import (
    AAPL,
    CALL_600,
    CALL_605,
    SPY,
    T0,
    BookMarket,
    later,
    make_venue,
    order,
    standard_market,
)
from tws_sim.engine import BAG_CON_ID, CorrectionRule, Venue, VenueRules
from tws_sim.engine.persistence import JOURNAL_FILE, STATE_FILE, StateError
from tws_sim.types import ComboLegSpec, Executed, OrderStatusName, SecType, VenueEvent

D = Decimal


def venue(m: BookMarket, state_dir: Path | None = None, log: Path | None = None) -> Venue:
    rules = VenueRules(corrections=(CorrectionRule(nth=3, price_delta=D("-0.01")),))
    return make_venue(SPY, AAPL, market=m, rules=rules, state_dir=state_dir, exec_log=log)[0]


def flow(v: Venue, m: BookMarket) -> list[VenueEvent]:
    """A day in miniature: fills, a resting order, a bracket, a trail, a cancel, a correction."""
    out: list[VenueEvent] = []
    contract = Contract()
    contract.symbol, contract.secType, contract.conId = "SPY", "STK", SPY.con_id
    ib_order = Order()
    ib_order.action, ib_order.totalQuantity, ib_order.lmtPrice = "BUY", 300, 499.5
    out += v.place(order(1, "BUY", "150", "MKT"), T0)
    out += v.place(
        order(2, "BUY", "300", "LMT", "499.50", raw_contract=contract, raw_order=ib_order), T0
    )
    out += v.place(order(3, "BUY", "100", "LMT", "498.00", transmit=False), T0)
    out += v.place(order(4, "SELL", "100", "LMT", "505.00", parent_id=3, transmit=False), T0)
    out += v.place(order(5, "SELL", "50", "TRAIL", aux="2.00"), later(1))
    out += v.place(order(6, "SELL", "10", "LMT", "510.00", client_id=2), later(1))
    out += v.cancel(2, 6, later(2))
    qc = m.set_book(SPY.con_id, later(3), [("499.40", "100")], [("499.50", "120")], last="499.45")
    out += v.on_market([qc], later(3))
    out += v.place(order(7, "SELL", "5", "MKT", con_id=AAPL.con_id), later(4))
    return out


def test_restart_restores_orders_executions_positions_and_counters(tmp_path: Path) -> None:
    m = standard_market()
    v1 = venue(m, tmp_path)
    flow(v1, m)
    before = (
        v1.open_orders(None),
        v1.completed_orders(),
        v1.executions(),
        v1.positions(),
        v1.account_values(later(5)),
        v1.pnl(later(5)),
        v1.next_order_id(1),
        v1.next_order_id(2),
    )
    assert (tmp_path / STATE_FILE).exists() and not (tmp_path / (STATE_FILE + ".tmp")).exists()
    v2 = venue(m, tmp_path)
    after = (
        v2.open_orders(None),
        v2.completed_orders(),
        v2.executions(),
        v2.positions(),
        v2.account_values(later(5)),
        v2.pnl(later(5)),
        v2.next_order_id(1),
        v2.next_order_id(2),
    )
    assert after == before
    # the order journal was compacted into a new generation (one line per order)
    orders_files = sorted(p.name for p in tmp_path.glob("orders.*.jsonl"))
    assert orders_files == ["orders.1.jsonl"]
    n_orders = len(before[0]) + len(before[1])
    assert len((tmp_path / "orders.1.jsonl").read_text().splitlines()) == n_orders
    # the wire objects the protocol echoes in openOrder come back too
    snap = v2.order(1, 2)
    assert snap is not None and isinstance(snap.request.raw_contract, Contract)
    assert isinstance(snap.request.raw_order, Order)
    assert snap.request.raw_order.lmtPrice == 499.5 and snap.request.raw_contract.conId == 756733
    # working orders keep working: the held bracket transmits, the resting limit fills
    last_perm = max(s.perm_id for s in v2.open_orders(None) + v2.completed_orders())
    ev = v2.place(order(8, "BUY", "1", "LMT", "1.00"), later(6))
    assert v2.order(1, 8).perm_id > last_perm  # type: ignore[union-attr]
    qc = m.set_book(SPY.con_id, later(7), [("497.90", "500")], [("498.00", "500")], last="498")
    ev = v2.on_market([qc], later(7))
    filled = {e.execution.order_id for e in ev if isinstance(e, Executed)}
    assert 2 in filled
    assert v2.order(1, 2).status == OrderStatusName.FILLED  # type: ignore[union-attr]
    old_ids = {e.exec_id for e, _ in before[2]}
    new_ids = {e.execution.exec_id for e in ev if isinstance(e, Executed)}
    assert not old_ids & new_ids
    ev = v2.place(order(4, "SELL", "100", "LMT", "505.00", parent_id=3, transmit=True), later(8))
    assert v2.order(1, 3).status == OrderStatusName.FILLED  # type: ignore[union-attr]
    assert v2.order(1, 4).status == OrderStatusName.SUBMITTED  # type: ignore[union-attr]


def test_corrupt_state_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(StateError):
        venue(standard_market(), tmp_path)
    (tmp_path / STATE_FILE).write_text(json.dumps({"version": 999}))
    with pytest.raises(StateError):
        venue(standard_market(), tmp_path)


def test_exec_log_has_one_flushed_line_per_execution_correction_and_commission(
    tmp_path: Path,
) -> None:
    m = standard_market()
    log = tmp_path / "log" / "exec.jsonl"
    v = venue(m, log=log)
    events = flow(v, m)
    n_exec = len([e for e in events if isinstance(e, Executed)])
    # read while the venue is still open: every line is already flushed
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [ln["type"] for ln in lines]
    assert kinds.count("correction") == 1
    assert kinds.count("execution") + kinds.count("correction") == n_exec
    assert kinds.count("commission") == n_exec
    keys = {
        "execId",
        "orderId",
        "permId",
        "clientId",
        "account",
        "conid",
        "symbol",
        "side",
        "shares",
        "price",
        "time",
        "commission",
    }
    for ln in lines:
        assert keys <= ln.keys()
        Decimal(ln["shares"])
        Decimal(ln["price"])
    first = lines[0]
    assert (first["type"], first["orderId"], first["conid"], first["side"]) == (
        "execution",
        1,
        SPY.con_id,
        "BOT",
    )
    assert first["commission"] is None and Decimal(lines[1]["commission"]) == D("0.35")
    assert first["time"] == T0.isoformat()
    corr = next(ln for ln in lines if ln["type"] == "correction")
    assert corr["execId"].endswith(".02") and corr["corrects"].endswith(".01")
    v.close()


def test_same_market_path_and_order_flow_give_the_same_executions_and_ids() -> None:
    runs = []
    for _ in range(2):
        m = standard_market()
        v = venue(m)
        flow(v, m)
        runs.append(
            (
                [(e.exec_id, e.perm_id, e.shares, e.price, e.time) for e, _ in v.executions()],
                [(s.perm_id, s.status) for s in v.completed_orders()],
            )
        )
    assert runs[0] == runs[1]
    exec_ids = [x[0] for x in runs[0][0]]
    assert len(set(exec_ids)) == len(exec_ids)
    prefix = {x.split(".")[0] for x in exec_ids}
    assert len(prefix) == 1 and all(len(x.split(".")[1]) == 8 for x in exec_ids)
    perms = [p for p, _ in runs[0][1]]
    assert perms == sorted(perms)


def test_journal_lines_past_the_snapshot_are_dropped_and_missing_ones_are_an_error(
    tmp_path: Path,
) -> None:
    m = standard_market()
    v1 = venue(m, tmp_path)
    v1.place(order(1, "BUY", "150", "MKT"), T0)
    v1.close()
    journal = tmp_path / JOURNAL_FILE
    lines = journal.read_text().splitlines()
    assert len(lines) == 2
    # a crash between the journal append and the snapshot leaves an unreported execution
    journal.write_text("\n".join([*lines, lines[-1].replace(".01.01", ".01.09")]) + "\n")
    v2 = venue(m, tmp_path)
    assert [e.exec_id for e, _ in v2.executions()] == [e.exec_id for e, _ in v1.executions()]
    assert len(journal.read_text().splitlines()) == 2
    v2.close()
    journal.write_text(lines[0] + "\n")
    with pytest.raises(StateError):
        venue(m, tmp_path)


def test_venue_instances_never_reissue_exec_or_perm_ids() -> None:
    """A simulator restarted without its state (a new incarnation) trades the same flow at the
    same simulated times, yet none of its ids is one the first instance issued: a ledger that
    outlives a simulator would otherwise drop the new fills as duplicates."""
    runs = []
    for incarnation in (1_796_299_000_000, 1_796_299_004_000):
        m = standard_market()
        v = make_venue(SPY, AAPL, market=m, incarnation=incarnation)[0]
        flow(v, m)
        runs.append(
            (
                {e.exec_id for e, _ in v.executions()},
                {s.perm_id for s in v.completed_orders() + v.open_orders(None)},
            )
        )
    (first_execs, first_perms), (second_execs, second_perms) = runs
    assert first_execs and first_perms
    assert not first_execs & second_execs
    assert max(first_perms) < min(second_perms)


def test_a_combo_filled_in_part_finishes_after_a_restart(tmp_path: Path) -> None:
    """A restart between two partial fills of a combo keeps its units, its legs' cumulative
    quantities and commissions, so the second fill continues them."""
    legs = (
        ComboLegSpec(CALL_600.con_id, 1, "BUY", "SMART"),
        ComboLegSpec(CALL_605.con_id, 1, "SELL", "SMART"),
    )
    bag = order(1, "BUY", "2", "LMT", "3.10", con_id=0, sec_type=SecType.BAG, combo_legs=legs)
    m = standard_market()
    m.set_book(CALL_605.con_id, T0, [("2.00", "1")], [("2.05", "50")])
    v1 = make_venue(SPY, AAPL, CALL_600, CALL_605, market=m, state_dir=tmp_path)[0]
    v1.place(bag, T0)
    v1.close()
    v2 = make_venue(SPY, AAPL, CALL_600, CALL_605, market=m, state_dir=tmp_path)[0]
    snap = v2.order(1, 1)
    assert snap is not None and (snap.filled, snap.remaining) == (D(1), D(1))
    qc = m.set_book(CALL_605.con_id, later(2), [("2.00", "5")], [("2.05", "50")])
    ev = v2.on_market([qc], later(2))
    execs = [e.execution for e in ev if isinstance(e, Executed)]
    assert [(x.con_id, x.cum_qty) for x in execs] == [
        (CALL_600.con_id, D(2)),
        (CALL_605.con_id, D(2)),
        (BAG_CON_ID, D(2)),
    ]
    snap = v2.order(1, 1)
    assert snap is not None and snap.status == OrderStatusName.FILLED
    assert snap.commission == D("2.60")  # 1.30 a leg, as one fill of two would cost
    assert len({x.exec_id for x, _ in v2.executions()}) == 6
