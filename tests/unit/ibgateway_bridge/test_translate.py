"""translate/payloads: exact numbers, sentinels, IB time spellings, OCC symbols."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

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
    TwsZone,
    normalize_occ,
    occ_symbol,
    parse_connection_time_zone,
    parse_execution_time,
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
        ("20261126-14:30:01", datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        ("20260701 09:30:00 America/New_York", datetime(2026, 7, 1, 13, 30, tzinfo=UTC)),
        ("20261126 14:30:01 UTC", datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        (1795703401, datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        ("1795703401", datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        (1795703401500, datetime(2026, 11, 26, 14, 30, 1, 500000, tzinfo=UTC)),
        ("", None),
    ],
)
def test_parse_ib_time_all_spellings_give_aware_utc(raw: object, expected: datetime | None) -> None:
    parsed = parse_ib_time(raw)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("raw", "zone", "expected"),
    [
        ("20261126  09:30:01", "America/New_York", datetime(2026, 11, 26, 14, 30, 1, tzinfo=UTC)),
        ("20261126  09:30:01", "Europe/Berlin", datetime(2026, 11, 26, 8, 30, 1, tzinfo=UTC)),
        ("20261126", "America/New_York", datetime(2026, 11, 26, 5, 0, tzinfo=UTC)),
        # A zone in the string wins over the default.
        ("20261126 09:30:01 UTC", "Asia/Tokyo", datetime(2026, 11, 26, 9, 30, 1, tzinfo=UTC)),
    ],
)
def test_parse_ib_time_zone_less_spellings_take_the_zone_given(
    raw: str, zone: str, expected: datetime
) -> None:
    assert parse_ib_time(raw, ZoneInfo(zone)) == expected
    assert parse_ib_time(raw, zone) == expected


@pytest.mark.parametrize("raw", ["20261126  09:30:01", "20261126"])
def test_parse_ib_time_never_guesses_a_zone(raw: str) -> None:
    with pytest.raises(TranslationError) as e:
        parse_ib_time(raw)
    assert e.value.reason == "TIME_ZONE_REQUIRED"


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
    eastern = parse_connection_time_zone(b"20261126 08:00:00 EST")
    data = payloads.execution_payload(-1, contract, ex, 1, NOW, server_zone=eastern)
    assert data["exec_id"] == "0001f4e8.01"
    assert data["price"] == "450.05" and data["shares"] == "100.0"
    assert data["action"] == "BUY"
    assert data["time"] == "2026-11-26T14:30:01+00:00"
    assert data["time_zone"] == "America/New_York" and data["time_zone_source"] == "session"
    assert data["received_at"] == "2026-11-26T15:00:00+00:00"
    assert data["order_ref"] == "coid-7"
    assert data["strike"] is None


@pytest.mark.parametrize(
    ("handshake", "name", "raw"),
    [
        (b"20261203 11:28:21 UTC", "UTC", "UTC"),  # ibapi 9.81 keeps the handshake as bytes
        ("20261203 11:28:21 UTC", "UTC", "UTC"),
        ("20261203 11:28:21 GMT", "UTC", "GMT"),
        ("20261203 06:28:21 EST", "America/New_York", "EST"),
        ("20260703 07:28:21 EDT", "America/New_York", "EDT"),
        ("20261203 06:28:21 US/Eastern", "America/New_York", "US/Eastern"),
        ("20261203 05:28:21 CST", "America/Chicago", "CST"),
        ("20261203 03:28:21 PST", "America/Los_Angeles", "PST"),
        ("20261203 12:28:21 CET", "Europe/Berlin", "CET"),
        ("20260703 13:28:21 CEST", "Europe/Berlin", "CEST"),
        ("20261203 11:28:21 Europe/London", "Europe/London", "Europe/London"),
        ("20261203 19:28:21 HKT", "Asia/Hong_Kong", "HKT"),
        ("20261203 06:28:21 Eastern Standard Time", "America/New_York", "Eastern Standard Time"),
        (
            "20260703 13:28:21 Central European Summer Time",
            "Europe/Berlin",
            "Central European Summer Time",
        ),
        ("20261203 19:28:21 GMT+08:00", "UTC+08:00", "GMT+08:00"),
    ],
)
def test_connection_time_zone_from_the_handshake(handshake: object, name: str, raw: str) -> None:
    zone = parse_connection_time_zone(handshake)
    assert zone.known and zone.name == name and zone.raw == raw


@pytest.mark.parametrize(
    ("handshake", "raw"),
    [("20261203 11:28:21 Mars/Base", "Mars/Base"), ("20261203 11:28:21", None), (None, None)],
)
def test_connection_time_zone_unknown_is_said_so(handshake: object, raw: str | None) -> None:
    zone = parse_connection_time_zone(handshake)
    assert not zone.known and zone.name is None and zone.tz is None and zone.raw == raw


def test_fixed_offset_zone_is_exact() -> None:
    zone = parse_connection_time_zone("20261203 19:28:21 GMT+08:00")
    assert zone.tz == timezone(timedelta(hours=8))
    when, source, name = parse_execution_time("20261203  19:28:21", zone)
    assert when == datetime(2026, 12, 3, 11, 28, 21, tzinfo=UTC)
    assert (source, name) == ("session", "UTC+08:00")


@pytest.mark.parametrize(
    ("raw", "handshake", "expected", "source", "zone_name"),
    [
        # Zone-less: the gateway's zone from its handshake, never New York by default.
        ("20261126  09:30:01", "20261126 09:00:00 UTC", "2026-11-26T09:30:01", "session", "UTC"),
        (
            "20260701  09:30:01",
            "20260701 09:00:00 CEST",
            "2026-07-01T07:30:01",
            "session",
            "Europe/Berlin",
        ),
        (
            "20261126  09:30:01",
            "20261126 09:00:00 EST",
            "2026-11-26T14:30:01",
            "session",
            "America/New_York",
        ),
        # The zone in the execution's own time wins.
        (
            "20261126 09:30:01 US/Eastern",
            "20261126 09:00:00 UTC",
            "2026-11-26T14:30:01",
            "named",
            "America/New_York",
        ),
        ("20261126-14:30:01", "20261126 09:00:00 EST", "2026-11-26T14:30:01", "named", "UTC"),
    ],
)
def test_execution_time_uses_the_session_zone_when_the_time_names_none(
    raw: str, handshake: str, expected: str, source: str, zone_name: str
) -> None:
    when, got_source, got_name = parse_execution_time(raw, parse_connection_time_zone(handshake))
    assert when == datetime.fromisoformat(expected).replace(tzinfo=UTC)
    assert (got_source, got_name) == (source, zone_name)


def test_execution_payload_unknown_zone_keeps_the_raw_time_and_flags_it() -> None:
    contract = Contract()
    contract.conId, contract.symbol = 756733, "SPY"
    ex = Execution()
    ex.execId, ex.orderId, ex.side, ex.shares, ex.price = "0001f4e8.02", 12, "BOT", 1.0, 450.0
    ex.time = "20261126  09:30:01"
    for zone in (parse_connection_time_zone("20261126 09:00:00 Mars/Base"), None):
        data = payloads.execution_payload(-1, contract, ex, 1, NOW, server_zone=zone)
        assert data["time"] is None  # no instant is invented
        assert data["time_raw"] == "20261126  09:30:01"
        assert data["time_zone_source"] == "unknown" and data["time_zone"] is None
    # A time that names its zone needs no session zone.
    ex.time = "20261126 09:30:01 UTC"
    data = payloads.execution_payload(-1, contract, ex, 1, NOW)
    assert data["time"] == "2026-11-26T09:30:01+00:00" and data["time_zone_source"] == "named"


def test_tws_zone_is_a_value() -> None:
    assert parse_connection_time_zone("20261126 09:00:00 EST") == TwsZone(
        raw="EST", name="America/New_York", tz=ZoneInfo("America/New_York")
    )


def test_commission_payload_unset_realized_pnl_is_none() -> None:
    report = CommissionReport()
    report.execId, report.commission, report.currency = "x.01", 1.05, "USD"
    report.realizedPNL = UNSET_DOUBLE
    data = payloads.commission_payload(report, 1, NOW)
    assert data["commission"] == "1.05"
    assert data["realized_pnl"] is None
