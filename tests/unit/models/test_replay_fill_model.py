"""The replay venue's fill model: what fills, at what price, how much — the rules a replay's
results rest on (`models.replay.fill_model`, `docs/replay.md`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from models.replay.events import Kind, MarketEvent
from models.replay.fill_model import Fill, SimOrder, match, refusal

D = Decimal
T = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def quote(
    bid: str, ask: str, bid_size: str | None = None, ask_size: str | None = None, **kw: object
) -> MarketEvent:
    return MarketEvent(
        T,
        "AAPL",
        Kind.QUOTE,
        D(bid),
        D(ask),
        bid_size=None if bid_size is None else D(bid_size),
        ask_size=None if ask_size is None else D(ask_size),
        **kw,  # type: ignore[arg-type]
    )


def order(
    buy: bool = True,
    qty: str = "300",
    kind: str = "LMT",
    limit: str | None = "200.02",
    stop: str | None = None,
    tif: str = "DAY",
) -> SimOrder:
    return SimOrder(
        1,
        "c-1",
        "AAPL",
        buy,
        D(qty),
        kind,
        None if limit is None else D(limit),
        None if stop is None else D(stop),
        tif,
    )


def test_a_marketable_buy_fills_at_the_ask_up_to_the_displayed_size() -> None:
    o = order(limit="200.05")
    used: dict[bool, Decimal] = {}
    assert match(o, quote("200.00", "200.02", ask_size="120"), used) == Fill(1, D(120), D("200.02"))
    assert (o.filled, o.remaining, o.done, used) == (D(120), D(180), False, {True: D(120)})
    # A second order on the same event meets only what the first left of the ask.
    other = order(qty="500", limit="200.05")
    assert match(other, quote("200.00", "200.02", ask_size="120"), used) is None


def test_without_sizes_the_whole_order_fills_and_a_sell_meets_the_bid() -> None:
    o = order(buy=False, kind="MKT", limit=None)
    assert match(o, quote("199.98", "200.00"), {}) == Fill(1, D(300), D("199.98"))
    assert o.done and o.avg_price == D("199.98")


def test_a_resting_limit_waits_until_the_touch_crosses_it() -> None:
    o = order(limit="199.99")
    assert match(o, quote("199.98", "200.00"), {}) is None
    assert match(o, quote("199.96", "199.98"), {}) == Fill(1, D(300), D("199.98"))


def test_a_bar_trading_through_a_resting_limit_fills_it_at_its_limit() -> None:
    o = order(limit="199.50")
    bar = MarketEvent(
        T, "AAPL", Kind.BAR, D("199.90"), D("199.90"), low=D("199.40"), high=D("200.10")
    )
    assert match(o, bar, {}) == Fill(1, D(300), D("199.50"))
    touching = order(limit="199.40")
    assert match(touching, bar, {}) is None  # touched, not traded through


def test_a_stop_triggers_on_the_last_price_then_fills_as_market() -> None:
    o = order(buy=False, kind="STP", limit=None, stop="199.00")
    assert match(o, quote("199.10", "199.12", last=D("199.11")), {}) is None
    assert match(o, quote("198.95", "198.97", last=D("198.96")), {}) == Fill(1, D(300), D("198.95"))


def test_nothing_fills_halted_one_sided_or_without_a_market() -> None:
    assert match(order(limit="201"), quote("200", "200.02", halted=True), {}) is None
    assert match(order(limit="201"), None, {}) is None
    one_sided = MarketEvent(T, "AAPL", Kind.QUOTE, None, D("200.02"))
    assert match(order(limit="201"), one_sided, {}) is None


@pytest.mark.parametrize(
    ("kind", "tif", "refused"),
    [("LMT", "IOC", False), ("MKT", "DAY", False), ("TRAIL", "GTC", True), ("LMT", "OPG", True)],
)
def test_order_types_the_model_cannot_work_are_refused_not_faked(
    kind: str, tif: str, refused: bool
) -> None:
    assert (refusal(kind, tif) is not None) is refused
