"""Option pricing: closed form vs vollib, no-arbitrage bounds, parity, greeks, option quotes."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from vollib.black_scholes_merton import black_scholes_merton
from vollib.black_scholes_merton.greeks import analytical

from tws_sim.market import Catalog, Market, Scenario
from tws_sim.market.options import bsm, surface_vol
from tws_sim.types import QuoteChanged, Right, TradePrinted

SESSION = date(2026, 11, 24)
START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
SPY, AAPL = 756733, 265598


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.build(SESSION, Scenario.default())


@pytest.fixture()
def market(catalog: Catalog) -> Market:
    m = Market(catalog, Scenario.default(), 9, START)
    m.advance(START + timedelta(seconds=30))
    return m


@pytest.mark.parametrize("flag", ["c", "p"])
@pytest.mark.parametrize(
    ("spot", "strike", "t", "vol", "q"),
    [(600, 600, 0.01, 0.15, 0.012), (600, 580, 0.1, 0.2, 0.0), (230, 250, 0.5, 0.35, 0.004)],
)
def test_options_bsm_matches_vollib(
    flag: str, spot: float, strike: float, t: float, vol: float, q: float
) -> None:
    r = 0.045
    price, delta, gamma, vega, theta = bsm(flag == "c", spot, strike, t, r, q, vol)
    assert price == pytest.approx(black_scholes_merton(flag, spot, strike, t, r, vol, q), rel=1e-7)
    assert delta == pytest.approx(analytical.delta(flag, spot, strike, t, r, vol, q), rel=1e-7)
    assert gamma == pytest.approx(analytical.gamma(flag, spot, strike, t, r, vol, q), rel=1e-7)
    # vollib reports vega per 1 % vol and theta per calendar day, as IB does.
    assert vega == pytest.approx(analytical.vega(flag, spot, strike, t, r, vol, q), rel=1e-7)
    assert theta == pytest.approx(analytical.theta(flag, spot, strike, t, r, vol, q), rel=1e-6)


def test_options_surface_is_skewed() -> None:
    atm = surface_vol(0.2, 600, 600, 0.05)
    assert atm == pytest.approx(0.2)
    assert surface_vol(0.2, 600, 560, 0.05) > atm > surface_vol(0.2, 600, 620, 0.05)
    assert 0.03 <= surface_vol(0.2, 600, 1, 0.05) <= 4.0


def _chain(catalog: Catalog, con_id: int, expiry: date) -> list:
    return [o for o in catalog.options_of(con_id) if o.expiry == expiry]


def test_options_prices_within_no_arbitrage_bounds(catalog: Catalog, market: Market) -> None:
    rate = market.rate
    for und, expiry in ((SPY, SESSION), (SPY, date(2026, 12, 4)), (AAPL, date(2026, 11, 27))):
        for opt in _chain(catalog, und, expiry):
            g = market.greeks(opt.con_id)
            q = market.quote(opt.con_id)
            assert g is not None
            s, k = g.und_price, float(opt.strike)
            close = datetime(expiry.year, expiry.month, expiry.day, 21, 0, tzinfo=UTC)
            if expiry == date(2026, 11, 27):
                close = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
            t = (close - market.now).total_seconds() / (365 * 86400)
            disc_s = s - g.pv_dividend
            disc_k = k * math.exp(-rate * t)
            if opt.right is Right.CALL:
                lower, upper = max(0.0, disc_s - disc_k), disc_s
            else:
                lower, upper = max(0.0, disc_k - disc_s), disc_k
            assert lower - 1e-9 <= g.opt_price <= upper + 1e-9
            assert q.bid <= Decimal(repr(g.opt_price)) <= q.ask
            assert q.bid >= 0 and q.bid < q.ask and q.bid_size > 0 and q.ask_size > 0


def test_options_put_call_parity(catalog: Catalog, market: Market) -> None:
    expiry = date(2026, 12, 4)
    calls = {o.strike: o for o in _chain(catalog, SPY, expiry) if o.right is Right.CALL}
    puts = {o.strike: o for o in _chain(catalog, SPY, expiry) if o.right is Right.PUT}
    t = (datetime(2026, 12, 4, 21, 0, tzinfo=UTC) - market.now).total_seconds() / (365 * 86400)
    for strike in list(calls)[::5]:
        c, p = market.greeks(calls[strike].con_id), market.greeks(puts[strike].con_id)
        assert c is not None and p is not None
        forward_gap = c.und_price - c.pv_dividend - float(strike) * math.exp(-market.rate * t)
        assert c.opt_price - p.opt_price == pytest.approx(forward_gap, abs=1e-6)
        cq, pq = market.quote(calls[strike].con_id), market.quote(puts[strike].con_id)
        assert abs(float(cq.mid - pq.mid) - forward_gap) <= float(
            (cq.ask - cq.bid) + (pq.ask - pq.bid)
        )


def test_options_greeks_signs(catalog: Catalog, market: Market) -> None:
    for opt in _chain(catalog, SPY, date(2026, 12, 4)):
        g = market.greeks(opt.con_id)
        assert g is not None
        assert g.gamma >= 0 and g.vega >= 0 and g.theta <= 1e-9
        if opt.right is Right.CALL:
            assert 0 <= g.delta <= 1
        else:
            assert -1 <= g.delta <= 0
        assert 0.03 <= g.implied_vol <= 4
    assert market.greeks(SPY) is None


def test_options_skew_puts_richer(catalog: Catalog, market: Market) -> None:
    chain = _chain(catalog, SPY, date(2026, 12, 4))
    strikes = sorted({o.strike for o in chain})
    low = next(o for o in chain if o.strike == strikes[2] and o.right is Right.PUT)
    high = next(o for o in chain if o.strike == strikes[-3] and o.right is Right.CALL)
    g_low, g_high = market.greeks(low.con_id), market.greeks(high.con_id)
    assert g_low is not None and g_high is not None
    assert g_low.implied_vol > g_high.implied_vol


def test_options_watched_option_emits_quotes_and_follows_underlying(
    catalog: Catalog, market: Market
) -> None:
    opt = next(
        o for o in _chain(catalog, SPY, SESSION) if o.strike == 600 and o.right is Right.CALL
    )
    market.watch(opt.con_id)
    events = market.advance(START + timedelta(seconds=600))
    quotes = [e.quote for e in events if isinstance(e, QuoteChanged)]
    assert quotes and all(q.con_id == opt.con_id for q in quotes)
    assert all(q.bid < q.ask and q.bid_size > 0 for q in quotes)
    prints = [e for e in events if isinstance(e, TradePrinted)]
    assert prints  # ~1 % of steps print: ~24 in 10 minutes
    for k, e in enumerate(events):
        if isinstance(e, TradePrinted):
            before = events[k - 1]
            assert isinstance(before, QuoteChanged) and before.quote.last == e.price
            assert e.price in (before.quote.bid, before.quote.ask) and e.size > 0
    assert market.quote(opt.con_id).volume == sum(p.size for p in prints)
    # The quote moves with the underlying: a call's mid rises with the spot across the run.
    g = market.greeks(opt.con_id)
    assert g is not None and g.und_price == float(market.quote(SPY).mid)


def test_options_quote_does_not_depend_on_watching(catalog: Catalog) -> None:
    opt = _chain(catalog, AAPL, date(2026, 11, 27))[15]
    a = Market(catalog, Scenario.default(), 4, START)
    b = Market(catalog, Scenario.default(), 4, START)
    a.watch(opt.con_id)
    end = START + timedelta(seconds=120)
    a.advance(end)
    b.advance(end)
    qa, qb = a.quote(opt.con_id), b.quote(opt.con_id)
    assert (qa.bid, qa.ask, qa.close, qa.open) == (qb.bid, qb.ask, qb.close, qb.open)
    assert a.greeks(opt.con_id) == b.greeks(opt.con_id)


def test_options_depth_and_history(catalog: Catalog, market: Market) -> None:
    opt = _chain(catalog, SPY, date(2026, 12, 4))[20]
    book = market.depth(opt.con_id, 3)
    q = market.quote(opt.con_id)
    assert book[0].side == 0 and book[0].price == q.ask
    assert any(lv.side == 1 and lv.position == 0 and lv.price == q.bid for lv in book)
    bars = market.history(opt.con_id, START, 1800, 300, "MIDPOINT")
    assert len(bars) == 6
    assert all(b.low <= b.open <= b.high and b.low > 0 for b in bars)
