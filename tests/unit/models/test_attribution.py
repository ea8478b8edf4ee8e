"""P&L attributed to signals: FIFO across signals within a position, adding up to the ledger's
average-cost figures exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from models.attribution import SignalFill, attribute
from models.fills import FillRecord, Side, position_from_fills

D = Decimal
T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


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


def test_a_partial_close_is_taken_from_the_oldest_signal_first() -> None:
    fills = [
        sf(1, Side.BUY, "100", "10", "a"),
        sf(2, Side.BUY, "100", "12", "b"),  # avg 11
        sf(3, Side.SELL, "150", "13", "exit"),  # 100 of a, 50 of b, each earns 2 a share
    ]
    out = attribute(fills)
    assert out.position.realized_pl == D(300)
    shares = {k: (v.realized, v.fees, v.open_quantity) for k, v in out.shares.items()}
    assert shares == {
        "a": (D(200), D(1), D(0)),
        "b": (D(100), D(1), D(50)),
        "exit": (D(0), D(1), D(0)),
    }


def test_a_flip_closes_every_lot_and_opens_one_for_the_flipping_signal() -> None:
    fills = [
        sf(1, Side.SELL, "2", "5.00", "short", mult="100"),
        sf(2, Side.BUY, "5", "4.00", "flip", mult="100"),
    ]
    out = attribute(fills)
    assert out.shares["short"].realized == D(200)
    assert out.shares["flip"].open_quantity == D(3)
    assert out.position.quantity == D(3)


def test_a_correction_replaces_the_fill_it_corrects() -> None:
    fills = [
        sf(1, Side.BUY, "10", "10", "a", exec_id="x.01"),
        sf(1, Side.BUY, "10", "11", "a", exec_id="x.02", fee="2"),
        sf(2, Side.SELL, "10", "12", None),
    ]
    out = attribute(fills)
    assert out.shares["a"].realized == D(10)
    assert out.shares["a"].fees == D(2)
    assert out.shares["UNATTRIBUTED"].fees == D(1)


raw_fills = st.lists(
    st.tuples(
        st.booleans(),
        st.integers(min_value=1, max_value=200),
        st.decimals(min_value=D("0.01"), max_value=D("500"), places=2),
        st.sampled_from(["s1", "s2", "s3", None]),
    ),
    min_size=1,
    max_size=40,
)


@given(raw_fills, st.sampled_from(["1", "100"]))
def test_signal_shares_add_up_to_the_position(
    raw: list[tuple[bool, int, Decimal, str | None]], mult: str
) -> None:
    fills = [
        sf(i, Side.BUY if b else Side.SELL, str(q), str(p), s, fee="0.35", mult=mult)
        for i, (b, q, p, s) in enumerate(raw)
    ]
    out = attribute(fills)
    ledger = position_from_fills(f.fill for f in fills)
    assert out.position == ledger
    assert sum((s.realized for s in out.shares.values()), D(0)) == ledger.realized_pl
    assert sum((s.fees for s in out.shares.values()), D(0)) == ledger.commissions
    assert sum((s.open_quantity for s in out.shares.values()), D(0)) == ledger.quantity
    # Every signal still holding something holds it on the position's side.
    for share in out.shares.values():
        assert share.open_quantity == 0 or (share.open_quantity > 0) == (ledger.quantity > 0)
