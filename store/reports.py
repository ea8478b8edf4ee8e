"""Reads of the 17:00 report (`services/reports/`): one trading day's reconciliation runs,
execution metrics, signal-to-first-fill times, P&L snapshots and risk events, each over the
half-open window [start, end). Money comes back as `Decimal`; nothing is summed in SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.schema import (
    execution_metrics,
    execution_orders,
    fills,
    intents,
    pnl_snapshots,
    recon_runs,
    risk_events,
)


def recon_runs_between(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Reconciliation runs started in the window, oldest first."""
    rows = conn.execute(
        sa.select(
            recon_runs.c.id,
            recon_runs.c.kind,
            recon_runs.c.started_at,
            recon_runs.c.finished_at,
            recon_runs.c.status,
            recon_runs.c.checked,
            recon_runs.c.recovered,
            recon_runs.c.flagged,
        )
        .where(recon_runs.c.started_at >= start, recon_runs.c.started_at < end)
        .order_by(recon_runs.c.started_at, recon_runs.c.id)
    ).all()
    return [dict(r._mapping) for r in rows]


def intent_metrics_between(
    conn: Connection, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Intent-level metrics rows (`order_id` NULL) computed in the window, with the signal id."""
    m = execution_metrics
    rows = conn.execute(
        sa.select(
            intents.c.signal_id,
            m.c.strategy,
            m.c.side,
            m.c.filled_qty,
            m.c.arrival_price,
            m.c.avg_fill_price,
            m.c.slippage_bps,
            m.c.implementation_shortfall_bps,
            m.c.fees,
            m.c.computed_at,
        )
        .select_from(m.outerjoin(intents, intents.c.id == m.c.intent_id))
        .where(m.c.order_id.is_(None), m.c.computed_at >= start, m.c.computed_at < end)
        .order_by(m.c.computed_at, m.c.id)
    ).all()
    return [dict(r._mapping) for r in rows]


def child_slippages_between(
    conn: Connection, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per-child metrics rows with a slippage figure, computed in the window."""
    m = execution_metrics
    rows = conn.execute(
        sa.select(execution_orders.c.client_order_id, m.c.strategy, m.c.slippage_bps)
        .select_from(m.join(execution_orders, execution_orders.c.id == m.c.order_id))
        .where(
            m.c.order_id.is_not(None),
            m.c.slippage_bps.is_not(None),
            m.c.computed_at >= start,
            m.c.computed_at < end,
        )
        .order_by(m.c.id)
    ).all()
    return [dict(r._mapping) for r in rows]


def first_fills_between(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Intents received in the window that filled: received_at and the earliest execution in
    effect among their orders' fills (ordered by signal id)."""
    first = sa.func.min(fills.c.executed_at).label("first_fill_at")
    rows = conn.execute(
        sa.select(intents.c.signal_id, intents.c.strategy, intents.c.received_at, first)
        .select_from(
            intents.join(execution_orders, execution_orders.c.intent_id == intents.c.id).join(
                fills, fills.c.order_id == execution_orders.c.id
            )
        )
        .where(
            intents.c.received_at >= start,
            intents.c.received_at < end,
            fills.c.superseded_by.is_(None),
        )
        .group_by(intents.c.signal_id, intents.c.strategy, intents.c.received_at)
        .order_by(intents.c.signal_id)
    ).all()
    return [dict(r._mapping) for r in rows]


def strategy_snapshots_between(
    conn: Connection, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Strategy-scope P&L snapshots taken in the window (the mark tick's), oldest first."""
    s = pnl_snapshots
    rows = conn.execute(
        sa.select(s.c.scope_key, s.c.ts, s.c.realized_pl, s.c.unrealized_pl, s.c.fees, s.c.net_pl)
        .where(s.c.scope == "strategy", s.c.ts >= start, s.c.ts < end)
        .order_by(s.c.ts, s.c.scope_key)
    ).all()
    return [dict(r._mapping) for r in rows]


def risk_events_between(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Risk events of the window, oldest first."""
    rows = conn.execute(
        sa.select(
            risk_events.c.ts_event,
            risk_events.c.kind,
            risk_events.c.severity,
            risk_events.c.scope,
            risk_events.c.scope_key,
            risk_events.c.code,
            risk_events.c.message,
        )
        .where(risk_events.c.ts_event >= start, risk_events.c.ts_event < end)
        .order_by(risk_events.c.ts_event, risk_events.c.id)
    ).all()
    return [dict(r._mapping) for r in rows]
