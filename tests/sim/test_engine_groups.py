"""Brackets (parentId + transmit), OCA groups and combo (BAG) orders."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from tests.sim.engine_kit import (
    AAPL,
    CALL_600,
    CALL_605,
    SPY,
    T0,
    BookMarket,
    executions,
    later,
    make_venue,
    order,
)
from tws_sim.engine import BAG_CON_ID, ComboRule, ComboSliceRule, Venue, VenueRules
from tws_sim.market.scenario import Scenario
from tws_sim.types import (
    ComboLegSpec,
    Commissioned,
    Executed,
    OrderChanged,
    OrderStatusName,
    SecType,
    VenueError,
    VenueEvent,
)

D = Decimal


def make(rules: VenueRules | None = None) -> tuple[Venue, BookMarket]:
    return make_venue(SPY, AAPL, CALL_600, CALL_605, rules=rules)


def status(v: Venue, oid: int, client: int = 1) -> OrderStatusName:
    snap = v.order(client, oid)
    assert snap is not None
    return snap.status


def fills(events: list[VenueEvent]) -> list[tuple[int, Decimal, Decimal]]:
    return [
        (e.execution.order_id, e.execution.shares, e.execution.price) for e in executions(events)
    ]


def bracket(v: Venue, parent_lmt: str = "499.00") -> None:
    v.place(order(10, "BUY", "100", "LMT", parent_lmt, transmit=False), T0)
    v.place(order(11, "SELL", "100", "LMT", "501.00", parent_id=10, transmit=False), T0)
    v.place(order(12, "SELL", "100", "STP", aux="498.00", parent_id=10, transmit=True), T0)


def test_untransmitted_group_does_not_work_until_transmit() -> None:
    v, m = make()
    ev = v.place(order(10, "BUY", "100", "LMT", "500.05", transmit=False), T0)
    assert fills(ev) == [] and status(v, 10) == OrderStatusName.PRE_SUBMITTED
    qc = m.set_book(SPY.con_id, later(1), [("499.00", "100")], [("499.50", "100")])
    assert fills(v.on_market([qc], later(1))) == []
    ev = v.place(order(11, "SELL", "100", "LMT", "510.00", parent_id=10, transmit=True), later(2))
    assert fills(ev) == [(10, D(100), D("499.50"))]
    assert status(v, 10) == OrderStatusName.FILLED
    assert status(v, 11) == OrderStatusName.SUBMITTED


def test_bracket_children_wait_for_the_parent_then_one_exit_cancels_the_other() -> None:
    v, m = make()
    bracket(v)
    assert status(v, 10) == OrderStatusName.SUBMITTED
    assert status(v, 11) == OrderStatusName.PRE_SUBMITTED
    assert v.order(1, 11).why_held == "child"  # type: ignore[union-attr]
    # the stop's price is crossed, but a child does nothing before its parent fills
    qc = m.set_book(SPY.con_id, later(1), [("499.01", "100")], [("499.02", "100")], last="497.0")
    assert fills(v.on_market([qc], later(1))) == []
    qc = m.set_book(SPY.con_id, later(2), [("498.90", "100")], [("499.00", "100")], last="499.0")
    ev = v.on_market([qc], later(2))
    assert fills(ev) == [(10, D(100), D("499.00"))]
    assert status(v, 11) == OrderStatusName.SUBMITTED
    assert status(v, 12) == OrderStatusName.PRE_SUBMITTED  # stop, not triggered
    qc = m.set_book(SPY.con_id, later(3), [("501.00", "60")], [("501.02", "100")], last="501.0")
    ev = v.on_market([qc], later(3))
    assert fills(ev) == [(11, D(60), D("501.00"))]
    snap = v.order(1, 12)
    assert snap is not None and snap.request.total_qty == D(40)  # reduced with the fill
    qc = m.set_book(SPY.con_id, later(4), [("501.00", "60")], [("501.02", "100")], last="501.0")
    ev = v.on_market([qc], later(4))
    assert fills(ev) == [(11, D(40), D("501.00"))]
    assert status(v, 11) == OrderStatusName.FILLED
    assert status(v, 12) == OrderStatusName.CANCELLED


def test_cancelling_the_parent_cancels_the_children() -> None:
    v, _ = make()
    bracket(v)
    ev = v.cancel(1, 10, later(1))
    assert [e.code for e in ev if isinstance(e, VenueError)] == [202, 202, 202]
    assert {status(v, i) for i in (10, 11, 12)} == {OrderStatusName.CANCELLED}


def test_child_of_unknown_parent_is_rejected() -> None:
    v, _ = make()
    ev = v.place(order(5, "SELL", "100", "LMT", "501.00", parent_id=99), T0)
    assert [e.code for e in ev if isinstance(e, VenueError)] == [321]


def test_oca_type_1_cancels_siblings_on_fill() -> None:
    v, m = make()
    v.place(order(1, "SELL", "100", "LMT", "500.50", oca_group="g", oca_type=1), T0)
    v.place(order(2, "SELL", "100", "STP", aux="499.00", oca_group="g", oca_type=1), T0)
    v.place(order(3, "SELL", "100", "LMT", "502.00", oca_group="other", oca_type=1), T0)
    qc = m.set_book(SPY.con_id, later(1), [("500.50", "30")], [("500.52", "100")])
    ev = v.on_market([qc], later(1))
    assert fills(ev) == [(1, D(30), D("500.50"))]
    assert status(v, 2) == OrderStatusName.CANCELLED
    assert status(v, 3) == OrderStatusName.SUBMITTED
    assert not [e for e in ev if isinstance(e, VenueError)]  # OCA cancels carry no 202


def test_oca_type_2_reduces_siblings_proportionally() -> None:
    v, m = make()
    v.place(order(1, "BUY", "100", "LMT", "499.50", oca_group="h", oca_type=2), T0)
    v.place(order(2, "BUY", "100", "LMT", "499.40", oca_group="h", oca_type=2), T0)
    qc = m.set_book(SPY.con_id, later(1), [("499.00", "30")], [("499.50", "30")])
    ev = v.on_market([qc], later(1))
    assert fills(ev) == [(1, D(30), D("499.50"))]
    changed = [e.snapshot for e in ev if isinstance(e, OrderChanged)]
    assert any(s.request.order_id == 2 and s.request.total_qty == D(70) for s in changed)
    qc = m.set_book(SPY.con_id, later(2), [("499.00", "30")], [("499.40", "500")])
    v.on_market([qc], later(2))
    assert status(v, 1) == OrderStatusName.FILLED
    assert status(v, 2) == OrderStatusName.CANCELLED


def spread(order_id: int, action: str = "BUY", lmt: str | None = "3.10", **kw: object):
    legs = (
        ComboLegSpec(CALL_600.con_id, 1, "BUY", "SMART"),
        ComboLegSpec(CALL_605.con_id, 1, "SELL", "SMART"),
    )
    return order(
        order_id,
        action,
        "2",
        "LMT" if lmt is not None else "MKT",
        lmt,
        con_id=0,
        symbol="SPY",
        sec_type=SecType.BAG,
        combo_legs=legs,
    )


def test_combo_fills_atomically_with_leg_executions_and_the_bag_execution() -> None:
    v, _ = make()
    # net ask = 5.10 - 2.00 = 3.10
    ev = v.place(spread(1, lmt="3.05"), T0)
    assert fills(ev) == [] and status(v, 1) == OrderStatusName.SUBMITTED
    ev = v.place(spread(1, lmt="3.10"), later(1))
    execs = [e.execution for e in ev if isinstance(e, Executed)]
    assert [(x.con_id, x.side, x.shares, x.price, x.sec_type) for x in execs] == [
        (CALL_600.con_id, "BOT", D(2), D("5.10"), SecType.OPT),
        (CALL_605.con_id, "SLD", D(2), D("2.00"), SecType.OPT),
        (BAG_CON_ID, "BOT", D(2), D("3.10"), SecType.BAG),
    ]
    assert len({x.perm_id for x in execs}) == 1 and {x.order_id for x in execs} == {1}
    snap = v.order(1, 1)
    assert snap is not None and snap.status == OrderStatusName.FILLED
    assert snap.avg_fill_price == D("3.10")
    comms = {e.report.exec_id: e.report.commission for e in ev if isinstance(e, Commissioned)}
    assert comms[execs[0].exec_id] == D("1.30") and comms[execs[1].exec_id] == D("1.30")
    assert comms[execs[2].exec_id] == D(0)
    pos = {inst.con_id: (qty, avg) for inst, qty, avg in v.positions()}
    assert pos[CALL_600.con_id][0] == D(2) and pos[CALL_605.con_id][0] == D(-2)
    assert BAG_CON_ID not in pos


def test_selling_a_combo_reverses_the_legs() -> None:
    v, _ = make()
    ev = v.place(spread(1, "SELL", lmt=None), T0)  # net bid = 5.00 - 2.05 = 2.95
    execs = [e.execution for e in ev if isinstance(e, Executed)]
    assert [(x.side, x.price) for x in execs] == [
        ("SLD", D("5.00")),
        ("BOT", D("2.05")),
        ("SLD", D("2.95")),
    ]


def test_combo_rejected_as_unfillable_per_scenario() -> None:
    v, _ = make(VenueRules(combos=(ComboRule(symbols=("SPY",)),)))
    ev = v.place(spread(1), T0)
    assert [e.code for e in ev if isinstance(e, VenueError)] == [201]
    assert status(v, 1) == OrderStatusName.CANCELLED
    # single-leg orders still trade (the legged fallback)
    ev = v.place(order(2, "BUY", "1", "MKT", con_id=CALL_600.con_id), T0)
    assert fills(ev) == [(2, D(1), D("5.10"))]


def test_combo_with_unknown_leg_is_200() -> None:
    v, _ = make()
    legs = (ComboLegSpec(CALL_600.con_id, 1, "BUY"), ComboLegSpec(4242, 1, "SELL"))
    ev = v.place(order(1, "BUY", "1", "MKT", con_id=0, sec_type=SecType.BAG, combo_legs=legs), T0)
    assert [e.code for e in ev if isinstance(e, VenueError)] == [200]


# --- combos filled in whole units over several executions ------------------------------------


def combo_execs(ev: list[VenueEvent]) -> list[tuple[int, str, D, D, D]]:
    """(con_id, side, shares, price, cum_qty) of every execution, in order."""
    return [
        (x.con_id, x.side, x.shares, x.price, x.cum_qty)
        for x in (e.execution for e in ev if isinstance(e, Executed))
    ]


def combo_statuses(ev: list[VenueEvent], oid: int) -> list[tuple[str, D, D]]:
    return [
        (e.snapshot.status.value, e.snapshot.filled, e.snapshot.remaining)
        for e in ev
        if isinstance(e, OrderChanged) and e.snapshot.request.order_id == oid
    ]


def test_combo_fills_in_parts_as_the_thinnest_leg_shows_size() -> None:
    v, m = make()
    # the short leg's bid shows a single contract: one spread now, the second later
    m.set_book(CALL_605.con_id, T0, [("2.00", "1")], [("2.05", "50")])
    ev = v.place(spread(1, lmt="3.10"), T0)
    assert combo_execs(ev) == [
        (CALL_600.con_id, "BOT", D(1), D("5.10"), D(1)),
        (CALL_605.con_id, "SLD", D(1), D("2.00"), D(1)),
        (BAG_CON_ID, "BOT", D(1), D("3.10"), D(1)),
    ]
    assert combo_statuses(ev, 1)[-1] == ("Submitted", D(1), D(1))
    # the same quote again (nothing new shown): nothing more fills
    assert executions(v.on_market([], later(1))) == []
    qc = m.set_book(CALL_605.con_id, later(2), [("2.00", "5")], [("2.05", "50")])
    ev2 = v.on_market([qc], later(2))
    assert combo_execs(ev2) == [
        (CALL_600.con_id, "BOT", D(1), D("5.10"), D(2)),
        (CALL_605.con_id, "SLD", D(1), D("2.00"), D(2)),
        (BAG_CON_ID, "BOT", D(1), D("3.10"), D(2)),
    ]
    assert combo_statuses(ev2, 1)[-1] == ("Filled", D(2), D(0))
    # execIds are all distinct; commissions per leg add up to what one fill of 2 would cost
    all_execs = [e.execution for e in ev + ev2 if isinstance(e, Executed)]
    assert len({x.exec_id for x in all_execs}) == 6 and len({x.perm_id for x in all_execs}) == 1
    comms = {e.report.exec_id: e.report.commission for e in ev + ev2 if isinstance(e, Commissioned)}
    per_leg: dict[int, D] = {}
    for x in all_execs:
        per_leg[x.con_id] = per_leg.get(x.con_id, D(0)) + comms[x.exec_id]
    assert per_leg == {CALL_600.con_id: D("1.30"), CALL_605.con_id: D("1.30"), BAG_CON_ID: D(0)}
    snap = v.order(1, 1)
    assert snap is not None and snap.commission == D("2.60") and snap.avg_fill_price == D("3.10")
    pos = {inst.con_id: qty for inst, qty, _ in v.positions()}
    assert pos[CALL_600.con_id] == D(2) and pos[CALL_605.con_id] == D(-2)


def test_combo_units_follow_leg_ratios_and_what_others_took() -> None:
    v, m = make()
    m.set_book(CALL_605.con_id, T0, [("2.00", "5")], [("2.05", "50")])
    legs = (
        ComboLegSpec(CALL_600.con_id, 1, "BUY", "SMART"),
        ComboLegSpec(CALL_605.con_id, 2, "SELL", "SMART"),
    )
    ratio = order(
        1, "BUY", "4", "MKT", con_id=0, symbol="SPY", sec_type=SecType.BAG, combo_legs=legs
    )
    ev = v.place(ratio, T0)
    # 5 contracts bid on the ratio-2 leg: two units (4 contracts), one contract left over
    assert combo_execs(ev)[1:] == [
        (CALL_605.con_id, "SLD", D(4), D("2.00"), D(4)),
        (BAG_CON_ID, "BOT", D(2), D("1.10"), D(2)),
    ]
    # a second combo in the same instant sees the leg net of what the first took
    ev = v.place(spread(2, lmt=None), T0)
    bag = [x for x in combo_execs(ev) if x[0] == BAG_CON_ID]
    assert bag == [(BAG_CON_ID, "BOT", D(1), D("3.10"), D(1))]


def test_ioc_combo_keeps_what_filled_and_fok_combo_needs_all_of_it() -> None:
    v, m = make()
    m.set_book(CALL_605.con_id, T0, [("2.00", "1")], [("2.05", "50")])
    ev = v.place(replace(spread(1, lmt="3.10"), tif="FOK"), T0)
    assert executions(ev) == [] and status(v, 1) == OrderStatusName.CANCELLED
    ev = v.place(replace(spread(2, lmt="3.10"), tif="IOC"), T0)
    assert [x for x in combo_execs(ev) if x[0] == BAG_CON_ID] == [
        (BAG_CON_ID, "BOT", D(1), D("3.10"), D(1))
    ]
    snap = v.order(1, 2)
    assert snap is not None and snap.status == OrderStatusName.CANCELLED and snap.filled == D(1)


def test_scenario_knob_slices_a_combo_into_units_over_time() -> None:
    rule = ComboSliceRule(max_units=D(1), interval_s=1.0, symbols=("SPY",))
    v, m = make(VenueRules(combo_slices=(rule,)))
    ev = v.place(spread(1, lmt="3.10"), T0)  # 50 contracts a side: liquidity is not the limit
    assert [x for x in combo_execs(ev) if x[0] == BAG_CON_ID] == [
        (BAG_CON_ID, "BOT", D(1), D("3.10"), D(1))
    ]
    # more quotes within the second: no second slice yet
    qc = m.set_book(CALL_600.con_id, later(0.5), [("5.00", "50")], [("5.10", "50")])
    assert executions(v.on_market([qc], later(0.5))) == []
    qc = m.set_book(CALL_600.con_id, later(1), [("5.00", "50")], [("5.10", "50")])
    ev = v.on_market([qc], later(1))
    assert [x for x in combo_execs(ev) if x[0] == BAG_CON_ID] == [
        (BAG_CON_ID, "BOT", D(1), D("3.10"), D(2))
    ]
    assert status(v, 1) == OrderStatusName.FILLED


def test_scenario_combo_partial_fills_rule_is_read_from_the_scenario() -> None:
    scenario = Scenario.from_text(
        "extends: default\nfaults:\n"
        "  - {kind: combo_partial_fills, symbols: [SPY], max_units: 2, interval_s: 5}\n"
    )
    (rule,) = VenueRules.from_scenario(scenario, T0).combo_slices
    assert (rule.max_units, rule.interval_s, rule.symbols) == (D(2), 5.0, ("SPY",))
    assert rule.window.contains(T0)
