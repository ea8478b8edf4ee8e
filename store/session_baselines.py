"""What each strategy's books stood at before a moment: the newest `pnl_snapshots` strategy row
older than it (the mark tick writes one every few seconds). Post-trade monitoring measures the
intraday drawdown from there, so yesterday's loss does not halt today."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.schema import pnl_snapshots

__all__ = ["strategy_net_before"]


def strategy_net_before(conn: Connection, before: datetime) -> dict[str, Decimal]:
    """strategy → its net P&L in the newest strategy snapshot taken before `before`."""
    snap = pnl_snapshots.c
    newest = (
        sa.select(snap.scope_key, sa.func.max(snap.ts).label("ts"))
        .where(snap.scope == "strategy", snap.ts < before)
        .group_by(snap.scope_key)
        .subquery()
    )
    rows = conn.execute(
        sa.select(snap.scope_key, snap.net_pl).join(
            newest,
            sa.and_(
                snap.scope == "strategy",
                snap.scope_key == newest.c.scope_key,
                snap.ts == newest.c.ts,
            ),
        )
    )
    return {str(r.scope_key): Decimal(r.net_pl) for r in rows}
