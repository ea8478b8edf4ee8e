"""`--param` overrides, the market-data rows a replay reads, and the side-by-side table
(`models.replay.params`, `models.replay.events`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from models.replay.events import DataError, Kind, event_from_row, in_time_order, kind_of
from models.replay.params import ParamError, apply_overrides, comparison_rows, parse_override


def test_overrides_change_intent_fields_and_playbook_params_per_strategy() -> None:
    intent = {"strategy": "Momentum_EQ", "urgency": "High", "params": {"slices": "4"}}
    other = {"strategy": "Gamma_Hedge", "urgency": "High"}
    overrides = [
        parse_override("urgency=Passive"),
        parse_override("Momentum_EQ:params.cadence_s=30"),
    ]
    assert apply_overrides(intent, overrides) == {
        "strategy": "Momentum_EQ",
        "urgency": "Passive",
        "params": {"slices": "4", "cadence_s": "30"},
    }
    assert apply_overrides(other, overrides) == {"strategy": "Gamma_Hedge", "urgency": "Passive"}
    assert intent["urgency"] == "High"  # the recorded intent is left as it was
    assert overrides[1].label == "Momentum_EQ:params.cadence_s=30"


@pytest.mark.parametrize("text", ["urgency", "colour=red", "params.=1", "urgency="])
def test_a_param_that_names_nothing_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(ParamError, match="--param"):
        parse_override(text)


def test_the_comparison_adds_signals_up_per_run_and_strategy_exactly() -> None:
    run = [
        {
            "strategy": "S",
            "realized_pl": "0.10",
            "unrealized_pl": "0.20",
            "fees": "0.0051",
            "net_pl": "0.2949",
        },
        {
            "strategy": "S",
            "realized_pl": "0.20",
            "unrealized_pl": "0",
            "fees": "0",
            "net_pl": "0.2",
        },
    ]
    rows = comparison_rows([("a", run), ("b", run[:1])])
    assert rows == [
        {
            "run": "a",
            "strategy": "S",
            "realized_pl": "0.30",
            "unrealized_pl": "0.20",
            "fees": "0.01",
            "net_pl": "0.49",
        },
        {
            "run": "b",
            "strategy": "S",
            "realized_pl": "0.10",
            "unrealized_pl": "0.20",
            "fees": "0.01",
            "net_pl": "0.29",
        },
    ]


def test_rows_of_quotes_bars_and_trades_become_exact_events() -> None:
    assert kind_of(["ts", "symbol", "bid", "ask", "volume"]) is Kind.QUOTE
    assert kind_of(["ts", "symbol", "open", "high", "low", "close"]) is Kind.BAR
    assert kind_of(["ts", "symbol", "price", "size"]) is Kind.TRADE
    with pytest.raises(DataError, match="needs the columns"):
        kind_of(["ts", "symbol", "mid"])
    q = event_from_row(
        {"ts": "2026-12-03T10:00:00-05:00", "symbol": "aapl", "bid": "200.0125", "ask": "200.03"},
        Kind.QUOTE,
        2,
    )
    assert (q.ts, q.symbol, q.bid, q.ask) == (
        datetime(2026, 12, 3, 15, tzinfo=UTC),
        "AAPL",
        Decimal("200.0125"),
        Decimal("200.03"),
    )
    bar = event_from_row(
        {
            "ts": "2026-12-03T15:00:00Z",
            "symbol": "SPY",
            "open": "1",
            "high": "3",
            "low": "0.5",
            "close": "2",
            "volume": "900",
        },
        Kind.BAR,
        3,
    )
    assert (bar.bid, bar.ask, bar.low, bar.high, bar.volume) == tuple(
        Decimal(x) for x in ("2", "2", "0.5", "3", "900")
    )
    later = event_from_row(
        {"ts": "2026-12-03T15:00:01Z", "symbol": "A", "price": "5"}, Kind.TRADE, 4
    )
    assert [e.symbol for e in in_time_order([later, bar, q])] == ["AAPL", "SPY", "A"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"ts": "2026-12-03T10:00:00", "symbol": "A", "bid": "1", "ask": "2"}, "no UTC offset"),
        ({"ts": "yesterday", "symbol": "A", "bid": "1", "ask": "2"}, "not an ISO-8601"),
        ({"ts": "2026-12-03T15:00Z", "symbol": "A", "bid": 1.5, "ask": "2"}, "is a float"),
        ({"ts": "2026-12-03T15:00Z", "symbol": "A", "bid": "3", "ask": "2"}, "below bid"),
        ({"ts": "2026-12-03T15:00Z", "symbol": "", "bid": "1", "ask": "2"}, "symbol is empty"),
        ({"ts": "2026-12-03T15:00Z", "symbol": "A", "bid": "x", "ask": "2"}, "not a number"),
    ],
)
def test_a_bad_row_is_refused_naming_its_row_and_column(
    row: dict[str, object], message: str
) -> None:
    with pytest.raises(DataError, match=f"row 7: .*{message}"):
        event_from_row(row, Kind.QUOTE, 7)
