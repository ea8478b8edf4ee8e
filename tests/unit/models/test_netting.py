"""Netting per underlying (`models.netting`): quantity x multiplier x greek, stock one delta a
share, and positions without (fresh) greeks named, never counted as zero."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from models.netting import (
    GREEKS_MAX_AGE,
    Greeks,
    HeldPosition,
    greeks_from_fields,
    net_by_underlying,
)

D = Decimal
NOW = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


def held(con_id: int, strategy: str, und: str, sec: str, qty: str, mult: str = "1") -> HeldPosition:
    return HeldPosition(con_id, strategy, und, sec, D(qty), D(mult))


def greeks(delta: str, gamma: str, vega: str, theta: str, age_s: int = 10) -> Greeks:
    return Greeks(D(delta), D(gamma), D(vega), D(theta), NOW - timedelta(seconds=age_s))


def test_stock_and_options_net_per_underlying_with_the_multiplier() -> None:
    positions = [
        held(1, "A", "SPY", "STK", "-150"),
        held(2, "A", "SPY", "OPT", "3", "100"),  # long 3 calls
        held(3, "B", "SPY", "OPT", "-2", "100"),  # short 2 puts
        held(4, "B", "QQQ", "STK", "40"),
        held(5, "B", "QQQ", "STK", "0"),  # flat: nothing
    ]
    nets = net_by_underlying(
        positions,
        {2: greeks("0.55", "0.021", "0.18", "-0.09"), 3: greeks("-0.30", "0.015", "0.12", "-0.05")},
        NOW,
    )
    spy = nets["SPY"]
    # -150 + 300 x 0.55 + (-200) x (-0.30) = -150 + 165 + 60
    assert spy.net_delta == D("75.00")
    assert spy.net_gamma == D("6.300") - D("3.000")
    assert spy.net_vega == D("54.00") - D("24.00")
    assert spy.net_theta == D("-27.00") + D("10.00")
    assert spy.positions == 3 and spy.complete
    assert spy.by_strategy == {"A": D("15.00"), "B": D("60.00")}
    assert nets["QQQ"].net_delta == D(40) and nets["QQQ"].positions == 1
    assert (nets["QQQ"].net_gamma, nets["QQQ"].net_vega) == (D(0), D(0))


def test_missing_and_stale_greeks_are_named_and_left_out() -> None:
    positions = [
        held(1, "A", "SPY", "STK", "100"),
        held(2, "A", "SPY", "OPT", "1", "100"),  # no greeks at all
        held(3, "A", "SPY", "OPT", "1", "100"),  # delta only
        held(4, "B", "SPY", "OPT", "1", "100"),  # too old
        held(6, "B", "SPY", "BOND", "1"),  # a type netting cannot price
    ]
    old = int(GREEKS_MAX_AGE.total_seconds()) + 1
    nets = net_by_underlying(
        positions,
        {
            3: Greeks(D("0.5"), None, None, None, NOW),
            4: greeks("0.5", "0.01", "0.1", "-0.1", age_s=old),
        },
        NOW,
    )
    spy = nets["SPY"]
    assert spy.net_delta == D(100)
    assert spy.missing_greeks == ["2:A", "3:A", "6:B"]
    assert spy.stale_greeks == ["4:B"]
    assert not spy.complete and spy.positions == 5


def test_greeks_from_an_md_hash() -> None:
    g = greeks_from_fields(
        {
            "model_delta": "0.42",
            "model_gamma": "0.03",
            "model_vega": "0.2",
            "model_theta": "-0.07",
            "ts": NOW.isoformat(),
        }
    )
    assert g.values() == (D("0.42"), D("0.03"), D("0.2"), D("-0.07")) and g.as_of == NOW
    bad = greeks_from_fields({"model_delta": "nan", "model_gamma": "x", "ts": "2026-12-04T15:00"})
    assert bad.values() is None and bad.delta is None and bad.as_of is None
