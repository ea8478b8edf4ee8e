"""The risk monitor on the pnl queue (`docs/risk.md`, trading states and circuit breakers).

- `tasks.risk.monitor_tick`, beat every `EPM_RISK_TICK_S` (1 s): post-trade monitoring
  (`services.risk.post_trade.monitor`: a position beyond its limit → REDUCING, a drawdown beyond
  its threshold → HALTED) and the circuit breakers (`services.risk.breakers.trip`: 326, a
  disconnect longer than `EPM_RISK_DISCONNECT_HALT_S`, a critical reconciliation → global HALT).

Idempotent: rules only tighten and a state already as strict is left, so a doubled tick changes
nothing; a late one is dropped (`expires`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, time, timedelta

from celery import Task
from sqlalchemy.engine import Connection

from epm.calendar import ET, trading_day
from models.limits import Limits
from services.risk.breakers import trip
from services.risk.current_limits import current_limits
from services.risk.post_trade import monitor
from tasks.app import TASK_OPTIONS, Outcome, Stores, celery_app, run_through_outages
from tasks.orders import BridgeVenue

__all__ = ["day_start", "disconnect_limit", "limits_in_force", "monitor_tick", "run_monitor"]


def limits_in_force(conn: Connection) -> Limits:
    """The limits file with the operators' overrides (`epm limits set`)."""
    return current_limits(conn)


def day_start(now: datetime) -> datetime:
    """Where the intraday drawdown is counted from: the start of the exchange's calendar day
    (00:00 New York), so pre-market trading counts and yesterday's loss does not."""
    return datetime.combine(trading_day(now), time(0), tzinfo=ET).astimezone(UTC)


def disconnect_limit() -> timedelta:
    """How long the orders connection may be down before the desk is halted."""
    return timedelta(seconds=float(os.environ.get("EPM_RISK_DISCONNECT_HALT_S", "30")))


def run_monitor(stores: Stores) -> Outcome:
    """One monitor pass on `stores` (what beat runs, and what tests call)."""
    venue = BridgeVenue(stores.engine, stores.redis, stores.settings.ib_client_id_orders)
    with stores.engine.connect() as conn:
        limits = limits_in_force(conn)
    changed = monitor(
        stores.engine,
        venue,
        limits,
        stores.now,
        halts=stores.redis,
        since=day_start(stores.now),
    )
    tripped = trip(
        stores.engine,
        stores.redis,
        venue,
        orders_client_id=stores.settings.ib_client_id_orders,
        disconnect_limit=disconnect_limit(),
        now=stores.now,
    )
    if tripped is not None:
        changed.append(tripped)
    return {
        "changed": [
            {"scope": a.record.scope, "state": a.record.state.value, "reason": a.record.reason}
            for a in changed
        ],
        "cancels": [i for a in changed for i in a.cancels_sent],
    }


@celery_app.task(name="tasks.risk.monitor_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def monitor_tick(self: Task, risk_retry: object = None) -> Outcome:
    """Beat, every second: post-trade monitoring and the circuit breakers."""
    return run_through_outages(
        self, run_monitor, name="risk", retry_state=risk_retry, state_kwarg="risk_retry"
    )
