"""Use case: write the report of one trading day (`epm report`, the 17:00 beat task).

Load the day's facts (the ledger: recon runs, orders, fills, execution metrics, first fills,
P&L snapshots, risk events, the books' P&L by signal; Redis: the day's alerts) → shape them
(`models.report`) → write `report.html` and the tables as CSV and Parquet into
`OUT/YYYY-MM-DD/`. The orders, fills, positions and P&L tables are the extracts
(`services.extracts`, the same files `epm export --day` writes); the report's own tables follow
their conventions (decimals as exact text, ISO-8601 UTC times).

Idempotent per day: a re-run rewrites the same file names, and nothing in them is read from the
wall clock, so the same ledger gives the same bytes. The day is the exchange's calendar day
(New York midnight to midnight). Positions and P&L by signal are the books *as of the run*
(the ledger keeps no per-day position history to rebuild them from), which at 17:00 ET is the
close of the day.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
from sqlalchemy.engine import Connection, Engine

from epm.calendar import ET, session_close, trading_day
from models.report import IntentMetric, by_strategy, report_due
from services.books.views import GroupBy, pnl_view
from services.extracts import (
    FILL_COLUMNS,
    ORDER_COLUMNS,
    day_bounds,
    row_sort_key,
    typed_rows,
    write_csv,
    write_extracts_from,
    write_parquet,
)
from services.reports.html import render_html
from store import books
from store import reports as queries

# Where epm's own alerts go: the bridge's and the tasks' stream, and the ops alert task's.
ALERT_STREAMS = ("ops.alerts", "epm:alerts")
# Both streams are capped near 10,000 entries; read them whole.
_ALERT_READ_MAX = 20_000
# Beyond this many rows a table is cut in the HTML page (the CSV/Parquet files have them all).
HTML_ROW_CAP = 500

Columns = tuple[tuple[str, str], ...]

# Reconciliation statuses, least to most severe (the day's worst run is in the summary).
_SEVERITY = {"ok": 0, "warning": 1, "critical": 2, "failed": 3}

RECON_COLUMNS: Columns = (
    ("kind", "text"),
    ("started_at", "time"),
    ("finished_at", "time"),
    ("status", "text"),
    ("checked", "int"),
    ("recovered", "int"),
    ("flagged", "int"),
)
STRATEGY_COLUMNS: Columns = (
    ("strategy", "text"),
    ("intents", "int"),
    ("filled_qty", "qty"),
    ("mean_slippage_bps", "qty"),
    ("mean_shortfall_bps", "qty"),
    ("fees", "money"),
)
INTENT_COLUMNS: Columns = (
    ("signal_id", "text"),
    ("strategy", "text"),
    ("side", "text"),
    ("filled_qty", "qty"),
    ("arrival_price", "money"),
    ("avg_fill_price", "money"),
    ("slippage_bps", "qty"),
    ("implementation_shortfall_bps", "qty"),
    ("fees", "money"),
    ("computed_at", "time"),
)
LATENCY_COLUMNS: Columns = (
    ("signal_id", "text"),
    ("strategy", "text"),
    ("received_at", "time"),
    ("first_fill_at", "time"),
    ("latency_ms", "qty"),
)
ALERT_COLUMNS: Columns = (
    ("at", "text"),
    ("stream", "text"),
    ("kind", "text"),
    ("status", "text"),
    ("severity", "text"),
    ("message", "text"),
    ("runbook", "text"),
)
RISK_COLUMNS: Columns = (
    ("ts_event", "time"),
    ("kind", "text"),
    ("severity", "text"),
    ("scope", "text"),
    ("scope_key", "text"),
    ("code", "text"),
    ("message", "text"),
)
STRATEGY_PNL_COLUMNS: Columns = (
    ("strategy", "text"),
    ("realized", "text"),
    ("unrealized", "text"),
    ("fees", "text"),
    ("financing", "text"),
    ("net", "text"),
)


class ReportError(ValueError):
    """The report cannot be written as asked (output path not a directory)."""


@dataclass(frozen=True, slots=True)
class Table:
    """One table of the report: its file stem, title, typed columns and text rows."""

    name: str
    title: str
    columns: Columns
    rows: list[list[object]]


@dataclass(slots=True)
class DayReport:
    """Everything the HTML page shows; `tables` are also written as files."""

    day: date
    session_close: datetime | None
    summary: dict[str, str]
    tables: list[Table]
    pnl_series: dict[str, list[tuple[datetime, Decimal]]] = field(default_factory=dict)
    slippages: list[Decimal] = field(default_factory=list)
    latencies_ms: list[Decimal] = field(default_factory=list)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def _latency_ms(received: datetime, first: datetime) -> Decimal:
    delta = first - received
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return Decimal(micros) / Decimal(1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def day_alerts(client: redis.Redis | None, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Alerts of both streams whose `at` lies in [start, end) (the entry id's time when an alert
    has none), oldest first. No Redis, or a stream not created yet, is no alerts."""
    if client is None:
        return []
    out: list[dict[str, Any]] = []
    for stream in ALERT_STREAMS:
        try:
            entries = client.xrange(stream, count=_ALERT_READ_MAX)
        except redis.ResponseError:  # the key holds something else
            continue
        for entry_id, raw in entries or []:
            if entry_id is None or raw is None:
                continue
            fields = {_text(k): _text(v) for k, v in raw.items()}
            at = _alert_time(fields.get("at"), _text(entry_id))
            if at is None or not start <= at < end:
                continue
            out.append(
                {
                    "at": at.isoformat(),
                    "stream": stream,
                    # `epm:alerts` entries name their kind; `ops.alerts` ones their rule
                    # (`alert`), with a status (firing, resolved) and a summary.
                    "kind": fields.get("kind") or fields.get("alert") or fields.get("name"),
                    "status": fields.get("status") or "firing",
                    "severity": fields.get("severity"),
                    "message": fields.get("message") or fields.get("summary"),
                    "runbook": fields.get("runbook"),
                }
            )
    out.sort(key=lambda a: (a["at"], a["stream"], a["kind"] or ""))
    return out


