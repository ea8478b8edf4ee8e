"""A drill's outcome and its differences from the expected one (`models.replay.drill`)."""

from __future__ import annotations

from models.replay.drill import differences, outcome


def fill(signal: str, price: str, superseded: str = "") -> dict[str, str]:
    return {
        "signal_id": signal,
        "symbol": "AAPL",
        "side": "BUY",
        "shares": "100",
        "price": price,
        "commission": "0.35",
        "superseded_by": superseded,
        "account": "DU1",
    }


def test_the_outcome_keeps_effective_fills_and_only_the_compared_fields() -> None:
    got = outcome([fill("a", "1.00", superseded="x.02"), fill("a", "1.01")], [], [])
    assert got["fills"] == [
        {
            "signal_id": "a",
            "symbol": "AAPL",
            "side": "BUY",
            "shares": "100",
            "price": "1.01",
            "commission": "0.35",
        }
    ]


def test_every_difference_is_one_line_naming_what_and_where() -> None:
    pnl = {
        "strategy": "S",
        "signal_id": "a",
        "realized_pl": "1.00",
        "unrealized_pl": "0.00",
        "fees": "0.35",
        "net_pl": "0.65",
    }
    expected = outcome([fill("a", "1.01"), fill("b", "2.00")], [pnl], [])
    same = outcome([fill("a", "1.01"), fill("b", "2.00")], [pnl], [])
    assert differences(expected, same) == []
    actual = outcome([fill("a", "1.02")], [pnl, {**pnl, "signal_id": "c"}], [])
    assert differences(expected, actual) == [
        "fills: expected 2 rows, got 1",
        "fills row 1 (a): price expected '1.01', got '1.02'",
        "fills row 2: missing {'signal_id': 'b', 'symbol': 'AAPL', 'side': 'BUY', "
        "'shares': '100', 'price': '2.00', 'commission': '0.35'}",
        "pnl: expected 1 rows, got 2",
        "pnl row 2: unexpected {'strategy': 'S', 'signal_id': 'c', 'realized_pl': '1.00', "
        "'unrealized_pl': '0.00', 'fees': '0.35', 'net_pl': '0.65'}",
    ]
