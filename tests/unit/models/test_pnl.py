"""The books' pure P&L: unrealized from a mark (long, short, multiplier), net, marks and their
staleness, the position-state rule, risk tags, aggregation and the IB comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from models.fills import FillRecord, Side, position_from_fills
from models.market import MarketSnapshot
from models.pnl import (
    Holding,
    Mark,
    PositionStatus,
    WorkingOrder,
    aggregate,
    by_signal,
    by_strategy,
    choose_mark,
    compare_with_ib,
    delta_sign,
    hedged_keys,
    line_for,
    net,
    position_state,
    risk_tags,
    unrealized,
)

D = Decimal
T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)

prices = st.decimals(min_value=D("0.01"), max_value=D("999.99"), places=2)
quantities = st.integers(min_value=1, max_value=5000).map(D)
multipliers = st.sampled_from([D(1), D(100), D(50)])


def test_unrealized_long_and_short_with_multiplier() -> None:
    assert unrealized(D(100), D("10.00"), D(1), D("10.50")) == D("50.00")
    assert unrealized(D(-100), D("10.00"), D(1), D("10.50")) == D("-50.00")
    assert unrealized(D(2), D("1.20"), D(100), D("1.50")) == D("60.00")
    assert unrealized(D(-3), D("1.20"), D(100), D("1.00")) == D("60.00")
    assert unrealized(D(0), None, D(100), D("1.00")) == D(0)


@given(quantities, prices, prices, multipliers)
def test_a_short_is_the_mirror_of_a_long(
    q: Decimal, avg: Decimal, mark: Decimal, m: Decimal
) -> None:
    assert unrealized(-q, avg, m, mark) == -unrealized(q, avg, m, mark)
    assert unrealized(q, avg, m, avg) == 0
    assert unrealized(q, avg, m, mark) == unrealized(q, avg, D(1), mark) * m


def test_net_is_realized_plus_unrealized_less_fees_and_financing() -> None:
    assert net(D("100"), D("-20.5"), D("3.25"), D("1.10")) == D("75.15")
    assert net(D("100"), None, D("3"), D(0)) == D("97")


fill_lists = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=1, max_value=300), prices),
    min_size=1,
    max_size=30,
)


@given(fill_lists, prices, multipliers)
def test_realized_plus_unrealized_is_the_cash_flow_of_the_fills_marked(
    raw: list[tuple[bool, int, Decimal]], mark: Decimal, m: Decimal
) -> None:
    """Whatever the mix of buys, sells, shorts and covers: realized + unrealized at a mark is the
    money paid and received plus the open quantity valued at the mark (average cost only moves
    P&L between realized and unrealized, never creates it)."""
    fills = [
        FillRecord(
            f"e{i:04d}.01",
            Side.BUY if buy else Side.SELL,
            D(q),
            p,
            T0 + timedelta(seconds=i),
            m,
            D("1.00"),
        )
        for i, (buy, q, p) in enumerate(raw)
    ]
    pos = position_from_fills(fills)
    cash = sum((-f.signed_shares * f.price * m for f in fills), D(0))
    expected = cash + pos.quantity * mark * m
    got = pos.realized_pl + unrealized(pos.quantity, pos.avg_price, m, mark)
    # The ledger's average is kept to 10 places: the only rounding there is.
    assert abs(got - expected) < D("0.0001")
    line = line_for(
        con_id=1,
        strategy="S",
        symbol="X",
        quantity=pos.quantity,
        avg_cost=pos.avg_price,
        multiplier=m,
        realized=pos.realized_pl,
        fees=pos.commissions,
        financing=D("0.5"),
        mark=mark,
    )
    assert abs(line.net - (expected - D(len(fills)) - D("0.5"))) < D("0.0001")


def snap(age_s: float, **prices_: str) -> MarketSnapshot:
    return MarketSnapshot.from_fields(
        756733, {"ts": (T0 - timedelta(seconds=age_s)).isoformat(), **prices_}
    )  # type: ignore[return-value]


def test_mark_is_the_mid_else_the_last_and_a_stale_one_is_not_used() -> None:
    assert choose_mark(snap(1, bid="10.00", ask="10.02", last="9.99"), None, T0) == Mark(
        D("10.01"), T0 - timedelta(seconds=1)
    )
    assert choose_mark(snap(1, last="9.99"), None, T0) == Mark(D("9.99"), T0 - timedelta(seconds=1))
    previous = Mark(D("9.50"), T0 - timedelta(minutes=5))
    stale = choose_mark(snap(120, bid="10.00", ask="10.02"), previous, T0)
    assert stale == Mark(D("9.50"), previous.at, True)
    assert choose_mark(snap(120, bid="10.00", ask="10.02"), None, T0) is None
    assert choose_mark(None, None, T0) is None
    # A fresh snapshot without any price keeps the previous mark, flagged.
    assert choose_mark(snap(1), previous, T0) == Mark(D("9.50"), previous.at, True)


def test_position_state_rule_in_order() -> None:
    sell, buy = WorkingOrder(False, D(10)), WorkingOrder(True, D(10))
    assert position_state(D(0), [sell], True) is PositionStatus.CLOSED
    assert position_state(D(100), [sell, buy], True) is PositionStatus.CLOSING
    assert position_state(D(-100), [buy], False) is PositionStatus.CLOSING
    assert position_state(D(100), [buy], True) is PositionStatus.PARTIAL
    assert position_state(D(-100), [sell], False) is PositionStatus.PARTIAL
    assert position_state(D(100), [WorkingOrder(False, D(0))], True) is PositionStatus.HEDGED
    assert position_state(D(100), [], False) is PositionStatus.OPEN


def test_hedged_means_the_strategy_holds_the_other_delta_sign_in_the_underlying() -> None:
    stock = Holding(1, "S", "SPY", delta_sign(D(100), "STK", None))
    put = Holding(2, "S", "SPY", delta_sign(D(1), "OPT", "P"))
    other_strategy_put = Holding(3, "T", "SPY", delta_sign(D(1), "OPT", "P"))
    call = Holding(4, "T", "QQQ", delta_sign(D(-1), "OPT", "C"))
    assert hedged_keys([stock, put, other_strategy_put, call]) == {(1, "S"), (2, "S")}
    assert delta_sign(D(-2), "OPT", "P") == 1
    assert delta_sign(D(0), "STK", None) == 0


def test_risk_tags() -> None:
    fresh = Mark(D(1), T0)
    assert risk_tags(D(-5), "OPT", fresh, True, False) == ["hedged", "option", "short"]
    assert risk_tags(D(5), "STK", None, False, True) == ["halted", "no_mark"]
    assert risk_tags(D(5), "STK", Mark(D(1), T0, True), False, False) == ["stale_mark"]
    assert risk_tags(D(0), "STK", None, False, False) == []


def test_aggregation_keeps_unknown_marks_visible() -> None:
    a = line_for(
        con_id=1,
        strategy="S",
        symbol="A",
        quantity=D(10),
        avg_cost=D(5),
        multiplier=None,
        realized=D("1.5"),
        fees=D("0.5"),
        financing=D(0),
        mark=D(6),
        signal_id="sig-1",
    )
    b = line_for(
        con_id=2,
        strategy="S",
        symbol="B",
        quantity=D(10),
        avg_cost=D(5),
        multiplier=None,
        realized=D("2"),
        fees=D("1"),
        financing=D("0.25"),
        mark=None,
    )
    c = line_for(
        con_id=2,
        strategy="T",
        symbol="B",
        quantity=D(0),
        avg_cost=None,
        multiplier=None,
        realized=D("-3"),
        fees=D("1"),
        financing=D(0),
        mark=None,
        signal_id="sig-1",
    )
    s, t = aggregate([a, b, c], by_strategy)
    assert (s.key, s.realized, s.unrealized, s.fees, s.financing, s.unknown_marks) == (
        "S",
        D("3.5"),
        D(10),
        D("1.5"),
        D("0.25"),
        1,
    )
    assert s.net == D("11.75")
    assert (t.unrealized, t.net) == (D(0), D(-4))
    signals = {x.key: x.net for x in aggregate([a, b, c], by_signal)}
    assert signals == {"UNATTRIBUTED": D("0.75"), "sig-1": D("7")}


@given(
    st.lists(st.tuples(st.integers(1, 3), st.sampled_from("ST"), prices, prices), max_size=20),
    st.randoms(),
)
def test_aggregation_does_not_depend_on_order(
    rows: list[tuple[int, str, Decimal, Decimal]], rnd: object
) -> None:
    lines = [
        line_for(
            con_id=c,
            strategy=s,
            symbol=None,
            quantity=D(1),
            avg_cost=p,
            multiplier=D(100),
            realized=r,
            fees=D("0.01"),
            financing=D(0),
            mark=p + 1,
        )
        for c, s, p, r in rows
    ]
    shuffled = list(lines)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    first = [(t.key, t.realized, t.unrealized, t.net) for t in aggregate(lines, by_strategy)]
    second = [(t.key, t.realized, t.unrealized, t.net) for t in aggregate(shuffled, by_strategy)]
    assert first == second


def test_ib_comparison_flags_over_ten_dollars_per_contract() -> None:
    ours = [(1, D("100")), (1, D("5")), (2, D("50")), (3, None), (4, D(1))]
    out = {c.con_id: c for c in compare_with_ib(ours, {1: D("95.5"), 2: D("39.99"), 3: D(0)})}
    assert set(out) == {1, 2}
    assert (out[1].difference, out[1].flagged) == (D("9.5"), False)
    assert (out[2].difference, out[2].flagged) == (D("10.01"), True)
