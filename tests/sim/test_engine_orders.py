"""Order types, TIFs, book walking, modifications and cancel races of the venue."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from functools import partial
from typing import Any

from tests.sim.engine_kit import (
    AAPL,
    CALL_600,
    SPY,
    T0,
    BookMarket,
    executions,
    later,
    make_venue,
    order,
    standard_market,
)
from tests.sim.engine_kit import (
    error_codes as errors,
)
from tws_sim.engine import Venue
from tws_sim.engine.matching import peg_price, trail_stop
from tws_sim.market import price_increment
from tws_sim.types import (
    Commissioned,
    Executed,
    HaltState,
    OrderChanged,
    OrderStatusName,
    Quote,
    SecType,
    VenueError,
    VenueEvent,
)

D = Decimal


def make(market: BookMarket | None = None) -> tuple[Venue, BookMarket]:
    return make_venue(SPY, AAPL, market=market)


def fills(events: list[VenueEvent]) -> list[tuple[Decimal, Decimal]]:
    return [(e.execution.shares, e.execution.price) for e in executions(events)]


def statuses(events: list[VenueEvent]) -> list[str]:
    return [e.snapshot.status.value for e in events if isinstance(e, OrderChanged)]


def test_market_order_walks_displayed_depth_level_by_level() -> None:
    v, _ = make()
    ev = v.place(order(1, "BUY", "250", "MKT"), T0)
    assert fills(ev) == [(D(100), D("500.01")), (D(150), D("500.02"))]
    snap = v.order(1, 1)
    assert snap is not None and snap.status == OrderStatusName.FILLED
    assert snap.avg_fill_price == (D(100) * D("500.01") + D(150) * D("500.02")) / 250
    assert statuses(ev) == ["Submitted", "Submitted", "Filled"]
    last = [e for e in ev if isinstance(e, Executed)][-1].execution
    assert last.cum_qty == D(250) and last.side == "BOT" and last.last_liquidity == 2


def test_market_order_beyond_depth_rests_and_fills_on_next_quote() -> None:
    v, m = make()
    ev = v.place(order(1, "SELL", "700", "MKT"), T0)
    assert sum(q for q, _ in fills(ev)) == D(600)
    assert v.order(1, 1).status == OrderStatusName.SUBMITTED  # type: ignore[union-attr]
    qc = m.set_book(SPY.con_id, later(1), bids=[("499.50", "500")], asks=[("499.60", "100")])
    ev2 = v.on_market([qc], later(1))
    assert fills(ev2) == [(D(100), D("499.50"))]
    assert v.order(1, 1).status == OrderStatusName.FILLED  # type: ignore[union-attr]


def test_two_orders_in_one_instant_do_not_take_the_same_displayed_size() -> None:
    v, _ = make()
    v.place(order(1, "BUY", "100", "MKT"), T0)
    ev = v.place(order(2, "BUY", "100", "MKT"), T0)
    assert fills(ev) == [(D(100), D("500.02"))]


def test_limit_rests_then_fills_in_parts_as_the_market_crosses() -> None:
    v, m = make()
    ev = v.place(order(1, "BUY", "300", "LMT", "499.90"), T0)
    assert fills(ev) == [] and statuses(ev) == ["Submitted"]
    qc = m.set_book(
        SPY.con_id, later(1), bids=[("499.80", "100")], asks=[("499.85", "100"), ("499.90", "50")]
    )
    ev = v.on_market([qc], later(1))
    assert fills(ev) == [(D(100), D("499.85")), (D(50), D("499.90"))]
    snap = v.order(1, 1)
    assert snap is not None and snap.filled == D(150) and snap.remaining == D(150)
    qc = m.set_book(SPY.con_id, later(2), bids=[("499.70", "100")], asks=[("499.75", "500")])
    ev = v.on_market([qc], later(2))
    assert fills(ev) == [(D(150), D("499.75"))]
    assert v.order(1, 1).status == OrderStatusName.FILLED  # type: ignore[union-attr]


def test_resting_limit_fills_passively_on_trade_prints_at_or_through_it() -> None:
    v, m = make()
    v.place(order(1, "BUY", "300", "LMT", "499.95"), T0)
    v.place(order(2, "BUY", "300", "LMT", "499.90"), T0)
    ev = v.on_market([m.print_trade(SPY.con_id, later(1), "499.96", "500")], later(1))
    assert fills(ev) == []
    ev = v.on_market([m.print_trade(SPY.con_id, later(2), "499.95", "200")], later(2))
    assert fills(ev) == [(D(200), D("499.95"))]
    execs = [e.execution for e in ev if isinstance(e, Executed)]
    assert execs[0].last_liquidity == 1
    # a print through both: the older order takes the rest of its size first, at its own price
    ev = v.on_market([m.print_trade(SPY.con_id, later(3), "499.80", "250")], later(3))
    assert fills(ev) == [(D(100), D("499.95")), (D(150), D("499.90"))]


def test_stop_triggers_on_last_and_becomes_market() -> None:
    v, m = make()
    ev = v.place(order(1, "SELL", "100", "STP", aux="499.50"), T0)
    assert statuses(ev) == ["PreSubmitted"] and fills(ev) == []
    qc = m.set_book(SPY.con_id, later(1), [("499.60", "100")], [("499.62", "100")], last="499.61")
    assert fills(v.on_market([qc], later(1))) == []
    qc = m.set_book(SPY.con_id, later(2), [("499.40", "100")], [("499.45", "100")], last="499.50")
    ev = v.on_market([qc], later(2))
    assert statuses(ev)[0] == "Submitted" and fills(ev) == [(D(100), D("499.40"))]


def test_stop_limit_triggers_then_rests_at_its_limit() -> None:
    v, m = make()
    v.place(order(1, "BUY", "100", "STP LMT", lmt="500.50", aux="500.40"), T0)
    qc = m.set_book(SPY.con_id, later(1), [("500.55", "100")], [("500.60", "100")], last="500.58")
    ev = v.on_market([qc], later(1))
    assert fills(ev) == [] and v.order(1, 1).status == OrderStatusName.SUBMITTED  # type: ignore[union-attr]
    qc = m.set_book(SPY.con_id, later(2), [("500.40", "100")], [("500.45", "100")], last="500.45")
    assert fills(v.on_market([qc], later(2))) == [(D(100), D("500.45"))]


def test_trailing_stop_amount_follows_the_high_and_triggers() -> None:
    v, m = make()
    v.place(order(1, "SELL", "100", "TRAIL", aux="1.00"), T0)  # last 500.00 -> stop 499.00
    qc = m.set_book(SPY.con_id, later(1), [("501.99", "100")], [("502.01", "100")], last="502.00")
    assert fills(v.on_market([qc], later(1))) == []  # stop moves up to 501.00
    qc = m.set_book(SPY.con_id, later(2), [("501.49", "100")], [("501.51", "100")], last="501.50")
    assert fills(v.on_market([qc], later(2))) == []  # a dip does not move it down
    qc = m.set_book(SPY.con_id, later(3), [("500.98", "300")], [("501.00", "100")], last="500.99")
    assert fills(v.on_market([qc], later(3))) == [(D(100), D("500.98"))]


def test_trailing_stop_percent() -> None:
    v, m = make()
    v.place(order(1, "BUY", "10", "TRAIL", trailing_percent=D("1")), T0)  # low 500 -> stop 505
    qc = m.set_book(SPY.con_id, later(1), [("489.99", "100")], [("490.01", "100")], last="490.00")
    assert fills(v.on_market([qc], later(1))) == []  # stop 494.90
    qc = m.set_book(SPY.con_id, later(2), [("494.89", "100")], [("494.91", "100")], last="494.90")
    assert fills(v.on_market([qc], later(2))) == [(D(10), D("494.91"))]


def test_trail_limit_rests_at_stop_minus_offset_after_trigger() -> None:
    v, m = make()
    v.place(order(1, "SELL", "100", "TRAIL LIMIT", lmt="0.10", aux="1.00"), T0)
    qc = m.set_book(SPY.con_id, later(1), [("498.80", "100")], [("498.85", "100")], last="499.00")
    ev = v.on_market([qc], later(1))  # trigger at stop 499.00 -> limit 498.90, bid below
    assert fills(ev) == [] and v.order(1, 1).status == OrderStatusName.SUBMITTED  # type: ignore[union-attr]
    qc = m.set_book(SPY.con_id, later(2), [("498.95", "100")], [("499.00", "100")], last="498.97")
    assert fills(v.on_market([qc], later(2))) == [(D(100), D("498.95"))]


def test_peg_mid_repegs_on_quote_changes_and_fills_on_prints() -> None:
    v, m = make()
    m.set_book(SPY.con_id, T0, [("500.00", "100")], [("500.10", "100")])
    v.place(order(1, "BUY", "100", "PEG MID", aux="0.01"), T0)  # mid 500.05 - 0.01
    assert v._orders[(1, 1)].peg_price == D("500.04")
    qc = m.set_book(SPY.con_id, later(1), [("500.20", "100")], [("500.30", "100")])
    v.on_market([qc], later(1))
    assert v._orders[(1, 1)].peg_price == D("500.24")
    ev = v.on_market([m.print_trade(SPY.con_id, later(2), "500.20", "100")], later(2))
    assert fills(ev) == [(D(100), D("500.24"))]


def test_midprice_is_capped_by_its_limit() -> None:
    v, m = make()
    m.set_book(SPY.con_id, T0, [("500.00", "100")], [("500.10", "100")])
    v.place(order(1, "SELL", "100", "MIDPRICE", lmt="500.07"), T0)
    assert v._orders[(1, 1)].peg_price == D("500.07")


def test_relative_order_pegs_to_the_near_side_plus_offset() -> None:
    v, m = make()
    m.set_book(SPY.con_id, T0, [("500.00", "100")], [("500.10", "100")])
    v.place(order(1, "BUY", "100", "REL", aux="0.02", lmt="500.05"), T0)
    assert v._orders[(1, 1)].peg_price == D("500.02")
    qc = m.set_book(SPY.con_id, later(1), [("500.06", "100")], [("500.12", "100")])
    v.on_market([qc], later(1))
    assert v._orders[(1, 1)].peg_price == D("500.05")  # capped


def test_ioc_takes_what_is_there_and_cancels_the_rest() -> None:
    v, _ = make()
    ev = v.place(order(1, "BUY", "250", "LMT", "500.01", tif="IOC"), T0)
    assert fills(ev) == [(D(100), D("500.01"))]
    snap = v.order(1, 1)
    assert snap is not None and snap.status == OrderStatusName.CANCELLED
    assert snap.filled == D(100) and snap.remaining == D(150)
    assert 202 not in errors(ev)


def test_fok_is_all_or_nothing() -> None:
    v, _ = make()
    ev = v.place(order(1, "BUY", "250", "LMT", "500.01", tif="FOK"), T0)
    assert fills(ev) == [] and v.order(1, 1).status == OrderStatusName.CANCELLED  # type: ignore[union-attr]
    ev = v.place(order(2, "BUY", "250", "LMT", "500.02", tif="FOK"), T0)
    assert sum(q for q, _ in fills(ev)) == D(250)


def test_gtd_expires_at_its_time_and_gtc_survives_the_close() -> None:
    v, m = make()
    v.place(order(1, "BUY", "100", "LMT", "490.00", tif="GTD", good_till=later(60)), T0)
    v.place(order(2, "BUY", "100", "LMT", "490.00", tif="GTC"), T0)
    v.place(order(3, "BUY", "100", "LMT", "490.00", tif="DAY"), T0)
    v.on_market([], later(30))
    assert v.order(1, 1).status == OrderStatusName.SUBMITTED  # type: ignore[union-attr]
    ev = v.on_market([], later(60))
    assert statuses(ev) == ["Cancelled"]
    m.open = False
    ev = v.on_market([], later(120))  # the close: DAY expires, GTC stays
    assert v.order(1, 3).status == OrderStatusName.CANCELLED  # type: ignore[union-attr]
    assert v.order(1, 2).status == OrderStatusName.SUBMITTED  # type: ignore[union-attr]


def test_moc_and_loc_fill_at_the_close_auction() -> None:
    v, m = make()
    ev = v.place(order(1, "BUY", "100", "MOC"), T0)
    v.place(order(2, "SELL", "100", "LOC", "500.50"), T0)
    v.place(order(3, "SELL", "100", "LOC", "499.00"), T0)
    assert statuses(ev) == ["PreSubmitted"] and fills(ev) == []
    m.set_book(SPY.con_id, later(5), [("499.98", "100")], [("500.02", "100")], last="500.00")
    v.on_market([], later(5))
    assert fills(v.on_market([], later(6))) == []
    m.open = False
    ev = v.on_market([], later(10))
    assert fills(ev) == [(D(100), D("500.00")), (D(100), D("500.00"))]
    assert v.order(1, 2).status == OrderStatusName.CANCELLED  # type: ignore[union-attr]


def test_outside_rth_and_opg_wait_for_the_open() -> None:
    m = standard_market()
    m.open = False
    v, _ = make(m)
    v.on_market([], T0)
    ev = v.place(order(1, "BUY", "100", "MKT"), T0)
    assert statuses(ev) == ["PreSubmitted"] and fills(ev) == []
    ev = v.place(order(2, "BUY", "50", "MKT", outside_rth=True), T0)
    assert fills(ev) == [(D(50), D("500.01"))]
    v.place(order(3, "SELL", "100", "LMT", "499.00", tif="OPG"), T0)
    m.set_book(SPY.con_id, later(1), [("500.10", "500")], [("500.12", "500")], "500.11", "500.11")
    m.open = True
    ev = v.on_market([], later(1))
    assert fills(ev) == [(D(100), D("500.11")), (D(100), D("500.12"))]


def test_modify_changes_price_and_quantity_in_place() -> None:
    v, _ = make()
    v.place(order(1, "BUY", "100", "LMT", "499.00"), T0)
    ev = v.place(order(1, "BUY", "150", "LMT", "499.50"), later(1))
    assert statuses(ev) == ["Submitted"]
    snap = v.order(1, 1)
    assert snap is not None and snap.request.total_qty == D(150)
    assert snap.request.lmt_price == D("499.50")
    ev = v.place(order(1, "BUY", "150", "LMT", "500.02"), later(2))  # now marketable
    assert fills(ev) == [(D(100), D("500.01")), (D(50), D("500.02"))]


def test_modify_illegal_changes_are_rejected_and_the_order_keeps_working() -> None:
    v, m = make()
    v.place(order(1, "BUY", "300", "LMT", "499.00"), T0)
    qc = m.set_book(SPY.con_id, later(1), [("498.90", "100")], [("499.00", "100")])
    v.on_market([qc], later(1))  # 100 filled
    assert errors(v.place(order(1, "SELL", "300", "LMT", "499.00"), later(2))) == [105]
    assert errors(v.place(order(1, "BUY", "300", "LMT", "99", con_id=AAPL.con_id), later(2))) == [
        105
    ]
    assert errors(v.place(order(1, "BUY", "50", "LMT", "499.00"), later(2))) == [201]
    assert errors(v.place(order(1, "BUY", "300", "LMT", "499.005"), later(2))) == [110]
    snap = v.order(1, 1)
    assert snap is not None and snap.status == OrderStatusName.SUBMITTED
    assert snap.request.total_qty == D(300) and snap.filled == D(100)
    # reducing to exactly the filled quantity completes the order
    ev = v.place(order(1, "BUY", "100", "LMT", "499.00"), later(3))
    assert statuses(ev) == ["Filled"]


def test_cancel_races_and_duplicate_ids() -> None:
    v, _ = make()
    v.place(order(1, "BUY", "100", "LMT", "499.00"), T0)
    ev = v.cancel(1, 1, later(1))
    assert statuses(ev) == ["Cancelled"] and errors(ev) == [202]
    err = next(e for e in ev if isinstance(e, VenueError))
    assert err.req_id == 1 and err.message.startswith("Order Canceled")
    v.place(order(2, "BUY", "100", "MKT"), T0)
    ev = v.cancel(1, 2, later(1))
    assert errors(ev) == [10148]
    msg = next(e for e in ev if isinstance(e, VenueError)).message
    assert msg == "OrderId 2 that needs to be cancelled cannot be cancelled, state: Filled."
    assert errors(v.cancel(1, 77, later(1))) == [10147]
    assert errors(v.cancel(1, 1, later(2))) == [10148]
    # A placeOrder for a finished id is a modification IB refuses: 104 for a filled order,
    # 103 for a cancelled one; an unknown id at or below the highest used is 103 too.
    assert errors(v.place(order(2, "BUY", "100", "MKT"), later(2))) == [104]
    assert errors(v.place(order(1, "BUY", "100", "LMT", "1.00"), later(2))) == [103]
    v.place(order(9, "BUY", "1", "LMT", "1.00"), later(2))
    assert errors(v.place(order(5, "BUY", "1", "LMT", "1.00"), later(2))) == [103]
    assert v.order(1, 5) is None
    # ids are per client: client 2 may use 1
    assert errors(v.place(order(1, "BUY", "1", "LMT", "1.00", client_id=2), later(2))) == []


def test_global_cancel_cancels_every_client() -> None:
    v, _ = make()
    v.place(order(1, "BUY", "100", "LMT", "499.00"), T0)
    v.place(order(5, "SELL", "100", "LMT", "501.00", client_id=2), T0)
    ev = v.global_cancel(later(1))
    assert errors(ev) == [202, 202]
    assert v.open_orders(None) == []


def test_close_auction_orders_cannot_be_cancelled_in_the_cutoff() -> None:
    """As at the exchanges: no MOC/LOC cancel in the last 10 minutes before the close; IB
    answers 161 and the order keeps working, while other orders cancel as usual."""
    v, market = make()
    market.close_at = later(5 * 60)
    v.place(order(1, "BUY", "100", "MOC"), T0)
    v.place(order(2, "BUY", "100", "LMT", "499.00"), T0)
    ev = v.cancel(1, 1, T0)
    assert errors(ev) == [161]
    assert next(e for e in ev if isinstance(e, VenueError)).message.startswith(
        "Cancel attempted when order is not in a cancellable state"
    )
    # An auction order waits for the cross as PreSubmitted, still working.
    assert v.order(1, 1).status == OrderStatusName.PRE_SUBMITTED  # type: ignore[union-attr]
    assert errors(v.global_cancel(later(1))) == [161, 202]
    assert [o.request.order_id for o in v.open_orders(1)] == [1]
    market.close_at = later(30 * 60)  # before the cutoff, the MOC cancels
    assert errors(v.cancel(1, 1, later(2))) == [202]


def test_validation_errors_carry_ib_codes() -> None:
    v, _ = make()
    assert errors(v.place(order(1, con_id=424242, lmt="1.00"), T0)) == [200]
    assert errors(v.place(order(2, "BUY", "100", "LMT", "500.001"), T0)) == [110]
    assert errors(v.place(order(3, "BUY", "100", "LMT"), T0)) == [321]
    assert errors(v.place(order(4, "BUY", "0", "MKT"), T0)) == [321]
    assert errors(v.place(order(5, "BUY", "100", "VWAP"), T0)) == [321]
    assert errors(v.place(order(6, "BUY", "100", "MKT", tif="GTD"), T0)) == [321]
    assert errors(v.place(order(7, "BUY", "100", "STP"), T0)) == [321]
    assert v.order(1, 2).status == OrderStatusName.CANCELLED  # type: ignore[union-attr]
    assert v.order(1, 1) is None  # unknown contract: the order never existed


def test_next_order_id_is_per_client_max_seen_plus_one() -> None:
    v, _ = make()
    assert v.next_order_id(1) == 1
    v.place(order(7, "BUY", "1", "LMT", "1.00"), T0)
    v.place(order(3, "BUY", "1", "LMT", "1.00"), T0)
    assert v.next_order_id(1) == 8 and v.next_order_id(2) == 1


def test_open_and_completed_orders_and_routes() -> None:
    v, _ = make()
    v.place(order(1, "BUY", "100", "LMT", "499.00", client_id=1), T0)
    v.place(order(2, "BUY", "100", "LMT", "499.00", client_id=2), T0)
    ev = v.place(order(3, "BUY", "10", "MKT", client_id=2, route="ISLAND"), T0)
    assert [e.execution.exchange for e in ev if isinstance(e, Executed)] == ["ISLAND"]
    assert [s.request.order_id for s in v.open_orders(2)] == [2]
    assert len(v.open_orders(None)) == 2
    assert [s.request.order_id for s in v.completed_orders()] == [3]
    snap = v.completed_orders()[0]
    assert snap.completed_time == T0 and snap.commission is not None


def test_the_venue_watches_con_ids_while_orders_work_on_them() -> None:
    v, m = make()
    v.place(order(1, "BUY", "100", "LMT", "499.00"), T0)
    v.place(order(2, "BUY", "100", "LMT", "498.00"), T0)
    assert m.watching == {SPY.con_id: 1}
    v.cancel(1, 1, later(1))
    assert m.watching == {SPY.con_id: 1}
    v.cancel(1, 2, later(1))
    assert m.watching == {}


def test_option_tick_size_depends_on_price_and_class() -> None:
    aapl_call = replace(CALL_600, con_id=910001, symbol="AAPL", trading_class="AAPL")
    m = standard_market()
    m.set_book(aapl_call.con_id, T0, [("3.00", "10")], [("3.20", "10")])
    v, _ = make_venue(SPY, aapl_call, CALL_600, market=m)
    kw: dict[str, Any] = {"con_id": aapl_call.con_id, "symbol": "AAPL", "sec_type": SecType.OPT}
    assert errors(v.place(order(1, "BUY", "1", "LMT", "3.02", **kw), T0)) == [110]
    assert errors(v.place(order(2, "BUY", "1", "LMT", "3.05", **kw), T0)) == []
    assert errors(v.place(order(3, "BUY", "1", "LMT", "2.99", **kw), T0)) == []
    # SPY options trade in pennies at any price
    assert errors(v.place(order(4, "BUY", "1", "LMT", "5.03", con_id=CALL_600.con_id), T0)) == []


def test_direct_route_must_be_a_valid_exchange_of_the_contract() -> None:
    v, _ = make()
    assert errors(v.place(order(1, "BUY", "10", "MKT", route="BOX"), T0)) == [200]
    assert v.order(1, 1) is None
    ev = v.place(order(2, "BUY", "10", "MKT", route="ARCA"), T0)
    assert errors(ev) == [] and [e.execution.exchange for e in ev if isinstance(e, Executed)] == [
        "ARCA"
    ]


def test_event_order_of_a_fill_is_exec_status_commission_position() -> None:
    v, _ = make()
    ev = v.place(order(1, "BUY", "100", "MKT"), T0)
    assert [type(e).__name__ for e in ev] == [
        "OrderChanged",  # openOrder + orderStatus Submitted
        "Executed",
        "OrderChanged",  # Filled
        "Commissioned",
        "PositionChanged",
    ]
    commissioned = ev[3]
    executed = ev[1]
    assert isinstance(commissioned, Commissioned) and isinstance(executed, Executed)
    assert commissioned.report.exec_id == executed.execution.exec_id
    assert commissioned.client_id == 1


def test_modifying_a_trail_amount_moves_the_stop_at_once() -> None:
    v, m = make()
    v.place(order(1, "SELL", "100", "TRAIL", aux="2.00"), T0)  # last 500.00 -> stop 498.00
    assert v._orders[(1, 1)].trail_stop == D("498.00")
    ev = v.place(order(1, "SELL", "100", "TRAIL", aux="0.50"), later(1))
    assert statuses(ev) == ["PreSubmitted"]
    assert v._orders[(1, 1)].trail_stop == D("499.50")
    qc = m.set_book(SPY.con_id, later(2), [("499.48", "100")], [("499.52", "100")], last="499.50")
    assert fills(v.on_market([qc], later(2))) == [(D(100), D("499.48"))]


def test_modifying_a_stop_into_a_limit_makes_it_submitted() -> None:
    v, _ = make()
    v.place(order(1, "BUY", "100", "STP", aux="510.00"), T0)
    assert v.order(1, 1).status == OrderStatusName.PRE_SUBMITTED  # type: ignore[union-attr]
    ev = v.place(order(1, "BUY", "100", "LMT", "499.00"), later(1))
    assert statuses(ev) == ["Submitted"]


def test_an_order_for_another_account_is_refused() -> None:
    v, _ = make()
    assert errors(v.place(order(1, "BUY", "1", "MKT", account="U999"), T0)) == [321]
    assert errors(v.place(order(2, "BUY", "1", "MKT", account="DU1234567"), T0)) == []


def test_trails_and_pegs_round_with_the_increment_at_their_own_price() -> None:
    """An option outside the penny classes trades in $0.05 from $3 and $0.01 below: a trailing
    stop or peg is rounded on the grid of the price it lands on, not of the quote it follows."""
    nickel_class = replace(CALL_600, trading_class="SPYX")
    inc = partial(price_increment, nickel_class)
    assert inc(D("3.10")) == D("0.05") and inc(D("2.97")) == D("0.01")
    # sell trail 0.13 under a 3.10 high: 2.97 is valid below $3 (the quote's $0.05 grid said 2.95)
    assert trail_stop(False, D("3.10"), D("0.13"), None, inc) == D("2.97")
    # buy trail 0.13 over a 2.90 low: 3.03 is off the $0.05 grid, rounded up to 3.05
    assert trail_stop(True, D("2.90"), D("0.13"), None, inc) == D("3.05")
    q = Quote(
        con_id=nickel_class.con_id,
        ts=T0,
        bid=D("2.95"),
        ask=D("3.05"),
        bid_size=D(10),
        ask_size=D(10),
        last=D(0),
        last_size=D(0),
        volume=D(0),
        high=D(0),
        low=D(0),
        close=D(0),
        open=D(0),
        halted=HaltState.TRADING,
    )
    # a buy peg at mid 3.00 less 0.02 lands at 2.98, a valid price on the cent grid below $3
    assert peg_price("PEG MID", True, q, D("0.02"), None, inc) == D("2.98")
    # a sell peg at mid plus 0.02 is 3.02, rounded up on the nickel grid that applies there
    assert peg_price("PEG MID", False, q, D("0.02"), None, inc) == D("3.05")
