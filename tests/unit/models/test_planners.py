"""Child-order templates and their pricing: unit cases and properties (issue 11, item 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.child_orders import (
    Action,
    ChildOrder,
    Hold,
    Pricing,
    Progress,
    Skip,
    Template,
    price,
)
from models.market import MarketSnapshot, band_limit, slippage_bps
from models.planners import Exit, bracket, pegged_mid, reprice, sweep, tranches, twap
from models.planners.twap import slice_count, slice_quantities

T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
D = Decimal


def snap(
    bid: str = "100.00",
    ask: str = "100.02",
    *,
    at: datetime = T0,
    bar: str | None = "5000",
    halted: bool = False,
) -> MarketSnapshot:
    return MarketSnapshot(
        con_id=1,
        as_of=at,
        bid=D(bid),
        ask=D(ask),
        bar_volume=None if bar is None else D(bar),
        halted=halted,
    )


def progress(filled: str = "0", target: str = "1000", bps: str = "25") -> Progress:
    return Progress(filled=D(filled), target=D(target), reference=None, max_slippage_bps=D(bps))


def test_snapshot_reads_the_bridges_hash_and_knows_its_age() -> None:
    fields = {
        "bid": "600.01",
        "ask": "600.03",
        "last": "600.02",
        "bar_volume": "12000",
        "halted": "0",
        "ts": "2026-12-03T15:00:00+00:00",
    }
    got = MarketSnapshot.from_fields(756733, fields)
    assert got is not None
    assert got.mid == D("600.02") and got.bar_volume == D(12000) and not got.halted
    assert got.age(T0 + timedelta(seconds=3)) == timedelta(seconds=3)
    assert got.stale(T0 + timedelta(seconds=6), timedelta(seconds=5))
    assert MarketSnapshot.from_fields(1, {"bid": "1"}) is None  # no time stamp: no snapshot
    one_sided = MarketSnapshot.from_fields(1, {"bid": "1", "ask": "0", "ts": fields["ts"]})
    assert one_sided is not None and one_sided.mid is None


def test_stale_halted_or_one_sided_markets_hold_the_child() -> None:
    (plan,) = pegged_mid(Action.BUY, T0)
    assert isinstance(price(plan, progress(), None, T0), Hold)
    later = T0 + timedelta(seconds=6)
    assert "old" in price(plan, progress(), snap(), later).reason  # type: ignore[union-attr]
    assert price(plan, progress(), snap(halted=True), T0) == Hold("peg", "instrument halted")
    crossed = snap(bid="100.05", ask="100.00")
    assert isinstance(price(plan, progress(), crossed, T0), Hold)


def test_twap_slices_follow_the_cadence_and_sum_to_the_intent() -> None:
    plans = twap(Action.BUY, D(10_000), T0, T0 + timedelta(seconds=135))
    assert len(plans) == 10
    assert [p.due_at for p in plans] == [T0 + timedelta(seconds=15 * k) for k in range(10)]
    assert [p.schedule_qty for p in plans[:-1]] == [D(1000 * (k + 1)) for k in range(9)]
    assert plans[-1].schedule_qty is None  # the last slice takes all that is left
    assert all(p.capped and p.tif == "IOC" for p in plans)
    assert slice_quantities(D(10), 3) == [D(4), D(3), D(3)]
    assert slice_count(T0, T0, timedelta(seconds=15)) == 1


def test_twap_slice_rolls_leftovers_forward_and_respects_the_cap() -> None:
    plans = twap(Action.BUY, D(10_000), T0, T0 + timedelta(seconds=135))
    third = plans[2]  # schedule: 3,000 due by now
    order = price(third, progress(filled="1200", target="10000"), snap(bar="40000"), T0)
    assert isinstance(order, ChildOrder) and order.quantity == D(1800)
    capped = price(third, progress(filled="1200", target="10000"), snap(bar="5000"), T0)
    assert isinstance(capped, ChildOrder) and capped.quantity == D(500)  # 10 % of the bar
    no_bar = price(third, progress(filled="1200", target="10000"), snap(bar=None), T0)
    assert isinstance(no_bar, Hold)
    ahead = price(third, progress(filled="3000", target="10000"), snap(bar="40000"), T0)
    assert isinstance(ahead, Skip)


def test_sweep_steps_rise_from_the_touch_to_the_band() -> None:
    plans = sweep(Action.BUY, T0, steps=4, routes=("SMART", "ARCA"))
    assert [p.route for p in plans] == ["SMART", "ARCA", "SMART", "ARCA"]
    limits = []
    for plan in plans:
        order = price(plan, progress(bps="20"), snap(bid="100.00", ask="100.02"), T0)
        assert isinstance(order, ChildOrder) and order.tif == "IOC"
        limits.append(order.limit_price)
    assert limits[0] == D("100.02")  # at the touch
    assert limits == sorted(limits)
    assert limits[-1] == D("100.21")  # 20 bps above the mid 100.01 is 100.21
    # A touch beyond the band is never chased.
    wide = price(plans[0], progress(bps="5"), snap(bid="100.00", ask="100.20"), T0)
    assert isinstance(wide, Hold) and "beyond the slippage band" in wide.reason


def test_sell_prices_mirror_buys() -> None:
    (step,) = sweep(Action.SELL, T0, steps=1)
    order = price(step, progress(), snap(bid="100.00", ask="100.02"), T0)
    assert isinstance(order, ChildOrder) and order.limit_price == D("100.00")
    (peg,) = pegged_mid(Action.SELL, T0, offset_ticks=1)
    order = price(peg, progress(), snap(bid="100.00", ask="100.04"), T0)
    assert isinstance(order, ChildOrder) and order.limit_price == D("100.03")


def test_pegged_mid_reprices_on_a_move_throttled_and_backs_off_when_the_spread_widens() -> None:
    (peg,) = pegged_mid(Action.BUY, T0)
    first = price(peg, progress(), snap(bid="100.00", ask="100.04"), T0)
    assert isinstance(first, ChildOrder) and first.limit_price == D("100.02")
    moved = snap(bid="100.02", ask="100.06", at=T0 + timedelta(seconds=1))
    assert reprice(Action.BUY, D("100.02"), moved, T0 + timedelta(seconds=1), T0) is None
    moved = snap(bid="100.02", ask="100.06", at=T0 + timedelta(seconds=3))
    assert reprice(Action.BUY, D("100.02"), moved, T0 + timedelta(seconds=3), T0) == D("100.04")
    wide = snap(bid="99.50", ask="100.50", at=T0 + timedelta(seconds=1))
    assert reprice(Action.BUY, D("100.02"), wide, T0 + timedelta(seconds=1), T0) == D("99.50")


def test_bracket_links_children_to_the_parent_and_transmits_last() -> None:
    plans = bracket(Action.BUY, D(100), T0, Exit(profit_target=D("110"), trail_percent=D("2")))
    entry, target, stop = plans
    assert [p.transmit for p in plans] == [False, False, True]
    assert target.parent_key == stop.parent_key == entry.key
    assert target.oca_group == stop.oca_group is not None
    assert target.action is stop.action is Action.SELL and stop.pricing is Pricing.TRAIL
    order = price(stop, progress(target="100"), None, T0)
    assert isinstance(order, ChildOrder)
    assert order.order_type == "TRAIL" and order.trail_percent == D(2) and order.quantity == 100
    with pytest.raises(ValueError):
        Exit(profit_target=D(1))


def test_band_and_slippage_are_inverse() -> None:
    edge = band_limit(D(100), D(25), buy=True)
    assert edge == D("100.25") and slippage_bps(edge, D(100), buy=True) == D(25)
    assert slippage_bps(D("99.5"), D(100), buy=False) == D(50)


@settings(max_examples=300, deadline=None)
@given(
    quantity=st.integers(1, 50_000),
    slices=st.integers(1, 40),
    filled_fraction=st.decimals(0, 1, places=3),
    bar=st.integers(0, 200_000),
    bps=st.decimals(0, 200, places=2),
    bid=st.decimals("1.00", "900.00", places=2),
    spread_ticks=st.integers(0, 30),
    buy=st.booleans(),
)
def test_no_child_ever_exceeds_the_remaining_the_cap_or_the_band(
    quantity: int,
    slices: int,
    filled_fraction: Decimal,
    bar: int,
    bps: Decimal,
    bid: Decimal,
    spread_ticks: int,
    buy: bool,
) -> None:
    action = Action.BUY if buy else Action.SELL
    target = D(quantity)
    filled = (target * filled_fraction).to_integral_value()
    market = snap(bid=str(bid), ask=str(bid + D("0.01") * spread_ticks), bar=str(bar))
    plans = [
        *twap(action, target, T0, T0 + timedelta(minutes=10), slices=slices),
        *sweep(action, T0, steps=4),
        *pegged_mid(action, T0, offset_ticks=1),
        *tranches(action, target, T0, count=min(slices, 10)),
    ]
    state = Progress(filled=filled, target=target, reference=None, max_slippage_bps=bps)
    edge = band_limit(market.mid or bid, bps, buy)
    for plan in plans:
        got = price(plan, state, market, T0)
        if not isinstance(got, ChildOrder):
            continue
        assert 0 < got.quantity <= target - filled
        if plan.capped:
            assert got.quantity <= D(bar) * D("0.10")
        assert got.limit_price is not None
        if plan.template is Template.SWEEP or plan.template is Template.TWAP:
            assert got.limit_price <= edge if buy else got.limit_price >= edge
    # The schedule's slices ask for exactly the intent, no more.
    schedule = twap(action, target, T0, T0 + timedelta(minutes=10), slices=slices)
    assert sum(slice_quantities(target, slices)) == target
    assert (
        all((p.schedule_qty or target) <= target for p in schedule)
        and schedule[-1].schedule_qty is None
    )


def test_a_scaling_exit_takes_its_tranches_in_turn_each_a_rising_sweep() -> None:
    plans = tranches(Action.SELL, D(10), T0, count=3, spacing=timedelta(seconds=60))
    assert len(plans) == 12  # 3 tranches x 4 sweep steps
    starts = [p.due_at for p in plans if p.key.endswith("-1")]
    assert starts == [T0, T0 + timedelta(seconds=60), T0 + timedelta(seconds=120)]
    # Cumulative shares 4, 7, then whatever is left; each tranche's steps rise to the band.
    assert [p.schedule_qty for p in plans[::4]] == [D(4), D(7), None]
    assert [p.aggression for p in plans[:4]] == [D(0), D(1) / 3, D(2) / 3, D(1)]
    first = price(plans[0], progress(target="10"), snap(), T0)
    assert isinstance(first, ChildOrder) and first.quantity == 4
    # Tranche 1 done: its later steps have nothing left; tranche 2 asks for its 3 only.
    done = progress(filled="4", target="10")
    assert isinstance(price(plans[1], done, snap(), T0), Skip)
    minute = T0 + timedelta(seconds=60)
    second = price(plans[4], done, snap(at=minute), minute)
    assert isinstance(second, ChildOrder) and second.quantity == 3
    # What tranche 2 did not get rolls into the last one.
    later = T0 + timedelta(seconds=120)
    last = price(plans[8], progress(filled="5", target="10"), snap(at=later), later)
    assert isinstance(last, ChildOrder) and last.quantity == 5
