"""The session close and the next session at the venue: DAY orders expire (a stock's with
outsideRth at the end of the extended session), options expiring that day leave the account
(exercised or assigned in the money at the strike, worthless otherwise) and their working orders
are cancelled, expired contracts are unknown from then on, and the next session works the
orders that wait for it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from tests.sim.engine_kit import (
    AAPL,
    SPY,
    T0,
    BookMarket,
    error_codes,
    executions,
    make_venue,
    order,
    standard_market,
)
from tws_sim.engine import Venue
from tws_sim.types import (
    ComboLegSpec,
    Instrument,
    OrderChanged,
    OrderStatusName,
    PositionChanged,
    Right,
    SecType,
    VenueEvent,
)

D = Decimal
OPT = SecType.OPT
# T0 is Friday 2026-11-20, 10:00 ET; that day's regular close is 16:00 ET (21:00 UTC)
CLOSE = datetime(2026, 11, 20, 21, 0, 1, tzinfo=UTC)
AFTER_HOURS_END = datetime(2026, 11, 21, 1, 0, 1, tzinfo=UTC)  # 20:00:01 ET
MONDAY_OPEN = datetime(2026, 11, 23, 14, 30, 1, tzinfo=UTC)


def option(con_id: int, strike: str, right: Right, expiry: date = date(2026, 11, 20)) -> Instrument:
    return Instrument(
        con_id=con_id,
        symbol="SPY",
        sec_type=OPT,
        currency="USD",
        exchange="SMART",
        primary_exchange="",
        local_symbol=f"SPY   {expiry:%y%m%d}{right.value}{int(D(strike) * 1000):08d}",
        trading_class="SPY",
        multiplier=100,
        min_tick=D("0.01"),
        long_name="SPY option",
        valid_exchanges=("SMART", "CBOE"),
        expiry=expiry,
        strike=D(strike),
        right=right,
        underlying_con_id=SPY.con_id,
    )


C490 = option(910001, "490", Right.CALL)  # SPY closes at 500.00: 10 in the money
P510 = option(910002, "510", Right.PUT)  # 10 in the money
C520 = option(910003, "520", Right.CALL)  # out of the money
P480 = option(910004, "480", Right.PUT)  # out of the money
C500 = option(910005, "500", Right.CALL)  # at the money: not a cent in, expires
NEXT = option(910006, "490", Right.CALL, date(2026, 11, 27))  # next week's: unaffected


def market() -> BookMarket:
    m = standard_market()
    for inst, bid, ask in (
        (C490, "10.00", "10.10"),
        (P510, "10.00", "10.10"),
        (C520, "0.50", "0.55"),
        (P480, "0.40", "0.45"),
        (C500, "2.00", "2.05"),
        (NEXT, "11.00", "11.10"),
    ):
        m.set_book(inst.con_id, T0, [(bid, "50")], [(ask, "50")])
    return m


def venue(m: BookMarket, state_dir: Path | None = None) -> Venue:
    return make_venue(SPY, AAPL, C490, P510, C520, P480, C500, NEXT, market=m, state_dir=state_dir)[
        0
    ]


def opt_order(oid: int, action: str, qty: str, inst: Instrument, **kw: object):
    return order(oid, action, qty, "MKT", con_id=inst.con_id, sec_type=OPT, **kw)


def trade_the_day(v: Venue) -> None:
    """Positions in every kind of expiring option, and working orders of every kind."""
    v.on_market([], T0)  # the venue sees the session open
    v.place(opt_order(1, "BUY", "2", C490), T0)  # long ITM call -> exercised
    v.place(opt_order(2, "SELL", "1", P510), T0)  # short ITM put -> assigned
    v.place(opt_order(3, "BUY", "3", C520), T0)  # long OTM call -> expires
    v.place(opt_order(4, "SELL", "2", P480), T0)  # short OTM put -> expires
    v.place(opt_order(5, "BUY", "1", C500), T0)  # at the money -> expires
    v.place(opt_order(6, "BUY", "1", NEXT), T0)  # next week's: stays
    # working orders
    v.place(order(10, "BUY", "1", "LMT", "0.05", con_id=C520.con_id, sec_type=OPT, tif="GTC"), T0)
    v.place(order(11, "BUY", "100", "LMT", "450.00", tif="DAY"), T0)
    v.place(order(12, "BUY", "100", "LMT", "451.00", tif="GTC"), T0)
    v.place(order(13, "BUY", "100", "LMT", "452.00", tif="DAY", outside_rth=True), T0)
    legs = (ComboLegSpec(C520.con_id, 1, "BUY"), ComboLegSpec(NEXT.con_id, 1, "SELL"))
    v.place(
        order(
            14,
            "BUY",
            "1",
            "LMT",
            "-20.00",
            con_id=0,
            sec_type=SecType.BAG,
            combo_legs=legs,
            tif="GTC",
        ),
        T0,
    )
    v.place(order(15, "BUY", "1", "LMT", "1.00", con_id=NEXT.con_id, sec_type=OPT, tif="GTC"), T0)
    v.place(order(16, "SELL", "1", "LMT", "15.00", con_id=C490.con_id, sec_type=OPT, tif="DAY"), T0)


def status(v: Venue, oid: int) -> OrderStatusName:
    snap = v.order(1, oid)
    assert snap is not None
    return snap.status


def cash(v: Venue) -> D:
    return D(v.account_values(CLOSE)["TotalCashValue"][0])


def held(v: Venue) -> dict[int, tuple[D, D]]:
    return {inst.con_id: (qty, avg) for inst, qty, avg in v.positions()}


def test_the_close_expires_day_orders_and_settles_the_days_options() -> None:
    m = market()
    v = venue(m)
    trade_the_day(v)
    cash_before = cash(v)
    realized_before = v.pnl(T0)[2]
    m.open = False
    ev = v.on_market([], CLOSE)
    # no execution for any of it: IB reports exercise, assignment and expiry as position changes
    assert executions(ev) == []
    cancelled = [
        e.snapshot.request.order_id
        for e in ev
        if isinstance(e, OrderChanged) and e.snapshot.status == OrderStatusName.CANCELLED
    ]
    # DAY orders (the stock's, the expiring option's), then every order for an expired contract
    assert cancelled == [11, 16, 10, 14]
    assert error_codes(ev) == []  # expiries are Cancelled without a 202
    for oid in (12, 13, 15):  # GTC, outsideRth DAY (until 20:00), next week's option
        assert status(v, oid) == OrderStatusName.SUBMITTED
    changes = [(e.con_id, e.position) for e in ev if isinstance(e, PositionChanged)]
    assert changes == [
        (C490.con_id, D(0)),
        (SPY.con_id, D(200)),  # 2 calls exercised: 200 shares bought at 490
        (P510.con_id, D(0)),
        (SPY.con_id, D(300)),  # 1 put assigned: 100 shares bought at 510
        (C520.con_id, D(0)),
        (P480.con_id, D(0)),
        (C500.con_id, D(0)),
    ]
    pos = held(v)
    assert pos[SPY.con_id] == (D(300), (D(200) * 490 + D(100) * 510) / 300)
    assert pos[NEXT.con_id][0] == D(1)
    # the stock is paid at the strikes; the options leave at 0 (no commission)
    assert cash(v) == cash_before - D(200) * 490 - D(100) * 510
    # premiums: paid ones realized as losses, received ones as gains (average cost, fees in)
    premium = {
        C490.con_id: -(D("10.10") * 200),
        P510.con_id: D("10.00") * 100,
        C520.con_id: -(D("0.55") * 300),
        P480.con_id: D("0.40") * 200,
        C500.con_id: -(D("2.05") * 100),
    }
    fees = D("1.30") + D(1) + D("1.95") + D("1.30") + D(1)
    assert v.pnl(CLOSE)[2] - realized_before == sum(premium.values()) - fees
    # expired contracts are gone: an order for one is 200, also in a combo
    assert error_codes(v.place(opt_order(20, "BUY", "1", C490), CLOSE)) == [200]
    legs = (ComboLegSpec(C490.con_id, 1, "BUY"), ComboLegSpec(NEXT.con_id, 1, "SELL"))
    bag = order(21, "BUY", "1", "MKT", con_id=0, sec_type=SecType.BAG, combo_legs=legs)
    assert error_codes(v.place(bag, CLOSE)) == [200]
    assert v.is_expired(C490) and not v.is_expired(NEXT) and not v.is_expired(SPY)
    assert v.expired_through == date(2026, 11, 20)
    # reqExecutions' view holds only the day's real executions
    assert all(x.order_id for x, _c in v.executions())


def test_after_hours_day_orders_expire_at_the_end_of_the_extended_session() -> None:
    m = market()
    v = venue(m)
    trade_the_day(v)
    m.open = False
    v.on_market([], CLOSE)
    v.on_market([], datetime(2026, 11, 21, 0, 59, tzinfo=UTC))  # 19:59 ET
    assert status(v, 13) == OrderStatusName.SUBMITTED
    ev = v.on_market([], AFTER_HOURS_END)
    assert [e.snapshot.request.order_id for e in ev if isinstance(e, OrderChanged)] == [13]
    assert status(v, 13) == OrderStatusName.CANCELLED
    assert status(v, 12) == OrderStatusName.SUBMITTED  # GTC stays


def test_the_next_session_works_what_waited_and_settles_nothing_twice() -> None:
    m = market()
    v = venue(m)
    trade_the_day(v)
    m.open = False
    v.on_market([], CLOSE)
    # a DAY order placed after the close waits for the next session
    ev = v.place(order(30, "BUY", "10", "LMT", "600.00", tif="DAY"), CLOSE)
    assert executions(ev) == [] and status(v, 30) == OrderStatusName.PRE_SUBMITTED
    before = held(v)
    m.open = True
    ev = v.on_market([], MONDAY_OPEN)
    assert [x.execution.order_id for x in executions(ev)] == [30]
    assert not [e for e in ev if isinstance(e, PositionChanged) and e.con_id != SPY.con_id]
    assert held(v)[SPY.con_id][0] == before[SPY.con_id][0] + 10
    # the Monday close settles Monday's options only: Friday's stay settled
    m.open = False
    ev = v.on_market([], datetime(2026, 11, 23, 21, 0, 1, tzinfo=UTC))
    assert [e for e in ev if isinstance(e, PositionChanged)] == []
    assert status(v, 30) == OrderStatusName.FILLED and status(v, 12) == OrderStatusName.SUBMITTED


def test_settlements_and_expiries_survive_a_restart(tmp_path: Path) -> None:
    m = market()
    v1 = venue(m, tmp_path)
    trade_the_day(v1)
    m.open = False
    v1.on_market([], CLOSE)
    positions = held(v1)
    money = cash(v1)
    execs = v1.executions()
    v1.close()
    v2 = venue(m, tmp_path)
    assert held(v2) == positions and cash(v2) == money
    assert v2.executions() == execs
    assert v2.expired_through == date(2026, 11, 20)
    assert error_codes(v2.place(opt_order(40, "BUY", "1", C520), CLOSE)) == [200]
    # the after-hours DAY order still expires at 20:00
    ev = v2.on_market([], AFTER_HOURS_END)
    assert [e.snapshot.request.order_id for e in ev if isinstance(e, OrderChanged)] == [13]


def test_a_close_without_expiring_positions_changes_no_position() -> None:
    v, m = make_venue(SPY, AAPL)
    v.on_market([], T0)
    v.place(order(1, "BUY", "100", "MKT"), T0)
    m.open = False
    ev: list[VenueEvent] = v.on_market([], CLOSE)
    assert [e for e in ev if isinstance(e, PositionChanged)] == []
