"""The FOMC scenario's venue events (issue 13 drill): spreads blow out on the statement beyond
what the vol spike alone does, TSLA takes a volatility pause, and the gateway drops everyone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from tws_sim.market import Catalog, Market, Scenario
from tws_sim.market.scenario import DisconnectFault
from tws_sim.types import HaltChanged, HaltState, QuoteChanged

SESSION = date(2026, 11, 24)
START = datetime(2026, 11, 24, 18, 59, tzinfo=UTC)  # 13:59 ET
AAPL, TSLA = 265598, 76792991

SPIKE_ONLY = """\
name: spike-only
extends: default
version: 1
always_open: true
regimes:
  - {name: spike, at: "14:00", duration_s: 600, vol_mult: 5.0}
"""


def _spike_spread(scenario: Scenario) -> Decimal:
    """AAPL's mean quoted spread over the first two minutes of the statement."""
    m = Market(Catalog.build(SESSION, scenario), scenario, 5, START)
    m.watch(AAPL)
    m.advance(START + timedelta(seconds=60))
    quotes = [
        e.quote
        for e in m.advance(START + timedelta(seconds=180))
        if isinstance(e, QuoteChanged) and e.quote.con_id == AAPL
    ]
    return sum((q.ask - q.bid for q in quotes), Decimal(0)) / len(quotes)


def test_spread_mult_widens_quotes_beyond_the_vol_spike() -> None:
    fomc = Scenario.named("fomc")
    spike = next(r for r in fomc.regimes if r.name == "fomc-spike")
    assert spike.spread_mult == 4.0
    plain = _spike_spread(Scenario.from_text(SPIKE_ONLY))
    blown = _spike_spread(fomc)
    assert blown > 3 * plain


def test_default_spread_mult_leaves_the_path_unchanged() -> None:
    doc = SPIKE_ONLY.replace("vol_mult: 5.0}", "vol_mult: 5.0, spread_mult: 1.0}")
    assert _spike_spread(Scenario.from_text(doc)) == _spike_spread(Scenario.from_text(SPIKE_ONLY))


def test_fomc_pauses_tsla_on_the_headline_for_five_minutes() -> None:
    scenario = Scenario.named("fomc")
    m = Market(Catalog.build(SESSION, scenario), scenario, 2, START)
    m.watch(TSLA)
    before = [e for e in m.advance(START + timedelta(seconds=59)) if isinstance(e, HaltChanged)]
    assert before == [] and m.quote(TSLA).halted is HaltState.TRADING
    at = [e for e in m.advance(START + timedelta(seconds=61)) if isinstance(e, HaltChanged)]
    assert [(e.con_id, e.state) for e in at] == [(TSLA, HaltState.VOLATILITY_HALT)]
    m.advance(START + timedelta(seconds=359))
    assert m.quote(TSLA).halted is HaltState.VOLATILITY_HALT
    m.advance(START + timedelta(seconds=361))
    assert m.quote(TSLA).halted is HaltState.TRADING


def test_fomc_drops_the_gateway_for_ten_seconds_a_minute_in() -> None:
    (drop,) = Scenario.named("fomc").faults_of("disconnect")
    assert isinstance(drop, DisconnectFault) and drop.refuse
    assert drop.begins(START) == datetime(2026, 11, 24, 19, 1, tzinfo=UTC)
    assert drop.active(datetime(2026, 11, 24, 19, 1, 9, tzinfo=UTC), START)
    assert not drop.active(datetime(2026, 11, 24, 19, 1, 10, tzinfo=UTC), START)
