"""Catalog: stable con_ids, option chains, reqContractDetails wildcards, OCC symbols, metadata."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal

import pytest

from tws_sim.market import Catalog, Scenario, occ_symbol, price_increment
from tws_sim.market.catalog import DEFAULT_STOCKS, option_con_id
from tws_sim.types import Right, SecType

SESSION = date(2026, 11, 25)  # a Wednesday; Thanksgiving (26th) is a holiday, 27th an early close


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.build(SESSION, Scenario.default())


def test_catalog_default_stocks_have_ib_con_ids(catalog: Catalog) -> None:
    spy = catalog.match("SPY", "STK")
    assert [i.con_id for i in spy] == [756733]
    assert catalog.get(265598) is not None and catalog.get(265598).symbol == "AAPL"
    assert {i.symbol for i in catalog.underlyings()} == set(DEFAULT_STOCKS)
    assert spy[0].primary_exchange == "ARCA" and spy[0].long_name == "SPDR S&P 500 ETF TRUST"
    assert "SMART" in spy[0].valid_exchanges and spy[0].min_tick == Decimal("0.01")


def test_catalog_rebuild_gives_same_option_con_ids(catalog: Catalog) -> None:
    again = Catalog.build(SESSION, Scenario.default())
    ids = sorted(i.con_id for i in catalog.options_of(756733))
    assert ids == sorted(i.con_id for i in again.options_of(756733))
    assert len(set(ids)) == len(ids)
    assert all(0 < i < 2**31 for i in ids)


def test_catalog_option_con_id_depends_on_every_key_part() -> None:
    base = option_con_id("SPY", SESSION, Right.CALL, Decimal("600"))
    assert base == option_con_id("SPY", SESSION, Right.CALL, Decimal("600.0"))
    assert base != option_con_id("SPY", SESSION, Right.PUT, Decimal("600"))
    assert base != option_con_id("SPY", SESSION, Right.CALL, Decimal("601"))
    assert base != option_con_id("QQQ", SESSION, Right.CALL, Decimal("600"))


def test_catalog_spy_has_daily_expiries_skipping_holiday(catalog: Catalog) -> None:
    expiries = sorted({i.expiry for i in catalog.options_of(756733)})
    assert expiries[0] == SESSION  # 0DTE
    assert date(2026, 11, 26) not in expiries  # Thanksgiving
    assert date(2026, 11, 27) in expiries and date(2026, 11, 30) in expiries


def test_catalog_single_stock_has_weekly_fridays_only(catalog: Catalog) -> None:
    expiries = sorted({i.expiry for i in catalog.options_of(265598)})
    assert expiries and all(e.weekday() == 4 for e in expiries)
    assert expiries[0] == date(2026, 11, 27)
    assert len(expiries) == 4


def test_catalog_strikes_surround_spot(catalog: Catalog) -> None:
    strikes = sorted({i.strike for i in catalog.options_of(756733)})
    assert strikes[0] < Decimal("600") < strikes[-1]
    assert Decimal("600") in strikes
    assert {b - a for a, b in itertools.pairwise(strikes)} == {Decimal("1")}
    aapl = sorted({i.strike for i in catalog.options_of(265598)})
    assert Decimal("230") in aapl and Decimal("232.5") in aapl
    assert all(s % Decimal("2.5") == 0 for s in aapl)
    assert all("E" not in str(s) for s in aapl)  # plain strikes on the wire, never 2.3E+2


def test_catalog_match_wildcards(catalog: Catalog) -> None:
    all_spy = catalog.match("SPY", "")
    opts = catalog.match("SPY", "OPT")
    assert len(all_spy) == len(opts) + 1
    day = catalog.match("SPY", "OPT", expiry="20261125")
    assert day and all(i.expiry == SESSION for i in day)
    month = catalog.match("SPY", "OPT", expiry="202611")
    assert len(month) > len(day)
    calls = catalog.match("SPY", "OPT", "20261125", Decimal("600"), "C")
    assert len(calls) == 1 and calls[0].right is Right.CALL
    both = catalog.match("SPY", "OPT", "20261125", Decimal("600"), "")
    assert {i.right for i in both} == {Right.CALL, Right.PUT}
    assert catalog.match("SPY", "OPT", "20261125", Decimal("600"), "CALL") == calls
    assert catalog.match("spy", "STK", exchange="SMART", currency="USD")[0].con_id == 756733
    assert catalog.match("SPY", "STK", strike=Decimal("0"))[0].con_id == 756733


def test_catalog_match_by_occ_local_symbol_and_con_id(catalog: Catalog) -> None:
    local = occ_symbol("SPY", SESSION, Right.PUT, Decimal("595"))
    assert local == "SPY   261125P00595000" and len(local) == 21
    found = catalog.match("", "OPT", local_symbol=local)
    assert len(found) == 1 and found[0].strike == Decimal("595") and found[0].right is Right.PUT
    assert catalog.match("", "", local_symbol="SPY 261125P00595000") == found
    assert catalog.match("", "", con_id=found[0].con_id) == found
    assert catalog.match("QQQ", "", con_id=found[0].con_id) == []


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"symbol": "ZZZZ", "sec_type": "STK"},
        {"symbol": "SPY", "sec_type": "FUT"},
        {"symbol": "SPY", "sec_type": "OPT", "expiry": "20261126"},
        {"symbol": "SPY", "sec_type": "OPT", "expiry": "2026-11-25"},
        {"symbol": "SPY", "sec_type": "OPT", "strike": Decimal("600.5")},
        {"symbol": "SPY", "sec_type": "STK", "exchange": "EUREX"},
        {"symbol": "SPY", "sec_type": "STK", "currency": "EUR"},
        {"symbol": "", "sec_type": "STK"},
        {"symbol": "", "sec_type": "", "con_id": 42},
        {"symbol": "", "sec_type": "", "local_symbol": "SPY   261125P00595001"},
    ],
)
def test_catalog_match_unknown_is_empty(catalog: Catalog, kwargs: dict) -> None:
    assert catalog.match(**kwargs) == []


def test_catalog_option_metadata(catalog: Catalog) -> None:
    opt = catalog.match("AAPL", "OPT", "20261127", Decimal("230"), "C")[0]
    assert opt.sec_type is SecType.OPT and opt.multiplier == 100
    assert opt.underlying_con_id == 265598 and opt.trading_class == "AAPL"
    assert {"SMART", "CBOE", "BOX", "ISE", "PHLX", "AMEX"} <= set(opt.valid_exchanges)
    assert price_increment(opt, Decimal("2.99")) == Decimal("0.01")
    assert price_increment(opt, Decimal("3.00")) == Decimal("0.05")
    spy_opt = catalog.match("SPY", "OPT", "20261125", Decimal("600"), "C")[0]
    assert price_increment(spy_opt, Decimal("12.00")) == Decimal("0.01")
    stock = catalog.get(756733)
    assert stock is not None and price_increment(stock, Decimal("600")) == Decimal("0.01")


def test_catalog_option_params_rows(catalog: Catalog) -> None:
    rows = catalog.option_params(756733)
    assert rows and rows[0][0] == "SMART"
    _exchange, trading_class, multiplier, expirations, strikes = rows[0]
    assert trading_class == "SPY" and multiplier == "100"
    assert expirations[0] == "20261125" and list(expirations) == sorted(expirations)
    assert Decimal("600") in strikes
    assert catalog.option_params(123) == []


def test_catalog_trading_hours_in_ib_format(catalog: Catalog) -> None:
    trading, liquid, tz = catalog.trading_hours(756733, days=3)
    assert tz == "US/Eastern"
    assert trading.split(";") == [
        "20261125:0400-20261125:2000",
        "20261126:CLOSED",
        "20261127:0400-20261127:1700",
    ]
    assert liquid.split(";")[0] == "20261125:0930-20261125:1600"
    assert liquid.split(";")[2] == "20261127:0930-20261127:1300"
    opt = catalog.options_of(756733)[0]
    assert catalog.trading_hours(opt.con_id, days=1)[0] == "20261125:0930-20261125:1600"
    assert catalog.trading_hours(1, days=1) == ("", "", "")
