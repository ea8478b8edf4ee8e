"""Attribution methods per strategy (FIFO, LIFO, pro-rata): each decides only *who* a reducing
fill's P&L belongs to, so under every method the signals' figures add up exactly to the
position's, and no signal ever holds less than nothing or the wrong side of the position."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.attribution import (
    Attribution,
    AttributionMethods,
    Lot,
    Method,
    MethodConfigError,
    SignalFill,
    attribute,
    close_lots,
    parse_method,
    parse_methods,
    pro_rata_takes,
)
from models.attribution_day import PositionAtClose, day_document, signal_lines
from models.fills import FillRecord, Side, position_from_fills

D = Decimal
T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
METHODS = list(Method)


def sf(
    i: int,
    side: Side,
    qty: str,
    price: str,
    signal: str | None,
    fee: str = "1",
    exec_id: str | None = None,
    mult: str = "1",
) -> SignalFill:
    return SignalFill(
        FillRecord(
            exec_id or f"e{i:04d}.01",
            side,
            D(qty),
            D(price),
            T0 + timedelta(seconds=i),
            D(mult),
            D(fee),
        ),
        signal,
    )


def split(out: Attribution) -> dict[str, tuple[Decimal, Decimal]]:
    """Per signal: (realized, open quantity)."""
    return {k: (v.realized, v.open_quantity) for k, v in out.shares.items()}


# Three signals buy at 10, 12 and 14 (average 12); an exit sells 150 at 13, a point a share.
THREE_LOTS = [
    sf(1, Side.BUY, "100", "10", "a"),
    sf(2, Side.BUY, "100", "12", "b"),
    sf(3, Side.BUY, "100", "14", "c"),
    sf(4, Side.SELL, "150", "13", "exit"),
]


def test_fifo_takes_the_oldest_lots_first() -> None:
    out = attribute(THREE_LOTS, Method.FIFO)
    assert split(out) == {
        "a": (D(100), D(0)),
        "b": (D(50), D(50)),
        "c": (D(0), D(100)),
        "exit": (D(0), D(0)),
    }
    assert out.method is Method.FIFO


def test_lifo_takes_the_newest_lots_first() -> None:
    out = attribute(THREE_LOTS, Method.LIFO)
    assert split(out) == {
        "a": (D(0), D(100)),
        "b": (D(50), D(50)),
        "c": (D(100), D(0)),
        "exit": (D(0), D(0)),
    }
    assert out.position.realized_pl == D(150)
    assert out.lots == [Lot("a", D(100)), Lot("b", D(50))]


def test_pro_rata_closes_every_signal_in_proportion() -> None:
    out = attribute(THREE_LOTS, Method.PRO_RATA)
    assert split(out) == {
        "a": (D(50), D(50)),
        "b": (D(50), D(50)),
        "c": (D(50), D(50)),
        "exit": (D(0), D(0)),
    }


def test_pro_rata_leftover_units_go_to_the_largest_remainders_then_the_earliest() -> None:
    # 70/20/10 of 100 at 10, 45 sold at 12 (2 a share): exactly 31.5, 9 and 4.5. Floors give
    # 31 + 9 + 4 = 44; the one share left goes to a remainder of a half, a's and c's tie, a
    # opened first: a 32, b 9, c 4.
    fills = [
        sf(1, Side.BUY, "70", "10", "a"),
        sf(2, Side.BUY, "20", "10", "b"),
        sf(3, Side.BUY, "10", "10", "c"),
        sf(4, Side.SELL, "45", "12", "exit"),
    ]
    out = attribute(fills, Method.PRO_RATA)
    assert split(out) == {
        "a": (D(64), D(38)),
        "b": (D(18), D(11)),
        "c": (D(8), D(6)),
        "exit": (D(0), D(0)),
    }
    assert out.position.realized_pl == D(90)


def test_pro_rata_one_share_each_of_three_two_sold() -> None:
    fills = [sf(i, Side.BUY, "1", "10", s) for i, s in enumerate("abc", 1)]
    out = attribute([*fills, sf(4, Side.SELL, "2", "11.5", "exit")], Method.PRO_RATA)
    assert split(out) == {
        "a": (D("1.5"), D(0)),
        "b": (D("1.5"), D(0)),
        "c": (D(0), D(1)),
        "exit": (D(0), D(0)),
    }


def test_pro_rata_holds_one_lot_per_signal() -> None:
    fills = [
        sf(1, Side.BUY, "10", "10", "a"),
        sf(2, Side.BUY, "10", "10", "b"),
        sf(3, Side.BUY, "10", "10", "a"),  # a now holds 20 of 30
        sf(4, Side.SELL, "15", "11", "exit"),
    ]
    out = attribute(fills, Method.PRO_RATA)
    assert out.lots == [Lot("a", D(10)), Lot("b", D(5))]
    assert split(out)["a"] == (D(10), D(10))


def test_lifo_on_a_short_then_a_flip_through_zero() -> None:
    # Short 5 at 20 and 5 at 22 (average 21); buy 6 at 19 covers 2 a share: LIFO b's 5 and
    # one of a's. Then buy 10 at 18: a's last 4 cover at 3 a share and the flipper opens 6.
    fills = [
        sf(1, Side.SELL, "5", "20", "a"),
        sf(2, Side.SELL, "5", "22", "b"),
        sf(3, Side.BUY, "6", "19", "cover"),
        sf(4, Side.BUY, "10", "18", "flip"),
    ]
    out = attribute(fills, Method.LIFO)
    assert split(out) == {
        "a": (D(2) + D(12), D(0)),
        "b": (D(10), D(0)),
        "cover": (D(0), D(0)),
        "flip": (D(0), D(6)),
    }
    assert out.position.quantity == D(6) and out.position.avg_price == D(18)
    assert out.lots == [Lot("flip", D(6))]


def test_fractional_quantities_split_to_their_finest_place() -> None:
    assert pro_rata_takes([D("0.5"), D("0.25")], D("0.5")) == [D("0.33"), D("0.17")]
    assert pro_rata_takes([D(3), D(1)], D(4)) == [D(3), D(1)]
    assert pro_rata_takes([D(3), D(1)], D(0)) == [D(0), D(0)]
    with pytest.raises(ValueError):
        pro_rata_takes([D(3), D(1)], D(5))


def test_close_lots_orders() -> None:
    lots = [Lot("a", D(-5)), Lot("b", D(-3)), Lot("c", D(-2))]
    assert close_lots(lots, D(6), Method.FIFO) == [D(5), D(1), D(0)]
    assert close_lots(lots, D(6), Method.LIFO) == [D(1), D(3), D(2)]
    assert close_lots(lots, D(6), Method.PRO_RATA) == [D(3), D(2), D(1)]


def test_methods_from_configuration_text() -> None:
    chosen = parse_methods("fifo", " Momentum_EQ=lifo, 0DTE_Scalp = Pro-Rata ,")
    assert chosen.for_strategy("Momentum_EQ") is Method.LIFO
    assert chosen.for_strategy("0DTE_Scalp") is Method.PRO_RATA
    assert chosen.for_strategy("momentum_eq") is Method.FIFO  # names are exact
    assert parse_methods("LIFO", "").for_strategy("any") is Method.LIFO
    assert parse_method("pro_rata") is Method.PRO_RATA
    for bad in ("A=lifx", "A", "=lifo", "A=lifo,A=fifo"):
        with pytest.raises(MethodConfigError):
            parse_methods("fifo", bad)
    with pytest.raises(MethodConfigError):
        parse_methods("average", "")


def test_the_day_document_records_each_strategys_method() -> None:
    fills = {
        (1, "S1"): THREE_LOTS,
        (1, "S2"): [
            sf(i + 10, f.fill.side, str(f.fill.shares), "12", f.signal_id)
            for i, f in enumerate(THREE_LOTS)
        ],
    }
    positions = [PositionAtClose(1, s, "SPY", D(1), D("12.50"), D(0)) for s in ("S1", "S2")]
    chosen = AttributionMethods(Method.FIFO, {"S2": Method.PRO_RATA})
    lines = signal_lines(positions, fills, chosen)
    doc = day_document(date(2026, 12, 3), T0, lines, None, chosen)
    assert doc["method"] == "fifo"
    assert doc["methods"] == {"S1": "fifo", "S2": "pro_rata"}
    rows = {(r["strategy"], r["signal_id"]): r for r in doc["rows"]}
    assert rows[("S1", "a")]["method"] == "fifo" and rows[("S2", "a")]["method"] == "pro_rata"
    # S1 FIFO: a closed whole; S2 pro-rata: each of a, b, c holds 50.
    assert rows[("S1", "a")]["realized"] == "100" and rows[("S1", "c")]["realized"] == "0"
    assert {rows[("S2", s)]["unrealized"] for s in "abc"} == {"25"}
    assert {p["method"] for p in doc["positions"] if p["strategy"] == "S2"} == {"pro_rata"}


# --- properties -------------------------------------------------------------------------------

raw_fills = st.lists(
    st.tuples(
        st.booleans(),
        st.integers(min_value=1, max_value=200),
        st.decimals(min_value=D("0.01"), max_value=D("500"), places=2),
        st.sampled_from(["s1", "s2", "s3", "s4", None]),
        st.sampled_from(["0", "0.35", "1.07"]),
    ),
    min_size=1,
    max_size=40,
)


def _fills(raw: list[tuple[bool, int, Decimal, str | None, str]], mult: str) -> list[SignalFill]:
    return [
        sf(i, Side.BUY if b else Side.SELL, str(q), str(p), s, fee=fee, mult=mult)
        for i, (b, q, p, s, fee) in enumerate(raw)
    ]


def _check_adds_up(out: Attribution, fills: list[SignalFill]) -> None:
    ledger = position_from_fills(f.fill for f in fills)
    assert out.position == ledger
    assert sum((s.realized for s in out.shares.values()), D(0)) == ledger.realized_pl
    assert sum((s.fees for s in out.shares.values()), D(0)) == ledger.commissions
    assert sum((s.open_quantity for s in out.shares.values()), D(0)) == ledger.quantity
    assert sum((lot.quantity for lot in out.lots), D(0)) == ledger.quantity
    for lot in out.lots:
        # A lot is never empty, never negative in size, always on the position's side.
        assert lot.quantity != 0 and (lot.quantity > 0) == (ledger.quantity > 0)
    for share in out.shares.values():
        assert share.open_quantity == 0 or (share.open_quantity > 0) == (ledger.quantity > 0)


@given(raw_fills, st.sampled_from(["1", "100"]), st.sampled_from(METHODS))
def test_every_method_adds_up_to_the_position(
    raw: list[tuple[bool, int, Decimal, str | None, str]], mult: str, method: Method
) -> None:
    fills = _fills(raw, mult)
    _check_adds_up(attribute(fills, method), fills)


@settings(max_examples=60)
@given(raw_fills, st.sampled_from(METHODS))
def test_no_lot_goes_negative_at_any_point(
    raw: list[tuple[bool, int, Decimal, str | None, str]], method: Method
) -> None:
    # Every prefix of the sequence is a position as it stood after that fill (buys, sells,
    # shorts, covers, flips through zero along the way).
    fills = _fills(raw, "1")
    for n in range(1, len(fills) + 1):
        _check_adds_up(attribute(fills[:n], method), fills[:n])


@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.decimals(min_value=D("0.01"), max_value=D("50"), places=2),
            st.decimals(min_value=D("0.01"), max_value=D("500"), places=4),
            st.sampled_from(["s1", "s2", "s3"]),
        ),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(METHODS),
)
def test_fractional_quantities_add_up_too(
    raw: list[tuple[bool, Decimal, Decimal, str]], method: Method
) -> None:
    fills = [
        sf(i, Side.BUY if b else Side.SELL, str(q), str(p), s, fee="0.01")
        for i, (b, q, p, s) in enumerate(raw)
    ]
    _check_adds_up(attribute(fills, method), fills)


@given(raw_fills)
def test_methods_only_move_pnl_between_signals(
    raw: list[tuple[bool, int, Decimal, str | None, str]],
) -> None:
    fills = _fills(raw, "100")
    outs = [attribute(fills, m) for m in METHODS]
    assert len({o.position for o in outs}) == 1
    # Fees follow the fill that paid them, whatever the method.
    assert len({tuple(sorted((k, v.fees) for k, v in o.shares.items())) for o in outs}) == 1


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=4),
    st.data(),
)
def test_pro_rata_takes_are_whole_units_within_one_of_the_exact_share(
    held_units: list[int], places: int, data: st.DataObject
) -> None:
    unit = D(1).scaleb(-places)
    held = [D(u) * unit for u in held_units]
    total_units = sum(held_units)
    closing = D(data.draw(st.integers(min_value=0, max_value=total_units))) * unit
    takes = pro_rata_takes(held, closing)
    assert sum(takes, D(0)) == closing
    for h, t in zip(held, takes, strict=True):
        assert D(0) <= t <= h
        assert t % unit == 0
        if total_units:
            assert abs(t - closing * h / sum(held, D(0))) < unit
