"""Pre-trade gates (`models.risk`): each refusal carries its code and the numbers that caused it,
and no generated order that breaches a configured cap gets through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from epm.limits import load_limits
from models.intent import Side
from models.limits import instrument_limits, parse_limits
from models.rejects import RejectReason
from models.risk import MarketFacts, OrderFacts, Recent, check_child, check_order

LIMITS = load_limits()
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def order(side: Side = Side.BUY, qty: str = "100", price: str | None = "500") -> OrderFacts:
    return OrderFacts("twap", "SPY", side, Decimal(qty), "sig-1", Decimal(price) if price else None)


def test_nine_million_shares_is_a_risk_limit_with_the_numbers() -> None:
    breach = check_order(order(qty="9000000", price=None), LIMITS, MarketFacts())
    assert breach is not None and breach.reason is RejectReason.RISK_LIMIT
    assert breach.numbers == {"quantity": "9000000", "max_order_quantity": "1000000"}
    assert "9000000" in breach.message and "1000000" in breach.message


def test_notional_counts_the_multiplier() -> None:
    opt = OrderFacts("twap", "SPY 1", Side.BUY, Decimal(600), "s", Decimal(100), multiplier=100)
    breach = check_order(opt, LIMITS, MarketFacts())
    assert breach is not None and breach.numbers["notional"] == "6000000"


def test_unknown_instrument_and_halt_and_closed_market() -> None:
    assert check_order(order(), LIMITS, MarketFacts(known=False)).reason is (  # type: ignore[union-attr]
        RejectReason.UNKNOWN_CONTRACT
    )
    assert check_order(order(), LIMITS, MarketFacts(halted=True)).reason is (  # type: ignore[union-attr]
        RejectReason.INSTRUMENT_HALTED
    )
    closed = check_order(order(), LIMITS, MarketFacts(market_open=False))
    assert closed is not None and closed.reason is RejectReason.MARKET_CLOSED
    assert check_order(order(), LIMITS, MarketFacts(known=True, halted=False)) is None


def test_cover_without_a_short_and_short_while_long_are_refused() -> None:
    flat = MarketFacts(position=Decimal(0))
    cover = check_order(order(Side.BUY_TO_COVER), LIMITS, flat)
    assert cover is not None and cover.reason is RejectReason.SIDE_POSITION_MISMATCH
    assert cover.numbers == {"position": "0", "quantity": "100"}
    assert (
        check_order(order(Side.BUY_TO_COVER), LIMITS, MarketFacts(position=Decimal(-100))) is None
    )
    long = MarketFacts(position=Decimal(50))
    assert check_order(order(Side.SELL_SHORT), LIMITS, long) is not None
    assert check_order(order(Side.SELL, qty="50"), LIMITS, long) is None
    assert check_order(order(Side.SELL, qty="51"), LIMITS, long) is not None


def test_position_after_the_order_over_the_cap() -> None:
    near = MarketFacts(position=Decimal(1_999_950))
    breach = check_order(order(qty="100", price=None), LIMITS, near)
    assert breach is not None and breach.numbers["position_after"] == "2000050"
    # Reducing a position already over the cap is always allowed.
    over = MarketFacts(position=Decimal(3_000_000))
    assert check_order(order(Side.SELL, qty="100", price=None), LIMITS, over) is None


def test_price_band_against_the_nbbo_mid() -> None:
    quote = MarketFacts(nbbo=(Decimal("99.90"), Decimal("100.10")), band_bps=Decimal(100))
    assert check_order(order(price="100.50"), LIMITS, quote) is None
    far = check_order(order(price="102"), LIMITS, quote)
    assert (
        far is not None and far.reason is RejectReason.PRICE_BAND and far.numbers["mid"] == "100.00"
    )


def test_same_strategy_instrument_side_seconds_apart_is_a_possible_duplicate() -> None:
    prior = Recent("twap", "SPY", Side.BUY, "sig-0", NOW - timedelta(seconds=2))
    market = MarketFacts(recent=[prior], now=NOW)
    dup = check_order(order(), LIMITS, market)
    assert dup is not None and dup.reason is RejectReason.POSSIBLE_DUPLICATE
    assert dup.numbers["prior_signal_id"] == "sig-0"
    later = MarketFacts(recent=[prior], now=NOW + timedelta(seconds=10))
    assert check_order(order(), LIMITS, later) is None
    assert check_order(order(Side.SELL_SHORT), LIMITS, market) is None


def test_check_child_applies_the_same_rules() -> None:
    breach = check_child(
        strategy="twap",
        key="SPY",
        side=Side.BUY,
        quantity=Decimal(2_000_000),
        price=None,
        limits=LIMITS,
        market=MarketFacts(),
    )
    assert breach is not None and breach.reason is RejectReason.RISK_LIMIT


CAPS = parse_limits(
    {
        "version": 1,
        "defaults": {
            "instrument": {"max_order_notional": "50000", "max_order_quantity": "1000"},
            "strategy": {
                "max_position_quantity": "3000",
                "max_position_delta": "3000",
                "max_position_gamma": "100",
                "max_active_intents": 5,
                "max_intraday_drawdown": "1000",
            },
        },
        "account": {"min_margin_headroom": "0.1"},
    }
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(Side)),
            st.integers(min_value=1, max_value=3000),
            st.decimals(min_value=Decimal("0.01"), max_value=Decimal(200), places=2),
        ),
        max_size=40,
    )
)
def test_no_sequence_of_orders_breaches_a_configured_cap(
    orders: list[tuple[Side, int, Decimal]],
) -> None:
    """Fill every order the gates let through; caps hold throughout."""
    position = Decimal(0)
    cap = instrument_limits(CAPS, "SPY")
    for side, qty, price in orders:
        o = OrderFacts("twap", "SPY", side, Decimal(qty), "s", price)
        if check_order(o, CAPS, MarketFacts(position=position)) is not None:
            continue
        assert o.quantity <= (cap.max_order_quantity or 0)
        assert o.quantity * price <= (cap.max_order_notional or 0)
        before = position
        position += o.quantity if side in (Side.BUY, Side.BUY_TO_COVER) else -o.quantity
        assert abs(position) <= Decimal(3000) or abs(position) < abs(before)
        if side is Side.BUY_TO_COVER:
            assert before < 0 and position <= 0
        if side is Side.SELL:
            assert before > 0 and position >= 0
        if side is Side.SELL_SHORT:
            assert before <= 0
