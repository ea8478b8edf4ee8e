"""The 17:00 report on real stores (SQLite and PostgreSQL, real Redis): a seeded day of orders,
fills, marks, metrics, recon runs, alerts and risk events comes out with the ledger's numbers,
in files that a re-run rewrites byte for byte, and the page draws its charts in Chromium."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.books.views import GroupBy, pnl_view
from services.reports.daily import write_report
from store import metrics, recon_runs, risk_events
from store.db import dispose_engines, make_engine, write_transaction
from store.migrate import upgrade
from store.schema import execution_orders, intents
from tasks.pnl import run_mark
from tests.integration.conftest import wipe
from tests.integration.test_books import OPT, SPY, T0, execute, intent_order, quote, stores

D = Decimal
DAY = date(2026, 12, 3)  # T0 is 10:00 ET on this Thursday


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _ids(engine: Engine, signal: str) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(intents.c.id, execution_orders.c.id.label("order_id"))
            .select_from(
                intents.join(execution_orders, execution_orders.c.intent_id == intents.c.id)
            )
            .where(intents.c.signal_id == signal)
        ).one()
    return int(row.id), int(row.order_id)


def seed_day(engine: Engine, r: redis.Redis) -> None:
    """Three intents in two strategies, four fills, two mark ticks, metrics, recon, alerts."""
    intent_order(engine, "c-1", "Momentum_EQ", "sig-1", SPY, "BUY", "100", state="FILLED")
    intent_order(engine, "c-2", "Momentum_EQ", "sig-2", SPY, "SELL", "50", state="FILLED")
    intent_order(engine, "c-3", "Vol_Short", "sig-3", OPT, "SELL", "2", state="FILLED")
    execute(engine, "c-1", SPY, "BOT", "60", "10.00", "1.00", at=5)
    execute(engine, "c-1", SPY, "BOT", "40", "10.10", "0.60", at=9)
    execute(engine, "c-2", SPY, "SLD", "50", "10.30", "0.50", at=20)
    execute(engine, "c-3", OPT, "SLD", "2", "1.20", "1.30", sec_type="OPT", mult="100", at=30)
    for minutes, spy, opt in (
        (10, ("10.19", "10.21"), ("1.10", "1.20")),
        (20, ("10.39", "10.41"), ("0.95", "1.05")),
    ):
        now = T0 + timedelta(minutes=minutes)
        quote(r, SPY, *spy, now)
        quote(r, OPT, *opt, now)
        run_mark(stores(engine, r, now))
    computed = T0 + timedelta(minutes=30)
    rows: list[dict[str, Any]] = []
    for signal, strategy, qty, slip, shortfall, fee, child_slips in (
        ("sig-1", "Momentum_EQ", "100", "4.0", "5.5", "1.60", ("2.0", "6.5")),
        ("sig-2", "Momentum_EQ", "50", "-1.0", "0.5", "0.50", ("-1.0",)),
        ("sig-3", "Vol_Short", "2", "12.25", "20", "1.30", ("12.25",)),
    ):
        intent_id, order_id = _ids(engine, signal)
        base = {"intent_id": intent_id, "strategy": strategy, "computed_at": computed}
        rows.append(
            base
            | {
                "filled_qty": D(qty),
                "slippage_bps": D(slip),
                "implementation_shortfall_bps": D(shortfall),
                "fees": D(fee),
            }
        )
        rows.extend(base | {"order_id": order_id, "slippage_bps": D(s)} for s in child_slips)
    with write_transaction(engine) as conn:
        metrics.insert_rows(conn, rows)
        for kind, at, status in (
            ("executions", T0 + timedelta(minutes=5), "ok"),
            ("positions", T0 + timedelta(hours=6, minutes=15), "warning"),
            ("executions", T0 - timedelta(days=1), "critical"),  # the day before: not in it
        ):
            recon_runs.insert(
                conn,
                kind=kind,
                started_at=at,
                finished_at=at + timedelta(seconds=2),
                status=status,
                checked=4,
                recovered=0,
                flagged=1 if status != "ok" else 0,
                differences=None,
                details=None,
            )
        risk_events.record(
            conn,
            kind="intake_refused",
            severity="warning",
            scope="strategy",
            scope_key="Momentum_EQ",
            code="RISK_LIMIT",
            message="order notional 2,000,000 over 1,000,000",
            details=None,
            now=T0 + timedelta(minutes=1),
        )
    r.xadd(
        "epm:alerts",
        {
            "kind": "recon_failed",
            "message": "no answer",
            "at": (T0 + timedelta(minutes=3)).isoformat(),
        },
    )
    r.xadd(
        "ops.alerts",
        {
            "status": "firing",
            "alert": "urgent_order_unfilled",
            "severity": "warning",
            "runbook": "epm runbook order-stuck",
            "summary": "urgent order c-9 unfilled 2 min",
            "at": (T0 + timedelta(minutes=4)).isoformat(),
        },
    )
    r.xadd(
        "ops.alerts",
        {
            "status": "resolved",
            "alert": "urgent_order_unfilled",
            "at": (T0 + timedelta(minutes=9)).isoformat(),
        },
    )
    r.xadd(
        "epm:alerts",
        {"kind": "old", "message": "yesterday", "at": (T0 - timedelta(days=1)).isoformat()},
    )


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_the_report_of_a_day_matches_the_ledger_and_rewrites_the_same_files(
    engine: Engine, r: redis.Redis, tmp_path: Path
) -> None:
    seed_day(engine, r)
    paths = write_report(engine, r, DAY, tmp_path)
    folder = tmp_path / DAY.isoformat()
    assert paths[0] == folder / "report.html"
    assert all(p.is_file() for p in paths)
    summary = json.loads((folder / "manifest.json").read_text())["summary"]
    with engine.connect() as conn:
        by_strategy = pnl_view(conn, GroupBy.STRATEGY)
        by_signal = pnl_view(conn, GroupBy.SIGNAL)
    assert summary == {
        "orders": "3",
        "fills": "4",
        "filled_shares": "152",
        "commissions": "3.40",
        "net_pl": format(sum(D(s["net"]) for s in by_strategy), "f"),
        "recon_runs": "2",
        "recon_executions": "ok",
        "recon_positions": "warning",
        "recon_worst": "warning",
        "alerts": "2",
        "risk_events": "1",
    }
    # Slippage and shortfall by strategy: the means over each strategy's intents.
    assert _csv(folder / "execution_by_strategy.csv") == [
        {
            "strategy": "Momentum_EQ",
            "intents": "2",
            "filled_qty": "150",
            "mean_slippage_bps": "1.5",
            "mean_shortfall_bps": "3",
            "fees": "2.10",
        },
        {
            "strategy": "Vol_Short",
            "intents": "1",
            "filled_qty": "2",
            "mean_slippage_bps": "12.25",
            "mean_shortfall_bps": "20",
            "fees": "1.30",
        },
    ]
    # P&L attribution by signal is the books' own (epm pnl --by signal).
    signal_rows = {
        (row["strategy"], row["signal_id"]): row for row in _csv(folder / "pnl_by_signal.csv")
    }
    assert set(signal_rows) == {(s["strategy"], s["signal_id"]) for s in by_signal}
    for s in by_signal:
        got = signal_rows[(s["strategy"], s["signal_id"])]
        assert (got["realized"], got["fees"], got["net"]) == (s["realized"], s["fees"], s["net"])
    # The partial close (50 at 10.30 against an average of 10.04) closes sig-1's lot, FIFO.
    assert signal_rows[("Momentum_EQ", "sig-1")]["realized"] == "13.00"
    # Signal received → first fill, in ms, from the fills' execution times.
    assert [(row["signal_id"], row["latency_ms"]) for row in _csv(folder / "fill_latency.csv")] == [
        ("sig-1", "5000"),
        ("sig-2", "20000"),
        ("sig-3", "30000"),
    ]
    alerts = _csv(folder / "alerts.csv")
    assert [(a["stream"], a["kind"], a["status"], a["runbook"], a["message"]) for a in alerts] == [
        ("epm:alerts", "recon_failed", "firing", "", "no answer"),
        (
            "ops.alerts",
            "urgent_order_unfilled",
            "firing",
            "epm runbook order-stuck",
            "urgent order c-9 unfilled 2 min",
        ),
        ("ops.alerts", "urgent_order_unfilled", "resolved", "", ""),
    ]
    recon = pq.read_table(folder / "recon.parquet").to_pylist()
    assert [(x["kind"], x["status"], x["flagged"]) for x in recon] == [
        ("executions", "ok", 0),
        ("positions", "warning", 1),
    ]
    fills = _csv(folder / "extracts" / f"fills-{DAY.isoformat()}.csv")
    assert sorted(f["commission"] for f in fills) == ["0.50", "0.60", "1.00", "1.30"]
    # Idempotent per day: a second run rewrites the same files with the same bytes.
    before = _bytes(folder)
    again = write_report(engine, r, DAY, tmp_path)
    assert again == paths
    assert _bytes(folder) == before


def test_a_day_without_trading_still_writes_a_page_with_empty_charts(
    engine: Engine, r: redis.Redis, tmp_path: Path
) -> None:
    seed_day(engine, r)
    write_report(engine, r, DAY + timedelta(days=1), tmp_path)
    folder = tmp_path / (DAY + timedelta(days=1)).isoformat()
    summary = json.loads((folder / "manifest.json").read_text())["summary"]
    assert (summary["orders"], summary["fills"], summary["alerts"]) == ("0", "0", "0")
    page = (folder / "report.html").read_text()
    assert page.count('data-points="0"') == 3


# Injected into a copy of the page only (the report itself has no script): after layout, each
# chart's marks with their rendered boxes, written into the DOM that --dump-dom prints.
_PROBE = """<script>
window.addEventListener('load', () => {
  const out = {};
  for (const svg of document.querySelectorAll('svg[id^=chart-]')) {
    const marks = [...svg.querySelectorAll('polyline.curve, rect.bar')].map(m => {
      const b = m.getBBox();
      return {tag: m.tagName, w: b.width, h: b.height, count: m.dataset.count || null,
              strategy: m.dataset.strategy || null, last: m.dataset.last || null};
    });
    const box = svg.getBoundingClientRect();
    out[svg.id] = {w: box.width, h: box.height, points: svg.dataset.points, marks};
  }
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


class _Probe(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.text = ""
        self.ids: dict[str, str] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.inside = found.get("id") == "probe"
        self._current = found.get("id")

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text += data
        elif self._current is not None and self._current.startswith("sum-"):
            self.ids[self._current] = data


def test_the_page_draws_its_charts_in_headless_chromium(
    sqlite_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (scripts/test-tools.sh installs it as root)")
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        seed_day(engine, r)
        write_report(engine, r, DAY, tmp_path / "reports")
    finally:
        wipe(engine)
        dispose_engines()
    page = (tmp_path / "reports" / DAY.isoformat() / "report.html").read_text()
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", _PROBE + "</body>"))
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    parser = _Probe()
    parser.feed(dom)
    charts = json.loads(parser.text)
    assert set(charts) == {"chart-pnl", "chart-slippage", "chart-latency"}
    for chart in charts.values():
        assert chart["w"] > 0 and chart["h"] > 0
    pnl = charts["chart-pnl"]
    assert sorted(m["strategy"] for m in pnl["marks"]) == ["Momentum_EQ", "Vol_Short"]
    assert all(m["tag"] == "polyline" and m["w"] > 0 for m in pnl["marks"])
    # The curves end at the last snapshot's net P&L, which is the books' figure at that mark.
    ends = {m["strategy"]: D(m["last"]) for m in pnl["marks"]}
    assert ends["Vol_Short"] == D("38.70")  # short 2 at 1.20, marked 1.00, fee 1.30
    slippage = charts["chart-slippage"]
    assert sum(int(m["count"]) for m in slippage["marks"]) == 4 == int(slippage["points"])
    assert max(m["h"] for m in slippage["marks"]) > 0
    latency = charts["chart-latency"]
    assert sum(int(m["count"]) for m in latency["marks"]) == 3
    assert all(m["w"] > 0 for m in latency["marks"]) and max(m["h"] for m in latency["marks"]) > 0
    assert (parser.ids["sum-fills"], parser.ids["sum-commissions"]) == ("4", "3.40")


def test_the_beat_tick_writes_the_day_once_from_17_00_et(
    engine: Engine, r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.reports import run_tick

    monkeypatch.setenv("EPM_REPORT_DIR", str(tmp_path / "out"))
    seed_day(engine, r)
    close = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)  # 16:00 ET
    assert run_tick(stores(engine, r, close + timedelta(minutes=59)))["due"] is False
    assert not (tmp_path / "out").exists()
    first = run_tick(stores(engine, r, close + timedelta(hours=1)))
    assert (first["day"], first["written"]) == ("2026-12-03", True)
    page = tmp_path / "out" / "2026-12-03" / "report.html"
    assert page.is_file() and "chart-pnl" in page.read_text()
    later = run_tick(stores(engine, r, close + timedelta(hours=2)))
    assert (later["due"], later["written"]) == (True, False)
    # Saturday 17:00 ET: no session, no report.
    saturday = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)
    assert run_tick(stores(engine, r, saturday))["due"] is False


def test_epm_report_refuses_a_bad_day_and_an_output_that_is_a_file(
    sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    upgrade(sqlite_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
    env.update(
        EPM_DATABASE_URL=sqlite_url,
        EPM_REDIS_URL=redis_url,
        EPM_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )

    def report(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "epm", "report", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = report("--day", "3/12/2026")
    assert done.returncode == 2 and "--day must be a date like 2026-12-03" in done.stderr
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    done = report("--day", "2026-12-03", "--out", str(blocker))
    assert done.returncode == 2 and "is not a directory" in done.stderr
    done = report("--day", "2026-12-05", "--out", str(tmp_path / "out"))  # a Saturday: empty
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "2026-12-05" / "report.html").is_file()
    dispose_engines()


def test_beat_runs_the_report_tick_on_the_recon_queue() -> None:
    import celeryconfig
    from tasks.app import celery_app

    celery_app.loader.import_default_modules()
    entry = celeryconfig.beat_schedule["reports-daily"]
    assert entry["task"] == "tasks.reports.daily_report_tick" in celery_app.tasks
    route = celery_app.amqp.router.route({}, "tasks.reports.daily_report_tick")
    assert route["queue"].name == "recon"
