"""The metrics epm exports: histograms observed where their event happens, and the names of the
gauges the scrape-time collector computes.

Histograms live in the worker that sees the event (the ledger's first fill of an intent, the
shortfall write). Celery prefork runs many processes, so they are kept in prometheus_client's
multi-process mode: `PROMETHEUS_MULTIPROC_DIR` is set by `epm worker` before any metric exists
(`multiproc.py`), and `epm metrics` reads the directory. Gauges are not observed anywhere: they
are computed from the ledger and Redis at scrape time (`collector.py`), exact whichever process
changed them.
"""

from __future__ import annotations

from prometheus_client import Histogram

FILL_LATENCY_MS = Histogram(
    "exec_fill_latency_ms",
    "Signal time to the first fill of the intent, in milliseconds",
    ["strategy"],
    buckets=(50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000, 300_000),
)
# 25 bps is a bucket edge: the default slippage threshold of the alert rules.
SLIPPAGE_BPS = Histogram(
    "exec_slippage_bps",
    "Intent slippage against its arrival price, basis points (positive: worse)",
    ["strategy"],
    buckets=(-50, -25, -10, -5, 0, 5, 10, 25, 50, 100, 250),
)
CALLBACK_LAG_S = Histogram(
    "epm_ledger_callback_lag_seconds",
    "From the bridge receiving an execution to the ledger recording it",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# Computed at scrape time by `collector.OpsCollector` (name → help).
GAUGES: dict[str, str] = {
    "exec_orders_active_total": "Intents not yet ended (VALIDATED or WORKING), by strategy",
    "exec_child_orders_in_flight": "Child orders at the venue (placed, partly filled, cancelling)",
    "exec_positions_open": "Net open quantity by security (over strategies)",
    "exec_pnl_unrealized": "Unrealized P&L by strategy (the books' last mark)",
    "exec_urgent_unfilled_oldest_seconds": "Age of the oldest active urgent intent, by strategy",
    "epm_recon_position_difference": "IB minus ledger quantity in the last positions run, by conId",
    "epm_rejects": "Refusals so far by source (intake, venue, bridge) and reason",
    "epm_risk_events_open": "Unresolved risk events by kind and severity",
    "epm_halted": "1 where a halt applies (global, strategy, instrument)",
    "epm_bridge_pacing_backlog": "Commands waiting for the bridge pacer, by connection",
    "epm_bridge_session_up": "1 when the bridge's session for a client id trades (READY/SYNCING)",
    "epm_bridge_client_id_in_use": "1 when the gateway refused the client id (error 326)",
    "epm_bridge_heartbeat_age_seconds": "Seconds since the bridge's last heartbeat",
    "epm_bridge_reconnects": "Times a bridge session became ready again after its first",
    "epm_celery_queue_depth": "Messages waiting on each Celery queue",
    "epm_metrics_scrape_errors": "1 for a source the scrape could not read",
}
HISTOGRAMS: tuple[str, ...] = (
    "exec_fill_latency_ms",
    "exec_slippage_bps",
    "epm_ledger_callback_lag_seconds",
)


def exported_names() -> set[str]:
    """Every metric family name `epm metrics` serves (histograms by their base name)."""
    return set(GAUGES) | set(HISTOGRAMS)