def _alert_time(at: str | None, entry_id: str) -> datetime | None:
    if at:
        try:
            parsed = datetime.fromisoformat(at)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    try:
        return datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, tz=UTC)
    except ValueError:
        return None


def _table(name: str, title: str, columns: Columns, rows: Sequence[dict[str, Any]]) -> Table:
    return Table(name, title, columns, typed_rows(rows, columns))


def build_report(conn: Connection, alerts_client: redis.Redis | None, day: date) -> DayReport:
    """The report of `day` from the ledger on `conn` and the alerts in Redis."""
    start, end = day_bounds(day)
    orders = books.orders_between(conn, start, end)
    fills = books.fills_between(conn, start, end)
    in_effect = [f for f in fills if f["superseded_by"] is None]
    recon = queries.recon_runs_between(conn, start, end)
    intent_rows = queries.intent_metrics_between(conn, start, end)
    strategies = by_strategy(
        IntentMetric(
            strategy=r["strategy"] or "UNATTRIBUTED",
            filled_qty=r["filled_qty"],
            slippage_bps=r["slippage_bps"],
            shortfall_bps=r["implementation_shortfall_bps"],
            fees=r["fees"],
        )
        for r in intent_rows
    )
    latency_rows = [
        {**r, "latency_ms": _latency_ms(r["received_at"], r["first_fill_at"])}
        for r in queries.first_fills_between(conn, start, end)
    ]
    snapshots = queries.strategy_snapshots_between(conn, start, end)
    series: dict[str, list[tuple[datetime, Decimal]]] = {}
    for s in snapshots:
        series.setdefault(s["scope_key"], []).append((s["ts"], s["net_pl"]))
    strategy_pnl = pnl_view(conn, GroupBy.STRATEGY)
    signal_pnl = pnl_view(conn, GroupBy.SIGNAL)
    alerts = day_alerts(alerts_client, start, end)
    risk = queries.risk_events_between(conn, start, end)
    net = sum((Decimal(r["net"]) for r in strategy_pnl if r["net"] is not None), Decimal(0))
    fees = sum((f["commission"] or Decimal(0) for f in in_effect), Decimal(0))
    latest_status = {r["kind"]: r["status"] for r in recon}  # runs are oldest first
    summary = {
        "orders": str(len(orders)),
        "fills": str(len(in_effect)),
        "filled_shares": format(sum((f["shares"] for f in in_effect), Decimal(0)), "f"),
        "commissions": format(fees, "f"),
        "net_pl": format(net, "f"),
        "recon_runs": str(len(recon)),
        "recon_executions": latest_status.get("executions", "none"),
        "recon_positions": latest_status.get("positions", "none"),
        "recon_worst": max(
            (r["status"] for r in recon), key=lambda x: _SEVERITY.get(x, 0), default="none"
        ),
        "alerts": str(sum(1 for a in alerts if a["status"] != "resolved")),
        "risk_events": str(len(risk)),
    }
    tables = [
        _table("recon", "Reconciliation runs", RECON_COLUMNS, recon),
        _table(
            "execution_by_strategy",
            "Slippage and shortfall by strategy",
            STRATEGY_COLUMNS,
            [
                {
                    "strategy": s.strategy,
                    "intents": s.intents,
                    "filled_qty": s.filled_qty,
                    "mean_slippage_bps": s.mean_slippage_bps,
                    "mean_shortfall_bps": s.mean_shortfall_bps,
                    "fees": s.fees,
                }
                for s in strategies
            ],
        ),
        _table("pnl_by_strategy", "P&L by strategy", STRATEGY_PNL_COLUMNS, strategy_pnl),
        _table(
            "pnl_by_signal",
            "P&L attribution by signal",
            (("signal_id", "text"), *STRATEGY_PNL_COLUMNS, ("method", "text")),
            signal_pnl,
        ),
        _table("intent_metrics", "Execution metrics by intent", INTENT_COLUMNS, intent_rows),
        _table("fill_latency", "Signal to first fill", LATENCY_COLUMNS, latency_rows),
        _table("alerts", "Alerts", ALERT_COLUMNS, alerts),
        _table("risk_events", "Risk events", RISK_COLUMNS, risk),
        _table("orders", "Orders", ORDER_COLUMNS, orders),
        _table("fills", "Fills", FILL_COLUMNS, fills),
    ]
    for t in tables:
        if t.name in ("pnl_by_strategy", "pnl_by_signal"):
            t.rows.sort(key=row_sort_key)
    slippages = [r["slippage_bps"] for r in queries.child_slippages_between(conn, start, end)]
    return DayReport(
        day=day,
        session_close=session_close(day),
        summary=summary,
        tables=tables,
        pnl_series=series,
        slippages=slippages,
        latencies_ms=[r["latency_ms"] for r in latency_rows],
    )


