"""Market process: determinism, chunking invariance, quote sanity, halts, bars, regimes, speed."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from tws_sim.market import Catalog, HistoryError, Market, Scenario, UnknownContractError
from tws_sim.types import BarClosed, HaltChanged, HaltState, QuoteChanged, TradePrinted

SESSION = date(2026, 11, 24)
START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 ET
SPY, TSLA, AAPL = 756733, 76792991, 265598


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario.default()


@pytest.fixture(scope="module")
def catalog(scenario: Scenario) -> Catalog:
    return Catalog.build(SESSION, scenario)


def _market(catalog: Catalog, scenario: Scenario, seed: int = 11) -> Market:
    return Market(catalog, scenario, seed, START)


def _path(m: Market, con_id: int, seconds: int, every: float = 1.0) -> list[Decimal]:
    out = []
    steps = int(seconds / every)
    for k in range(1, steps + 1):
        m.advance(START + timedelta(seconds=k * every))
        out.append(m.quote(con_id).mid)
    return out


def test_market_same_seed_same_path_and_events(catalog: Catalog, scenario: Scenario) -> None:
    a, b = _market(catalog, scenario), _market(catalog, scenario)
    a.watch(SPY)
    b.watch(SPY)
    ev_a = a.advance(START + timedelta(seconds=120))
    ev_b = b.advance(START + timedelta(seconds=120))
    assert ev_a == ev_b and len(ev_a) > 100
    assert a.quote(TSLA) == b.quote(TSLA)


def test_market_different_seed_different_path(catalog: Catalog, scenario: Scenario) -> None:
    a, b = _market(catalog, scenario, 1), _market(catalog, scenario, 2)
    assert _path(a, SPY, 60) != _path(b, SPY, 60)


def test_market_chunking_does_not_change_state(catalog: Catalog, scenario: Scenario) -> None:
    whole, chunked = _market(catalog, scenario), _market(catalog, scenario)
    whole.watch(SPY)
    chunked.watch(SPY)
    end = START + timedelta(seconds=900)
    ev_whole = whole.advance(end)
    ev_chunked = []
    t = START
    for dt in (0.1, 0.3, 5, 0.25, 7.77, 100, 0.01, 600, 200):
        t = min(end, t + timedelta(seconds=dt))
        ev_chunked.extend(chunked.advance(t))
    ev_chunked.extend(chunked.advance(end))
    assert ev_whole == ev_chunked
    for con_id in (SPY, TSLA, AAPL):
        assert whole.quote(con_id) == chunked.quote(con_id)
    # Watching changes the events, never the path.
    unwatched = _market(catalog, scenario)
    unwatched.advance(end)
    assert unwatched.quote(SPY) == whole.quote(SPY)


def test_market_advance_backwards_is_noop(catalog: Catalog, scenario: Scenario) -> None:
    m = _market(catalog, scenario)
    m.watch(SPY)
    m.advance(START + timedelta(seconds=10))
    q = m.quote(SPY)
    assert m.advance(START + timedelta(seconds=5)) == []
    assert m.advance(START - timedelta(seconds=5)) == []
    assert m.quote(SPY) == q and m.now == START + timedelta(seconds=10)


def test_market_quotes_are_sane(catalog: Catalog, scenario: Scenario) -> None:
    m = _market(catalog, scenario)
    for inst in catalog.underlyings():
        m.watch(inst.con_id)
    events = m.advance(START + timedelta(seconds=600))
    quotes = [e.quote for e in events if isinstance(e, QuoteChanged)]
    assert len(quotes) > 1000
    for q in quotes:
        assert q.bid < q.ask
        assert q.bid > 0 and q.bid_size > 0 and q.ask_size > 0
        assert q.low <= q.last <= q.high
        assert q.bid.as_tuple().exponent == -2
    prints = [e for e in events if isinstance(e, TradePrinted)]
    assert prints and all(p.size > 0 for p in prints)
    stamps = [
        e.quote.ts if isinstance(e, QuoteChanged) else e.ts
        for e in events
        if isinstance(e, QuoteChanged | TradePrinted)
    ]
    assert stamps == sorted(stamps)


def test_market_volume_accumulates_prints(catalog: Catalog, scenario: Scenario) -> None:
    m = _market(catalog, scenario)
    m.watch(AAPL)
    v0 = m.quote(AAPL).volume
    events = m.advance(START + timedelta(seconds=300))
    printed = sum(e.size for e in events if isinstance(e, TradePrinted))
    assert m.quote(AAPL).volume == v0 + printed


def test_market_bars_aggregate_trade_prints(catalog: Catalog, scenario: Scenario) -> None:
    m = _market(catalog, scenario)
    m.watch(SPY)
    events = m.advance(START + timedelta(seconds=120))
    bars = [e.bar for e in events if isinstance(e, BarClosed)]
    prints = [e for e in events if isinstance(e, TradePrinted)]
    assert len(bars) >= 23
    for bar in bars[1:]:
        inside = [p for p in prints if bar.time <= p.ts < bar.time + timedelta(seconds=5)]
        assert bar.count == len(inside)
        assert bar.volume == sum(p.size for p in inside)
        if inside:
            assert bar.open == inside[0].price and bar.close == inside[-1].price
            assert bar.high == max(p.price for p in inside)
            assert bar.low == min(p.price for p in inside)
            vwap = sum(p.price * p.size for p in inside) / bar.volume
            assert abs(bar.wap - vwap) < Decimal("0.0001")
        assert bar.time.timestamp() % 5 == 0


def test_market_halt_appears_at_its_time() -> None:
    scenario = Scenario.from_text(
        """
