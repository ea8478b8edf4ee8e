"""The 17:00 ET report, the pure part: when a day's report is due, how its figures are
summarised, and the geometry of its charts.

The report is due at 17:00 New York time of every session day, or at the session's close if that
were later, and never on a day without a session (weekend, holiday): the close comes from the
exchange calendar (the shell's `epm.calendar.session_close`), so an early close (13:00) still
reports at 17:00, after everything of the day has settled (the shortfall tick, the end-of-day
reconciliation 15 minutes after the close).

Chart geometry is computed here in exact decimals (SVG user units, two places) so a chart is a
function of the ledger's numbers alone: re-rendering the same day gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal

ZERO = Decimal(0)
_UNIT = Decimal("0.01")
REPORT_TIME = time(17, 0)


def report_due_at(day: date, close: datetime | None, tz: tzinfo) -> datetime | None:
    """When the report of `day` is due: 17:00 in `tz` (New York), or the close if later; None
    when `day` had no session (`close` None)."""
    if close is None:
        return None
    at = datetime.combine(day, REPORT_TIME, tzinfo=tz)
    return max(at, close)


def report_due(now: datetime, day: date, close: datetime | None, tz: tzinfo) -> bool:
    """True once the report of `day` (the trading day at `now`) is due: from its due time to the
    end of that day. A report missed entirely (beat down all evening) is written by hand
    (`epm report --day D`), never silently for a day that is over."""
    due = report_due_at(day, close, tz)
    return due is not None and now >= due and now.astimezone(tz).date() == day


def mean(values: Sequence[Decimal], places: Decimal = Decimal("0.0001")) -> Decimal | None:
    """The arithmetic mean, rounded half-even to `places`; None for no values."""
    if not values:
        return None
    return (sum(values, ZERO) / Decimal(len(values))).quantize(places, ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class StrategyExecution:
    """One strategy's execution quality over the day: intents that ended with metrics."""

    strategy: str
    intents: int
    filled_qty: Decimal
    mean_slippage_bps: Decimal | None
    mean_shortfall_bps: Decimal | None
    fees: Decimal


@dataclass(frozen=True, slots=True)
class IntentMetric:
    """An intent-level `execution_metrics` row, as far as the report needs it."""

    strategy: str
    filled_qty: Decimal | None
    slippage_bps: Decimal | None
    shortfall_bps: Decimal | None
    fees: Decimal | None


def by_strategy(metrics: Iterable[IntentMetric]) -> list[StrategyExecution]:
    """Per strategy, sorted by name: intents, filled quantity, the mean slippage and shortfall
    over the intents that have one (an unpriced intent has none), fees."""
    grouped: dict[str, list[IntentMetric]] = {}
    for m in metrics:
        grouped.setdefault(m.strategy, []).append(m)
    out: list[StrategyExecution] = []
    for strategy in sorted(grouped):
        rows = grouped[strategy]
        out.append(
            StrategyExecution(
                strategy=strategy,
                intents=len(rows),
                filled_qty=sum((r.filled_qty or ZERO for r in rows), ZERO),
                mean_slippage_bps=mean(
                    [r.slippage_bps for r in rows if r.slippage_bps is not None]
                ),
                mean_shortfall_bps=mean(
                    [r.shortfall_bps for r in rows if r.shortfall_bps is not None]
                ),
                fees=sum((r.fees or ZERO for r in rows), ZERO),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Bin:
    """A histogram bin [low, high) (the last one closed), and how many values fell in it."""

    low: Decimal
    high: Decimal
    count: int


def histogram(values: Sequence[Decimal], bins: int = 10) -> list[Bin]:
    """`bins` equal-width bins over [min, max] of `values`; one bin of width 1 around a single
    repeated value; none for no values."""
    if bins < 1:
        raise ValueError(f"a histogram needs at least one bin, got {bins}")
    if not values:
        return []
    low, high = min(values), max(values)
    if low == high:
        return [Bin(low - Decimal("0.5"), high + Decimal("0.5"), len(values))]
    width = (high - low) / Decimal(bins)
    counts = [0] * bins
    for v in values:
        index = min(int((v - low) / width), bins - 1)
        counts[index] += 1
    return [
        Bin(low + width * i, high if i == bins - 1 else low + width * (i + 1), counts[i])
        for i in range(bins)
    ]


@dataclass(frozen=True, slots=True)
class Rect:
    x: Decimal
    y: Decimal
    width: Decimal
    height: Decimal


@dataclass(frozen=True, slots=True)
class Plot:
    """A chart's drawing area inside its SVG: `left`/`top` margins, `width` × `height`."""

    left: Decimal
    top: Decimal
    width: Decimal
    height: Decimal


def _u(value: Decimal) -> Decimal:
    return value.quantize(_UNIT, ROUND_HALF_EVEN)


def bar_rects(bins: Sequence[Bin], plot: Plot) -> list[Rect]:
    """One bar per bin, side by side across the plot, heights proportional to the counts (the
    tallest fills the plot); an empty bin is a bar of height 0."""
    if not bins:
        return []
    tallest = max(b.count for b in bins) or 1
    slot = plot.width / Decimal(len(bins))
    gap = min(slot / Decimal(10), Decimal(2))
    out: list[Rect] = []
    for i, b in enumerate(bins):
        height = plot.height * Decimal(b.count) / Decimal(tallest)
        out.append(
            Rect(
                x=_u(plot.left + slot * i + gap / 2),
                y=_u(plot.top + plot.height - height),
                width=_u(slot - gap),
                height=_u(height),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Curve:
    """A series drawn as a polyline: its points in SVG units and the value range it spans."""

    name: str
    points: list[tuple[Decimal, Decimal]]


def curves(
    series: Mapping[str, Sequence[tuple[datetime, Decimal]]], plot: Plot
) -> tuple[list[Curve], Decimal, Decimal]:
    """Each named series (time, value) scaled into the plot on shared axes: time across (the
    earliest to the latest instant of any series), value up (min to max of all values, 0
    included so the zero line is on the chart). Returns the curves and the value range."""
    instants = [t for points in series.values() for t, _ in points]
    values = [v for points in series.values() for _, v in points]
    if not instants:
        return [], ZERO, ZERO
    t0, t1 = min(instants), max(instants)
    span_s = Decimal(str((t1 - t0).total_seconds())) or Decimal(1)
    low, high = min([*values, ZERO]), max([*values, ZERO])
    span_v = (high - low) or Decimal(1)
    out: list[Curve] = []
    for name in sorted(series):
        points = sorted(series[name])
        scaled = [
            (
                _u(plot.left + plot.width * Decimal(str((t - t0).total_seconds())) / span_s),
                _u(plot.top + plot.height - plot.height * (v - low) / span_v),
            )
            for t, v in points
        ]
        if len(scaled) == 1:
            # One snapshot is still a visible mark: a short flat segment.
            x, y = scaled[0]
            scaled = [(x, y), (_u(x + Decimal(4)), y)]
        out.append(Curve(name, scaled))
    return out, low, high


def value_y(value: Decimal, low: Decimal, high: Decimal, plot: Plot) -> Decimal:
    """Where `value` sits on a curve chart's vertical axis spanning [low, high]."""
    span = (high - low) or Decimal(1)
    return _u(plot.top + plot.height - plot.height * (value - low) / span)