def _replace(path: Path, data: bytes) -> None:
    # Written beside and renamed: a reader never sees half a report.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(
    engine: Engine, alerts_client: redis.Redis | None, day: date, out_root: Path
) -> list[Path]:
    """Write the report of `day` into `out_root/YYYY-MM-DD/`; returns the paths written (the
    HTML page first)."""
    if out_root.exists() and not out_root.is_dir():
        raise ReportError(f"{out_root} exists and is not a directory")
    folder = out_root / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    with engine.connect() as conn:
        report = build_report(conn, alerts_client, day)
        extracts = write_extracts_from(conn, folder / "extracts", day=day)
    page = folder / "report.html"
    _replace(page, render_html(report).encode("utf-8"))
    written = [page]
    for t in report.tables:
        if t.name in ("orders", "fills"):
            continue  # the extracts hold them
        for suffix, writer in ((".csv", write_csv), (".parquet", write_parquet)):
            path = folder / f"{t.name}{suffix}"
            tmp = path.with_name(f".{path.name}.tmp")
            writer(tmp, t.columns, t.rows)
            os.replace(tmp, path)
            written.append(path)
    manifest = folder / "manifest.json"
    _replace(
        manifest,
        json.dumps(
            {"day": day.isoformat(), "summary": report.summary, "files": _names(written, folder)},
            indent=2,
            sort_keys=True,
        ).encode(),
    )
    return [*written, *extracts, manifest]


def _names(paths: Sequence[Path], folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in paths]


def written_for(out_root: Path, day: date) -> bool:
    """True when the report of `day` was written (its manifest, written last, exists)."""
    return (out_root / day.isoformat() / "manifest.json").is_file()


def due_day(now: datetime) -> date | None:
    """The trading day whose report is due at `now` (17:00 ET on a session day, early closes
    included), or None."""
    day = trading_day(now)
    return day if report_due(now, day, session_close(day), ET) else None
