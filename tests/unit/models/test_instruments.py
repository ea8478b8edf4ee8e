"""OCC symbols and tickers → contract values, and the codes for text that is neither."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.instruments import (
    InstrumentError,
    InstrumentKind,
    OptionContract,
    OptionRight,
    StockContract,
    parse_instrument,
    parse_occ,
)
from models.rejects import RejectReason


def test_parse_occ_padded_form_gives_smart_usd_option() -> None:
    contract = parse_occ("SPY   251121C00450000")
    assert contract == OptionContract(
        root="SPY", expiry=date(2025, 11, 21), right=OptionRight.CALL, strike=Decimal("450")
    )
    assert (contract.multiplier, contract.exchange, contract.currency) == (100, "SMART", "USD")
    assert contract.kind is InstrumentKind.OPTION


def test_parse_occ_compact_form_equals_padded_form() -> None:
    assert parse_occ("SPY251121C00450000") == parse_occ("SPY   251121C00450000")


def test_parse_occ_fractional_strike_and_put_are_exact() -> None:
    contract = parse_occ("QQQ   260116P00512500")
    assert contract.strike == Decimal("512.5")
    assert contract.right is OptionRight.PUT


def test_occ_symbol_round_trips_to_padded_form() -> None:
    assert parse_occ("SPXW251121P05900000").occ_symbol == "SPXW  251121P05900000"


def test_weekly_root_maps_to_its_underlying() -> None:
    contract = parse_occ("SPXW  251121P05900000")
    assert (contract.underlying, contract.trading_class) == ("SPX", "SPXW")


def test_six_character_root_fills_the_padding() -> None:
    contract = parse_occ("GOOGL1251121C00100000")
    assert contract.root == "GOOGL1"


@pytest.mark.parametrize(
    "text",
    [
        "SPY 251121C00450000",  # one space: neither form
        "SPY   251321C00450000",  # month 13
        "SPY   250230C00450000",  # 30 February
        "SPY   251121X00450000",  # right X
        "SPY   251121C0045000",  # 7-digit strike
        "SPY   251121C00000000",  # zero strike
        "spy   251121C00450000",  # lower-case root
        "1SPY  251121C00450000",  # root starts with a digit
        "TOOLONGR251121C00450000",  # root of 8
        "SPY251121C00450000 ",  # trailing space
    ],
)
def test_malformed_occ_symbols_are_refused_with_their_code(text: str) -> None:
    with pytest.raises(InstrumentError) as info:
        parse_instrument(text)
    assert info.value.reason is RejectReason.MALFORMED_OCC_SYMBOL


@pytest.mark.parametrize("text", ["AAPL", "BRK.B", "F", "GOOGL"])
def test_tickers_parse_to_stock_contracts(text: str) -> None:
    contract = parse_instrument(text)
    assert contract == StockContract(symbol=text)
    assert contract.kind is InstrumentKind.STOCK


def test_share_class_uses_ibs_space_spelling() -> None:
    assert StockContract("BRK.B").ib_symbol == "BRK B"


@pytest.mark.parametrize("text", ["", "aapl", "AAPL!", " AAPL", "TOOLONGX", "BRK.BB", "12"])
def test_text_that_is_no_ticker_is_an_invalid_instrument(text: str) -> None:
    with pytest.raises(InstrumentError) as info:
        parse_instrument(text)
    assert info.value.reason is RejectReason.INVALID_INSTRUMENT


@given(
    root=st.from_regex(r"[A-Z][A-Z0-9]{0,5}", fullmatch=True),
    expiry=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    right=st.sampled_from(OptionRight),
    thousandths=st.integers(min_value=1, max_value=99_999_999),
)
def test_occ_text_of_any_contract_parses_back_to_it(
    root: str, expiry: date, right: OptionRight, thousandths: int
) -> None:
    contract = OptionContract(root, expiry, right, Decimal(thousandths) / 1000)
    assert parse_instrument(contract.occ_symbol) == contract
    compact = contract.occ_symbol.replace(" ", "")
    assert parse_instrument(compact) == contract


@given(st.text(max_size=40))
def test_parse_instrument_raises_only_instrument_errors(text: str) -> None:
    try:
        parse_instrument(text)
    except InstrumentError as e:
        assert e.reason in (RejectReason.INVALID_INSTRUMENT, RejectReason.MALFORMED_OCC_SYMBOL)
