"""Reads for the audit snapshots (`services.audit_snapshots`): the intents that ended since a
time, and for one intent its children, its effective fills with their commissions, its intake
decision rows in the audit log and its risk events. Rows come back as plain mappings."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.schema import audit_log, commissions, execution_orders, fills, intents, risk_events

__all__ = ["children_of", "decisions_of", "ended_since", "fills_of", "risk_events_of"]


def ended_since(
    conn: Connection,
    since: datetime | None,
    active: Collection[str],
    limit: int,
    after: tuple[datetime, int] | None = None,
) -> list[dict[str, Any]]:
    """Intents not in an `active` status, last changed at or after `since`, in (updated_at, id)
    order, from just past `after` (a keyset page)."""
    c = intents.c
    query = sa.select(intents).where(c.status.not_in(list(active)))
    if since is not None:
        query = query.where(c.updated_at >= since)
    if after is not None:
        ts, last_id = after
        query = query.where(sa.or_(c.updated_at > ts, sa.and_(c.updated_at == ts, c.id > last_id)))
    query = query.order_by(c.updated_at, c.id).limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]


def children_of(conn: Connection, intent_id: int) -> list[dict[str, Any]]:
    cols = execution_orders.c
    query = (
        sa.select(
            cols.client_order_id,
            cols.ib_order_id,
            cols.parent_link,
            cols.action,
            cols.quantity,
            cols.order_type,
            cols.limit_price,
            cols.tif,
            cols.state,
            cols.filled_qty,
            cols.avg_fill_price,
            cols.reject_code,
            cols.reject_reason,
            cols.created_at,
            cols.updated_at,
        )
        .where(cols.intent_id == intent_id)
        .order_by(cols.id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def fills_of(conn: Connection, intent_id: int) -> list[dict[str, Any]]:
    """The intent's effective fills (a corrected execution replaced by its correction)."""
    f = fills.c
    query = (
        sa.select(
            f.execution_id,
            execution_orders.c.client_order_id,
            f.ib_order_id,
            f.perm_id,
            f.con_id,
            f.symbol,
            f.side,
            f.shares,
            f.price,
            f.multiplier,
            f.exchange,
            f.account,
            f.executed_at,
            commissions.c.commission,
            commissions.c.currency.label("commission_currency"),
            commissions.c.estimated.label("commission_estimated"),
        )
        .join(execution_orders, execution_orders.c.id == f.order_id)
        .outerjoin(commissions, commissions.c.execution_id == f.execution_id)
        .where(execution_orders.c.intent_id == intent_id, f.superseded_by.is_(None))
        .order_by(f.executed_at, f.id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def decisions_of(
    conn: Connection, signal_id: str, actions: Collection[str]
) -> list[dict[str, Any]]:
    """The intent's intake decision rows in the audit log (with their chain hashes)."""
    query = (
        sa.select(audit_log)
        .where(audit_log.c.target == f"intent:{signal_id}", audit_log.c.action.in_(list(actions)))
        .order_by(audit_log.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def risk_events_of(conn: Connection, signal_id: str) -> list[dict[str, Any]]:
    c = risk_events.c
    query = (
        sa.select(c.kind, c.severity, c.code, c.message, c.details, c.ts_event)
        .where(c.scope == "intent", c.scope_key == signal_id)
        .order_by(c.id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]