extends: default
halts:
  - {symbol: TSLA, after_s: 30, duration_s: 60, state: 2}
"""
    )
    catalog = Catalog.build(SESSION, scenario)
    m = Market(catalog, scenario, 5, START)
    m.watch(TSLA)
    opt = catalog.options_of(TSLA)[10]
    m.watch(opt.con_id)
    events = m.advance(START + timedelta(seconds=29.75))
    assert not [e for e in events if isinstance(e, HaltChanged)]
    assert m.halt_state(TSLA) is HaltState.TRADING
    events = m.advance(START + timedelta(seconds=30))
    halts = [e for e in events if isinstance(e, HaltChanged)]
    assert {(h.con_id, h.state) for h in halts} == {
        (TSLA, HaltState.VOLATILITY_HALT),
        (opt.con_id, HaltState.VOLATILITY_HALT),
    }
    assert halts[0].ts == START + timedelta(seconds=30)
    assert m.halt_state(opt.con_id) is HaltState.VOLATILITY_HALT
    frozen = m.quote(TSLA)
    assert frozen.halted is HaltState.VOLATILITY_HALT
    frozen_opt = m.quote(opt.con_id)
    assert frozen_opt.halted is HaltState.VOLATILITY_HALT
    events = m.advance(START + timedelta(seconds=89.75))
    assert not [e for e in events if isinstance(e, TradePrinted) and e.con_id == TSLA]
    assert m.quote(TSLA).bid == frozen.bid and m.depth(TSLA, 5) == []
    # the option's book freezes with its underlying: no quote events, the same prices and sizes
    assert not [e for e in events if getattr(e, "con_id", None) == opt.con_id]
    assert not [e for e in events if isinstance(e, QuoteChanged) and e.quote.con_id == opt.con_id]
    still = m.quote(opt.con_id)
    assert (still.bid, still.ask, still.bid_size, still.ask_size) == (
        frozen_opt.bid,
        frozen_opt.ask,
        frozen_opt.bid_size,
        frozen_opt.ask_size,
    )
    assert m.depth(opt.con_id, 5) == []
    events = m.advance(START + timedelta(seconds=90))
    assert (TSLA, HaltState.TRADING) in {
        (e.con_id, e.state) for e in events if isinstance(e, HaltChanged)
    }
    assert m.quote(TSLA).halted is HaltState.TRADING


def test_market_fomc_spike_widens_spreads_and_jumps() -> None:
    scenario = Scenario.named("fomc")
    catalog = Catalog.build(SESSION, scenario)
    start = datetime(2026, 11, 24, 18, 55, tzinfo=UTC)  # 13:55 ET
    m = Market(catalog, scenario, 3, start)
    m.watch(SPY)
    calm = [
        e.quote for e in m.advance(start + timedelta(seconds=299)) if isinstance(e, QuoteChanged)
    ]
    before = m.quote(SPY).mid
    assert m.regime(SPY)[0] == pytest.approx(0.7)
    spike = [
        e.quote for e in m.advance(start + timedelta(seconds=600)) if isinstance(e, QuoteChanged)
    ]
    assert m.regime(SPY)[0] == pytest.approx(5.0)
    calm_spread = sum(q.ask - q.bid for q in calm) / len(calm)
    spike_spread = sum(q.ask - q.bid for q in spike) / len(spike)
    assert spike_spread > 2 * calm_spread
    first_after = next(q for q in spike if q.ts >= start + timedelta(seconds=300)).mid
    assert first_after < before * Decimal("0.997")  # the -0.6 % headline jump


def test_market_depth_rotates_makers(catalog: Catalog, scenario: Scenario) -> None:
    m = _market(catalog, scenario)
    m.advance(START + timedelta(seconds=1))
    book = m.depth(SPY, 5)
    q = m.quote(SPY)
    asks = [lv for lv in book if lv.side == 0]
    bids = [lv for lv in book if lv.side == 1]
    assert len(asks) == len(bids) == 5
    assert asks[0].price == q.ask and bids[0].price == q.bid
    assert asks[0].size == q.ask_size and bids[0].size == q.bid_size
    assert [lv.price for lv in asks] == sorted(lv.price for lv in asks)
    assert [lv.price for lv in bids] == sorted((lv.price for lv in bids), reverse=True)
    assert all(lv.size > 0 for lv in book)
    assert m.depth(SPY, 5) == book  # same step, same book
    makers = set()
    for k in range(2, 40):
        m.advance(START + timedelta(seconds=k))
        makers.add(tuple(lv.market_maker for lv in m.depth(SPY, 3)))
    assert len(makers) > 3


def test_market_history_before_start_is_deterministic(catalog: Catalog, scenario: Scenario) -> None:
    m1, m2 = _market(catalog, scenario), _market(catalog, scenario)
    bars = m1.history(SPY, START, 3600, 60, "TRADES")
    assert bars == m2.history(SPY, START, 3600, 60, "TRADES")
    assert len(bars) == 60
    assert bars[-1].time == START - timedelta(seconds=60)
    for b in bars:
        assert b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close)
        assert b.volume > 0 and b.count > 0
    assert abs(bars[-1].close - Decimal("600")) < Decimal("1")
    mid = m1.history(SPY, START, 600, 60, "MIDPOINT")
    assert all(b.volume == -1 and b.count == -1 for b in mid)
    daily = m1.history(SPY, START, 30 * 86400, 86400, "TRADES")
    assert len(daily) in (30, 31)


def test_market_history_after_start_uses_recorded_bars(
    catalog: Catalog, scenario: Scenario
) -> None:
    m = _market(catalog, scenario)
    m.watch(SPY)
    events = m.advance(START + timedelta(seconds=300))
    five = [e.bar for e in events if isinstance(e, BarClosed)]
    minute = m.history(SPY, START + timedelta(seconds=300), 300, 60, "TRADES")
    assert [b.time for b in minute] == [START + timedelta(seconds=60 * k) for k in range(5)]
    first_five = [b for b in five if START <= b.time < START + timedelta(seconds=60)]
    assert minute[0].volume == sum(b.volume for b in first_five)
    assert minute[0].close == first_five[-1].close
    # Never beyond the market's now.
    assert m.history(SPY, START + timedelta(hours=5), 600, 60, "TRADES")[-1].time < m.now


def test_market_history_bad_requests(catalog: Catalog, scenario: Scenario) -> None:
    m = _market(catalog, scenario)
    with pytest.raises(HistoryError):
        m.history(SPY, START, 60, 5, "SCHEDULE")
    with pytest.raises(HistoryError):
        m.history(SPY, START, 0, 5, "TRADES")
    with pytest.raises(HistoryError):
        m.history(SPY, START, 86400 * 365, 1, "TRADES")
    with pytest.raises(HistoryError, match="that far before"):
        m.history(SPY, START - timedelta(days=30), 60, 5, "TRADES")
    with pytest.raises(UnknownContractError):
        m.history(1, START, 60, 5, "TRADES")
    with pytest.raises(UnknownContractError):
        m.quote(1)
    with pytest.raises(UnknownContractError):
        m.watch(1)


def test_market_watch_is_ref_counted(catalog: Catalog, scenario: Scenario) -> None:
    m = _market(catalog, scenario)
    m.watch(SPY)
    m.watch(SPY)
    m.unwatch(SPY)
    assert m.advance(START + timedelta(seconds=5))
    m.unwatch(SPY)
    m.unwatch(SPY)  # extra release is harmless
    assert m.advance(START + timedelta(seconds=10)) == []
    assert m.watched() == set()


def test_market_session_open(catalog: Catalog, scenario: Scenario) -> None:
    m = _market(catalog, scenario)
    night = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    assert m.session_open(night)  # default scenario: always open
    strict = Scenario.from_text("extends: default\nalways_open: false\n")
    m2 = Market(catalog, strict, 1, START)
    assert m2.session_open(START)
    assert not m2.session_open(night)
    assert not m2.session_open(datetime(2026, 11, 26, 15, 0, tzinfo=UTC))  # Thanksgiving
    assert m2.session_open(datetime(2026, 11, 27, 17, 59, tzinfo=UTC))
    assert not m2.session_open(datetime(2026, 11, 27, 18, 0, tzinfo=UTC))  # 13:00 early close


def test_market_steps_ten_underlyings_for_an_hour_quickly(
    catalog: Catalog, scenario: Scenario
) -> None:
    m = _market(catalog, scenario)
    m.watch(SPY)
    began = time.process_time()
    m.advance(START + timedelta(hours=1))
    spent = time.process_time() - began
    # ~1 s on this machine; the bound leaves room for a loaded CI box.
    assert spent < 6.0, spent


def test_market_new_session_resets_volume_and_close(catalog: Catalog, scenario: Scenario) -> None:
    start = datetime(2026, 11, 24, 14, 29, 50, tzinfo=UTC)  # 09:29:50 ET
    m = Market(catalog, scenario, 8, start)
    m.watch(SPY)
    m.advance(start + timedelta(seconds=9.75))
    before = m.quote(SPY)
    assert before.volume > 0
    events = m.advance(start + timedelta(seconds=20))
    after = m.quote(SPY)
    at_open = [e for e in events if isinstance(e, TradePrinted)]
    assert after.close == before.last
    assert after.volume == sum(p.size for p in at_open)
    assert after.low <= after.open <= after.high


CALENDAR = """
name: calendar
always_open: false
instruments: [{symbol: SPY, price: "600.00"}]
"""


def test_market_is_dark_between_extended_sessions_and_crosses_a_holiday_at_once() -> None:
    """On the XNYS calendar nothing quotes or prints from a session day's 20:00 ET to the next
    session day's 04:00 ET (Thanksgiving is none), and crossing that costs nothing; the dark
    steps are skipped exactly, so chunking still does not matter."""
    scenario = Scenario.from_text(CALENDAR)
    start = datetime(2026, 11, 26, 0, 59, tzinfo=UTC)  # Wednesday 19:59 ET
    catalog = Catalog.build(date(2026, 11, 25), scenario)
    friday_4am = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    whole = Market(catalog, scenario, 3, start)
    whole.watch(SPY)
    evening = whole.advance(start + timedelta(seconds=60))  # to 20:00:00 ET, dark from there
    assert evening and max(e.quote.ts for e in evening if isinstance(e, QuoteChanged)) < (
        datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    )
    resting = whole.quote(SPY)
    began = time.process_time()
    assert whole.advance(friday_4am - timedelta(seconds=1)) == []  # Thanksgiving: dark
    assert time.process_time() - began < 1.0
    assert whole.quote(SPY) == resting
    morning = whole.advance(friday_4am + timedelta(minutes=10))
    assert [e for e in morning if isinstance(e, QuoteChanged)]
    assert min(e.quote.ts for e in morning if isinstance(e, QuoteChanged)) >= friday_4am
    chunked = Market(catalog, scenario, 3, start)
    chunked.watch(SPY)
    t = start
    while t < friday_4am + timedelta(minutes=10):
        t = min(t + timedelta(seconds=5317.25), friday_4am + timedelta(minutes=10))
        chunked.advance(t)
    assert chunked.quote(SPY) == whole.quote(SPY)
    # the dark hours are recorded as flat, volume-less bars: history stays continuous
    bars = whole.history(SPY, friday_4am, 36 * 3600, 3600, "TRADES")
    assert len(bars) == 36
    night = [b for b in bars if datetime(2026, 11, 26, 1, 0, tzinfo=UTC) <= b.time < friday_4am]
    assert night and all(b.volume == 0 and b.open == b.close == resting.last for b in night)


def test_market_session_close_is_the_prior_regular_close_on_the_calendar() -> None:
    """Each session opens with the prior session's regular-hours close as its close (tick 9),
    not the last after-hours print, and the next session is the next business day."""
    scenario = Scenario.from_text(CALENDAR)
    start = datetime(2026, 11, 25, 20, 59, 50, tzinfo=UTC)  # Wednesday 15:59:50 ET
    m = Market(Catalog.build(date(2026, 11, 25), scenario), scenario, 4, start)
    m.advance(datetime(2026, 11, 25, 20, 59, 59, 750000, tzinfo=UTC))
    at_close = m.quote(SPY).last
    m.advance(datetime(2026, 11, 26, 0, 59, tzinfo=UTC))  # after hours, prints go on
    evening_last = m.quote(SPY).last
    assert evening_last != at_close  # (this seed's after-hours tape moved)
    m.advance(datetime(2026, 11, 27, 14, 30, 1, tzinfo=UTC))  # Friday's open
    q = m.quote(SPY)
    assert q.close == at_close
    assert q.volume < 10_000  # the day's volume started over at the open
