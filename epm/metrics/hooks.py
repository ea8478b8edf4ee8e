"""The observations services make: each is recorded only once its transaction commits, so a
write that rolls back (and is retried) is counted once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import event
from sqlalchemy.engine import Connection

from epm.metrics.registry import CALLBACK_LAG_S, FILL_LATENCY_MS, SLIPPAGE_BPS
from store.ops_facts import signal_time_if_first_fill


def after_commit(conn: Connection, action: Callable[[], None]) -> None:
    def fire(_conn: Connection) -> None:
        action()

    event.listen(conn, "commit", fire, once=True)


def execution_recorded(
    conn: Connection,
    *,
    intent_id: int | None,
    strategy: str,
    execution_id: str,
    received_at: datetime,
    executed_at: datetime,
    now: datetime,
) -> None:
    """A new execution in the ledger: its callback lag, and the fill latency when it is its
    intent's first fill."""
    lag = max((now - received_at).total_seconds(), 0.0)
    signal_at = (
        signal_time_if_first_fill(conn, intent_id, execution_id) if intent_id is not None else None
    )

    def observe() -> None:
        CALLBACK_LAG_S.observe(lag)
        if signal_at is not None:
            latency_ms = max((executed_at - signal_at).total_seconds() * 1000.0, 0.0)
            FILL_LATENCY_MS.labels(strategy).observe(latency_ms)

    after_commit(conn, observe)


def slippage_written(conn: Connection, strategy: str | None, slippage_bps: Decimal | None) -> None:
    """An intent's slippage row in `execution_metrics` (prometheus_client keeps floats)."""
    if slippage_bps is None:
        return
    value = float(slippage_bps)
    after_commit(conn, lambda: SLIPPAGE_BPS.labels(strategy or "").observe(value))
