"""translate/payloads: exact numbers, sentinels, IB time spellings, OCC symbols."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from ibapi.commission_report import CommissionReport
from ibapi.contract import Contract
from ibapi.execution import Execution

from ibgateway_bridge import payloads
from ibgateway_bridge.translate import (
    UNSET_DECIMAL,
    UNSET_DOUBLE,
    UNSET_INTEGER,
    UNSET_LONG,
    TranslationError,
    normalize_occ,
    occ_symbol,
    parse_ib_time,
    parse_trading_hours,
    to_decimal,
    to_int,
)

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0.1, Decimal("0.1")),
        (101.25, Decimal("101.25")),
        (Decimal("3.0000000001"), Decimal("3.0000000001")),
        ("450.05", Decimal("450.05")),
        (7, Decimal(7)),
        (UNSET_DOUBLE, None),
        (UNSET_DECIMAL, None),
        (UNSET_INTEGER, None),
        ("", None),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
        ("1.7976931348623157E308", None),
    ],
)
def test_to_decimal_ib_values_are_exact_or_none(raw: object, expected: Decimal | None) -> None:
    assert to_decimal(raw) == expected


def test_to_decimal_float_keeps_the_decimal_ib_sent_not_the_binary_expansion() -> None:
    assert str(to_decimal(0.3)) == "0.3"


def test_to_decimal_garbage_raises_reason_code() -> None:
    with pytest.raises(TranslationError) as e:
        to_decimal("12x")
    assert e.value.reason == "INVALID_NUMBER"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(5, 5), ("17", 17), (UNSET_INTEGER, None), (UNSET_LONG, None), ("", None), (3.0, 3)],
)
def test_to_int_unset_markers_become_none(raw: object, expected: int | None) -> None:
    assert to_int(raw) == expected


def test_to_int_fraction_raises() -> None:
    with pytest.raises(TranslationError):
        to_int(2.5)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("20261126 09:30:01 US/Eastern", datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        ("20261126  09:30:01", datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        ("20261126-14:30:01", datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        ("20260701 09:30:00 America/New_York", datetime(2026, 7, 1, 13, 30, tzinfo=UTC)),
        ("20261126 14:30:01 UTC", datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        (1795703401, datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        ("1795703401", datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        (1795703401500, datetime(2026, 11, 26, 14, 30, 1, 500000, tzinfo=UTC)),
        ("20261126", datetime(2026, 11, 26, 5, 0, tzinfo=UTC)),
        ("", None),
    ],
)
def test_parse_ib_time_all_spellings_give_aware_utc(raw: object, expected: datetime | None) -> None:
    parsed = parse_ib_time(raw)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None


@pytest.mark.parametrize("raw", ["yesterday", "20261326 10:00:00", "20261126 10:00:00 Mars/Base"])
def test_parse_ib_time_bad_input_raises_reason_code(raw: str) -> None:
    with pytest.raises(TranslationError) as e:
        parse_ib_time(raw)
    assert e.value.reason in ("INVALID_TIMESTAMP", "UNKNOWN_TIME_ZONE")


def test_parse_trading_hours_skips_closed_days_and_converts_to_utc() -> None:
    spec = "20261126:CLOSED;20261127:0930-20261127:1300"
    sessions = parse_trading_hours(spec, "US/Eastern")
    assert sessions == [
        (datetime(2026, 11, 27, 14, 30, tzinfo=UTC), datetime(2026, 11, 27, 18, 0, tzinfo=UTC))
    ]


def test_occ_symbol_roundtrip_both_spellings() -> None:
    occ = occ_symbol("SPY", "20251121", "C", Decimal("450"))
    assert occ == "SPY   251121C00450000"
    assert normalize_occ("SPY251121C00450000") == occ
    assert normalize_occ(occ) == occ
    with pytest.raises(TranslationError):
        normalize_occ("SPY25112C0045")


def test_execution_payload_is_json_primitives_with_exact_decimals() -> None:
    contract = Contract()
    contract.conId, contract.symbol, contract.secType = 756733, "SPY", "STK"
    ex = Execution()
    ex.execId, ex.orderId, ex.clientId, ex.permId = "0001f4e8.01", 12, 1, 9001
    ex.side, ex.shares, ex.price, ex.cumQty, ex.avgPrice = "BOT", 100.0, 450.05, 100.0, 450.05
    ex.time, ex.acctNumber, ex.orderRef = "20261126  09:30:01", "DU1", "coid-7"
    data = payloads.execution_payload(-1, contract, ex, 1, NOW)
    assert data["exec_id"] == "0001f4e8.01"
    assert data["price"] == "450.05" and data["shares"] == "100.0"
    assert data["action"] == "BUY"
    assert data["time"] == "2026-11-26T14:30:01+00:00"
    assert data["received_at"] == "2026-11-26T15:00:00+00:00"
    assert data["order_ref"] == "coid-7"
    assert data["strike"] is None


def test_commission_payload_unset_realized_pnl_is_none() -> None:
    report = CommissionReport()
    report.execId, report.commission, report.currency = "x.01", 1.05, "USD"
    report.realizedPNL = UNSET_DOUBLE
    data = payloads.commission_payload(report, 1, NOW)
    assert data["commission"] == "1.05"
    assert data["realized_pnl"] is None
