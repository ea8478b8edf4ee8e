"""The report's pure core: the 17:00 ET due rule on the exchange calendar (a weekend, a holiday,
an early close), the strategy summary, and chart geometry that stays inside its plot."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from epm.calendar import ET, session_close
from models.report import (
    Bin,
    IntentMetric,
    Plot,
    bar_rects,
    by_strategy,
    curves,
    histogram,
    report_due,
    report_due_at,
)

D = Decimal


def due(at_et: datetime) -> bool:
    """The rule as the beat task applies it: the trading day at `at_et`, its close."""
    day = at_et.astimezone(ET).date()
    return report_due(at_et.astimezone(UTC), day, session_close(day), ET)


def et(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=ET)


def test_a_regular_session_reports_from_17_00_et_until_midnight() -> None:
    assert not due(et(2026, 12, 3, 16, 0))  # the close itself
    assert not due(et(2026, 12, 3, 16, 59))
    assert due(et(2026, 12, 3, 17, 0))
    assert due(et(2026, 12, 3, 23, 59))
    assert report_due_at(date(2026, 12, 3), session_close(date(2026, 12, 3)), ET) == et(
        2026, 12, 3, 17
    )


def test_the_weekend_never_reports() -> None:
    for day in (5, 6):  # Saturday, Sunday
        assert not any(due(et(2026, 12, day, h)) for h in range(24))
    assert report_due_at(date(2026, 12, 5), session_close(date(2026, 12, 5)), ET) is None


def test_a_holiday_never_reports() -> None:
    # Thanksgiving and Christmas 2026: no session.
    for day in (date(2026, 11, 26), date(2026, 12, 25)):
        assert session_close(day) is None
        assert not any(due(et(day.year, day.month, day.day, h)) for h in range(24))


def test_an_early_close_still_reports_at_17_00_et_not_at_its_close() -> None:
    # The day after Thanksgiving closes at 13:00 ET.
    close = session_close(date(2026, 11, 27))
    assert close == et(2026, 11, 27, 13)
    assert not due(et(2026, 11, 27, 13, 30))
    assert not due(et(2026, 11, 27, 16, 59))
    assert due(et(2026, 11, 27, 17, 0))


def test_a_session_closing_after_17_00_reports_at_its_close() -> None:
    late = et(2026, 12, 3, 18, 30)
    assert report_due_at(date(2026, 12, 3), late, ET) == late
    assert not report_due(et(2026, 12, 3, 18, 0), date(2026, 12, 3), late, ET)
    assert report_due(et(2026, 12, 3, 18, 30), date(2026, 12, 3), late, ET)


def test_the_next_morning_the_day_is_over_and_nothing_is_due() -> None:
    friday = date(2026, 12, 4)
    monday_morning = et(2026, 12, 7, 1)
    assert not report_due(monday_morning, friday, session_close(friday), ET)
    assert not due(et(2026, 12, 7, 9, 30))


def test_by_strategy_means_only_over_intents_with_a_figure() -> None:
    rows = by_strategy(
        [
            IntentMetric("B", D(10), D("1.5"), D(2), D("0.10")),
            IntentMetric("A", D(5), None, None, None),
            IntentMetric("B", D(20), D("2.5"), None, D("0.20")),
            IntentMetric("A", D(5), D("-3"), D("4"), D("1")),
        ]
    )
    assert [(r.strategy, r.intents, r.filled_qty) for r in rows] == [("A", 2, 10), ("B", 2, 30)]
    assert (rows[0].mean_slippage_bps, rows[0].mean_shortfall_bps, rows[0].fees) == (
        D("-3"),
        D("4"),
        D("1"),
    )
    assert (rows[1].mean_slippage_bps, rows[1].mean_shortfall_bps, rows[1].fees) == (
        D("2"),
        D("2"),
        D("0.30"),
    )


def test_histogram_counts_every_value_once_the_maximum_in_the_last_bin() -> None:
    values = [D(v) for v in ("-2", "0", "0.5", "1", "3", "8")]
    bins = histogram(values, 5)
    assert [b.count for b in bins] == [1, 3, 1, 0, 1]  # [-2,0) [0,2) [2,4) [4,6) [6,8]
    assert (bins[0].low, bins[-1].high) == (D(-2), D(8))
    assert sum(b.count for b in bins) == len(values)
    assert histogram([], 5) == []
    assert histogram([D(3), D(3)], 4) == [Bin(D("2.5"), D("3.5"), 2)]
    with pytest.raises(ValueError, match="at least one bin"):
        histogram(values, 0)


PLOT = Plot(D(50), D(10), D(500), D(200))


def test_bars_sit_side_by_side_on_the_axis_the_tallest_filling_the_plot() -> None:
    bins = [Bin(D(0), D(1), 1), Bin(D(1), D(2), 4), Bin(D(2), D(3), 0)]
    rects = bar_rects(bins, PLOT)
    assert [r.height for r in rects] == [D(50), D(200), D(0)]
    assert all(r.y + r.height == D(210) for r in rects)  # on the bottom axis
    assert all(r.width > 0 for r in rects)
    assert rects[0].x >= PLOT.left and rects[-1].x + rects[-1].width <= PLOT.left + PLOT.width
    assert rects[0].x + rects[0].width < rects[1].x  # a gap between bars


def test_curves_share_axes_zero_included_and_stay_in_the_plot() -> None:
    t0 = datetime(2026, 12, 3, 15, tzinfo=UTC)
    series = {
        "B": [(t0, D(10)), (t0 + timedelta(minutes=10), D(30))],
        "A": [(t0 + timedelta(minutes=5), D(20))],
    }
    drawn, low, high = curves(series, PLOT)
    assert (low, high) == (D(0), D(30))
    assert [c.name for c in drawn] == ["A", "B"]
    b = drawn[1].points
    assert b[0] == (D(50), D("143.33"))  # 10 of 0..30, from the top at 10
    assert b[1] == (D(550), D(10))  # the latest instant, the highest value
    a = drawn[0].points
    assert len(a) == 2 and a[0][0] == D(300) and a[1][0] > a[0][0]  # one point still drawn
    for curve in drawn:
        for x, y in curve.points:
            assert PLOT.left <= x <= PLOT.left + PLOT.width + 4
            assert PLOT.top <= y <= PLOT.top + PLOT.height
    assert curves({}, PLOT) == ([], D(0), D(0))
