"""Halts, reject rules, execution corrections, duplicate orderStatus, delayed commissions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from tests.sim.engine_kit import (
    AAPL,
    CALL_600,
    SPY,
    T0,
    BookMarket,
    Catalog,
    later,
    make_venue,
    order,
    standard_market,
)
from tests.sim.engine_kit import (
    error_codes as errors,
)
from tests.sim.engine_kit import (
    executions as execs,
)
from tws_sim.engine import (
    CommissionDelay,
    CorrectionRule,
    RejectRule,
    Venue,
    VenueRules,
    Window,
)
from tws_sim.engine.execids import corrected_id
from tws_sim.types import (
    Commissioned,
    HaltState,
    OrderChanged,
    OrderStatusName,
    PositionChanged,
    VenueError,
)

D = Decimal


def make(rules: VenueRules | None = None) -> tuple[Venue, BookMarket]:
    return make_venue(SPY, AAPL, CALL_600, rules=rules)


def test_orders_into_a_halted_instrument_get_154_and_resting_orders_do_not_fill() -> None:
    v, m = make()
    v.place(order(1, "BUY", "100", "LMT", "499.00"), T0)
    m.set_halt(SPY.con_id, HaltState.VOLATILITY_HALT)
    ev = v.place(order(2, "BUY", "100", "MKT"), later(1))
    assert errors(ev) == [154]
    assert v.order(1, 2).status == OrderStatusName.CANCELLED  # type: ignore[union-attr]
    ev = v.place(order(3, "BUY", "1", "MKT", con_id=CALL_600.con_id), later(1))
    assert errors(ev) == [154]  # an option inherits its underlying's halt
    qc = m.set_book(SPY.con_id, later(2), [("498.00", "100")], [("498.50", "100")])
    assert execs(v.on_market([qc], later(2))) == []
    assert execs(v.on_market([m.print_trade(SPY.con_id, later(2), "498", "9")], later(2))) == []
    m.set_halt(SPY.con_id, HaltState.TRADING)
    qc = m.set_book(SPY.con_id, later(3), [("498.00", "100")], [("498.50", "100")])
    assert [e.execution.price for e in execs(v.on_market([qc], later(3)))] == [D("498.50")]


def test_reject_rule_max_qty_and_notional_with_window_and_symbol() -> None:
    rules = VenueRules(
        rejects=(
            RejectRule(max_qty=D(500), symbol="SPY", window=Window(later(10), later(20))),
            RejectRule(max_notional=D(100000)),
        )
    )
    v, _ = make(rules)
    assert errors(v.place(order(1, "BUY", "600", "LMT", "100.00"), later(5))) == []
    ev = v.place(order(2, "BUY", "600", "LMT", "100.00"), later(10))
    assert errors(ev) == [201]
    msg = next(e for e in ev if isinstance(e, VenueError)).message
    assert msg.startswith("Order rejected - reason:") and "600" in msg
    assert (
        errors(v.place(order(3, "BUY", "600", "LMT", "100.00", con_id=AAPL.con_id), later(10)))
        == []
    )
    ev = v.place(order(4, "BUY", "300", "LMT", "400.00"), later(30))
    assert errors(ev) == [201]
    assert "INITIAL MARGIN" in next(e for e in ev if isinstance(e, VenueError)).message


def test_scheduled_correction_reissues_with_next_suffix_and_rebooks_the_account() -> None:
    rules = VenueRules(corrections=(CorrectionRule(nth=2, price_delta=D("0.02"), symbol="SPY"),))
    v, _ = make(rules)
    v.place(order(1, "BUY", "1", "MKT", con_id=AAPL.con_id), T0)  # AAPL: not counted
    v.place(order(2, "BUY", "50", "MKT"), T0)
    ev = v.place(order(3, "BUY", "50", "MKT"), later(1))
    ex = execs(ev)
    assert len(ex) == 2
    original, correction = ex[0].execution, ex[1].execution
    assert correction.exec_id == corrected_id(original.exec_id)
    assert correction.exec_id.endswith(".01.02") and original.exec_id.endswith(".01.01")
    assert correction.is_correction_of == original.exec_id
    assert correction.price == original.price + D("0.02")
    comm = [e.report for e in ev if isinstance(e, Commissioned)]
    assert [c.exec_id for c in comm] == [original.exec_id, correction.exec_id]
    effective = [e.exec_id for e, _ in v.executions()]
    assert original.exec_id not in effective and correction.exec_id in effective
    pos = [e for e in ev if isinstance(e, PositionChanged)][-1]
    assert pos.position == D(100)
    expected_cost = D(50) * D("500.01") + D(50) * (original.price + D("0.02")) + D("0.35") * 2
    assert pos.avg_cost == expected_cost / 100
    snap = v.order(1, 3)
    assert snap is not None and snap.avg_fill_price == original.price + D("0.02")


def test_manual_correction_of_quantity() -> None:
    v, _ = make()
    ev = v.place(order(1, "BUY", "100", "MKT"), T0)
    ex_id = execs(ev)[0].execution.exec_id
    ev = v.correct_execution(ex_id, later(1), shares=D(90))
    new = execs(ev)[0].execution
    assert new.shares == D(90) and new.exec_id == ex_id[:-2] + "02"
    assert [(i.symbol, q) for i, q, _ in v.positions()] == [("SPY", D(90))]
    snap = v.order(1, 1)
    assert snap is not None and snap.filled == D(90)
    ev = v.correct_execution(new.exec_id, later(2), price=D("500.00"))
    assert execs(ev)[0].execution.exec_id.endswith(".01.03")


def test_duplicate_order_status_inside_the_window_only() -> None:
    rules = VenueRules(duplicate_status=(Window(later(10), later(20)),))
    v, _ = make(rules)
    ev = v.place(order(1, "BUY", "100", "LMT", "490.00"), later(1))
    assert len([e for e in ev if isinstance(e, OrderChanged)]) == 1
    ev = v.place(order(2, "BUY", "100", "LMT", "490.00"), later(10))
    changed = [e for e in ev if isinstance(e, OrderChanged)]
    assert len(changed) == 2 and changed[0].snapshot == changed[1].snapshot
    assert changed[1].open_order is False


def test_delayed_commissions_carry_a_delivery_time() -> None:
    rules = VenueRules(commission_delays=(CommissionDelay(10.0, Window(later(5), None)),))
    v, _ = make(rules)
    ev = v.place(order(1, "BUY", "10", "MKT"), T0)
    assert [e.deliver_at for e in ev if isinstance(e, Commissioned)] == [None]
    ev = v.place(order(2, "BUY", "10", "MKT"), later(5))
    assert [e.deliver_at for e in ev if isinstance(e, Commissioned)] == [
        later(5) + timedelta(seconds=10)
    ]


def test_rules_from_a_scenario_file() -> None:
    from tws_sim.market.scenario import Scenario

    scenario = Scenario.named("faults")
    rules = VenueRules.from_scenario(scenario, T0)
    assert rules.rejects[0].max_qty == D(5000) and rules.rejects[0].window.contains(T0)
    assert rules.combos[0].symbols == ("SPY",)
    assert rules.commission_delay(T0) == 0.0
    assert rules.commission_delay(T0 + timedelta(seconds=300)) == 10.0
    # duplicate orderStatus is the server's (it doubles what it writes); the venue leaves it
    assert not rules.duplicates_status(T0 + timedelta(seconds=301))
    corr = rules.corrections[0]
    assert (corr.nth, corr.symbol, corr.price_delta) == (2, "SPY", D("0.02"))
    assert corr.start == T0 + timedelta(seconds=360)
    v = Venue(Catalog(SPY, AAPL), standard_market(), scenario, start=T0)
    assert errors(v.place(order(1, "BUY", "5001", "LMT", "1.00"), T0)) == [201]


def test_rules_from_mappings_and_no_scenario() -> None:
    assert VenueRules.from_scenario(None, None) == VenueRules()
    rules = VenueRules.from_scenario(
        {
            "starting_cash": "25000",
            "faults": [
                {"kind": "reject_rule", "max_qty": "10", "start": later(1)},
                {"kind": "disconnect", "after_s": 5},
            ],
        },
        None,
    )
    assert rules.starting_cash == D(25000) and len(rules.rejects) == 1
    assert not rules.rejects[0].window.contains(T0)
