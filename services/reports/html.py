"""The report as one self-contained HTML page: inline CSS and SVG, no script, no external URL, so
it opens the same from a mail attachment, an archive or a browser without network.

Charts are drawn from `models.report` geometry: the P&L curve (each strategy's net P&L from the
mark tick's snapshots), the slippage distribution (per child order, bps against its reference)
and the fill-latency histogram (signal received → first fill, ms). Every chart carries
`data-points`, the number of values it drew, and its marks carry the values they stand for, so
a reader (or a test) can check a chart against the tables below it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING

from epm.calendar import ET
from models.report import Plot, bar_rects, curves, histogram, value_y

if TYPE_CHECKING:
    from services.reports.daily import DayReport, Table

_W, _H = 640, 260
_PLOT = Plot(left=Decimal(56), top=Decimal(16), width=Decimal(564), height=Decimal(200))
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
_BINS = 12

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}
dl.summary{display:grid;grid-template-columns:max-content max-content;gap:2px 16px}
dl.summary dt{color:#555}dl.summary dd{margin:0;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;font-size:.85em;margin:6px 0}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0}figcaption{font-size:.9em;color:#444}
svg text{font-size:11px;fill:#444}
p.note{color:#777;font-size:.85em}
"""


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f") if value != 0 else "0"


def _frame(chart_id: str, points: int, body: str, caption: str) -> str:
    return (
        f'<figure><svg id="{chart_id}" data-points="{points}" xmlns="http://www.w3.org/2000/svg"'
        f' width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">'
        f'<rect class="frame" x="{_PLOT.left}" y="{_PLOT.top}" width="{_PLOT.width}"'
        f' height="{_PLOT.height}" fill="none" stroke="#bbb"/>{body}</svg>'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _empty(chart_id: str, caption: str) -> str:
    x, y = _PLOT.left + _PLOT.width / 2, _PLOT.top + _PLOT.height / 2
    text = f'<text x="{x}" y="{y}" text-anchor="middle">no data for the day</text>'
    return _frame(chart_id, 0, text, caption)


def pnl_chart(series: Mapping[str, Sequence[tuple[datetime, Decimal]]]) -> str:
    """Net P&L per strategy over the day, one polyline each, with the zero line."""
    caption = "Net P&L by strategy (mark-tick snapshots)"
    drawn, low, high = curves(series, _PLOT)
    if not drawn:
        return _empty("chart-pnl", caption)
    parts: list[str] = []
    zero = value_y(Decimal(0), low, high, _PLOT)
    parts.append(
        f'<line class="zero" x1="{_PLOT.left}" y1="{zero}" x2="{_PLOT.left + _PLOT.width}"'
        f' y2="{zero}" stroke="#999" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="4" y="{_PLOT.top + 10}">{escape(_num(high))}</text>')
    parts.append(f'<text x="4" y="{_PLOT.top + _PLOT.height}">{escape(_num(low))}</text>')
    for i, curve in enumerate(drawn):
        color = _COLORS[i % len(_COLORS)]
        points = " ".join(f"{x},{y}" for x, y in curve.points)
        last = series[curve.name][-1][1]
        parts.append(
            f'<polyline class="curve" data-strategy="{escape(curve.name)}"'
            f' data-last="{escape(_num(last))}" points="{points}" fill="none"'
            f' stroke="{color}" stroke-width="2"/>'
        )
        legend_y = _PLOT.top + 14 + 14 * i
        parts.append(
            f'<text x="{_PLOT.left + 8}" y="{legend_y}" style="fill:{color}">'
            f"{escape(curve.name)} {escape(_num(last))}</text>"
        )
    instants = [t for points in series.values() for t, _ in points]
    base = _PLOT.top + _PLOT.height + 14
    start, end = min(instants).astimezone(ET), max(instants).astimezone(ET)
    parts.append(f'<text x="{_PLOT.left}" y="{base}">{start:%H:%M:%S} ET</text>')
    parts.append(
        f'<text x="{_PLOT.left + _PLOT.width}" y="{base}" text-anchor="end">'
        f"{end:%H:%M:%S} ET</text>"
    )
    points_drawn = sum(len(v) for v in series.values())
    return _frame("chart-pnl", points_drawn, "".join(parts), caption)


def histogram_chart(chart_id: str, values: Sequence[Decimal], caption: str, unit: str) -> str:
    """A histogram of `values` as bars, its range labelled under the axis."""
    if not values:
        return _empty(chart_id, caption)
    bins = histogram(values, min(_BINS, max(1, len(values))))
    rects = bar_rects(bins, _PLOT)
    parts = [
        f'<rect class="bar" data-low="{escape(_num(b.low))}" data-high="{escape(_num(b.high))}"'
        f' data-count="{b.count}" x="{r.x}" y="{r.y}" width="{r.width}" height="{r.height}"'
        f' fill="#4e79a7"><title>{escape(_num(b.low))} to {escape(_num(b.high))} {unit}:'
        f" {b.count}</title></rect>"
        for b, r in zip(bins, rects, strict=True)
    ]
    base = _PLOT.top + _PLOT.height + 14
    parts.append(f'<text x="{_PLOT.left}" y="{base}">{escape(_num(bins[0].low))} {unit}</text>')
    parts.append(
        f'<text x="{_PLOT.left + _PLOT.width}" y="{base}" text-anchor="end">'
        f"{escape(_num(bins[-1].high))} {unit}</text>"
    )
    tallest = max(b.count for b in bins)
    parts.append(f'<text x="4" y="{_PLOT.top + 10}">{tallest}</text>')
    return _frame(chart_id, len(values), "".join(parts), caption)


def _table_html(table: Table, cap: int) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name, _ in table.columns)
    body: list[str] = []
    numeric = [kind in ("int", "qty", "money") for _, kind in table.columns]
    for row in table.rows[:cap]:
        cells = "".join(
            f'<td class="n">{escape(str(c))}</td>'
            if numeric[i] and c is not None
            else f"<td>{'' if c is None else escape(str(c))}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    more = (
        f'<p class="note">{len(table.rows) - cap} more rows in {escape(table.name)}.csv</p>'
        if len(table.rows) > cap
        else ""
    )
    if not table.rows:
        return f'<h2>{escape(table.title)}</h2><p class="note">none</p>'
    return (
        f'<h2>{escape(table.title)}</h2><table id="table-{escape(table.name)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"
    )


def render_html(report: DayReport, row_cap: int = 500) -> str:
    """The page for `report` (deterministic: no clock, sorted inputs)."""
    close = (
        report.session_close.astimezone(ET).strftime("%H:%M ET")
        if report.session_close is not None
        else "no session"
    )
    summary = "".join(
        f'<dt>{escape(k.replace("_", " "))}</dt><dd id="sum-{escape(k)}">{escape(v)}</dd>'
        for k, v in report.summary.items()
    )
    charts = "".join(
        [
            pnl_chart(report.pnl_series),
            histogram_chart(
                "chart-slippage",
                report.slippages,
                "Slippage per child order (bps against its reference)",
                "bps",
            ),
            histogram_chart(
                "chart-latency",
                report.latencies_ms,
                "Fill latency: signal received to first fill (ms)",
                "ms",
            ),
        ]
    )
    tables = "".join(_table_html(t, row_cap) for t in report.tables)
    day = report.day.isoformat()
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>epm report {day}</title>'
        f"<style>{_CSS}</style></head><body>"
        f"<h1>epm daily report {day}</h1><p>Session close {escape(close)}.</p>"
        f'<dl class="summary">{summary}</dl><h2>Charts</h2><div class="charts">{charts}</div>'
        f"{tables}</body></html>\n"
    )
