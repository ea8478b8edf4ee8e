"""The recon queue: reconciliation runs against the venue (`docs/recon.md`).

- `tasks.recon.reconcile_executions`, beat every `EPM_RECON_EXECUTIONS_S` (300 s):
  reqExecutions vs fills; missing ones ingested, unknown ones flagged.
- `tasks.recon.positions_eod_tick`, beat every 300 s: the end-of-day positions run, once the
  session closed `EPM_RECON_EOD_DELAY_S` (900 s) ago by the exchange calendar.
- `tasks.recon.reconcile_positions`, on demand: reqPositions vs positions_current.
- `tasks.recon.shortfall_tick`, beat every 60 s: implementation shortfall of ended intents
  that have no `execution_metrics` yet (`services.shortfall`, idempotent per intent).

Each run writes one `recon_runs` row; the venue's answer comes through the bridge's snapshots
(`ibgateway_bridge.client_api.request_*_snapshot`, waited for up to `EPM_RECON_TIMEOUT_S`, 30 s;
no answer → a `failed` run). A critical or failed run also raises an alert on `epm:alerts`.
The runs are idempotent by construction (a repeated run compares again; ingestion is keyed by
execId), so a redelivered task is harmless. `epm recon` calls `run_executions` /
`run_positions` directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from celery import Task

from epm.calendar import ET, session_close, trading_day
from epm.clock import session_now
from ibgateway_bridge.client_api import (
    SnapshotIncompleteError,
    read_snapshot,
    request_executions_snapshot,
    request_positions_snapshot,
)
from models.market import MarketSnapshot
from models.recon import ReconStatus
from services.recon.executions import ReconResult, reconcile_executions
from services.recon.positions import eod_due, reconcile_positions
from services.recon.venue import VenueUnansweredError
from services.shortfall import compute_missing
from tasks.app import TASK_OPTIONS, Outcome, Stores, celery_app, raise_alert, run_through_outages


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as e:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from e


def answer_timeout_s() -> float:
    """How long a run waits for the venue's snapshot (`EPM_RECON_TIMEOUT_S`)."""
    return _float_env("EPM_RECON_TIMEOUT_S", 30.0)


def eod_delay_s() -> float:
    """How long after the session's close the end-of-day positions run starts."""
    return _float_env("EPM_RECON_EOD_DELAY_S", 900.0)


def _wall() -> datetime:
    return datetime.now(UTC)


class BridgeSnapshots:
    """`services.recon.venue.VenueSnapshots` over the bridge's snapshot commands."""

    def __init__(self, stores: Stores, timeout_s: float) -> None:
        self._redis = stores.redis
        self._timeout_s = timeout_s

    def _read(self, request_id: str, what: str) -> list[dict[str, Any]]:
        try:
            answer = read_snapshot(request_id, self._timeout_s, client=self._redis)
        except SnapshotIncompleteError as e:
            raise VenueUnansweredError(str(e)) from e
        if answer is None:
            raise VenueUnansweredError(
                f"no {what} answer from the bridge within {self._timeout_s:g} s"
                f" (request {request_id})"
            )
        return answer

    def executions(self, since: datetime) -> list[dict[str, Any]]:
        request_id = request_executions_snapshot(since, client=self._redis)
        return self._read(request_id, "reqExecutions")

    def positions(self) -> list[dict[str, Any]]:
        request_id = request_positions_snapshot(client=self._redis)
        return self._read(request_id, "reqPositions")


def day_start(stores: Stores) -> datetime:
    """Midnight (New York) of the trading day on the session's clock: the executions window,
    what IB's reqExecutions reports by default."""
    now = session_now(stores.settings, stores.redis, stores.now)
    return datetime.combine(trading_day(now), time(0), tzinfo=ET).astimezone(UTC)


def _alert(stores: Stores, result: ReconResult) -> None:
    if result.status in (ReconStatus.CRITICAL, ReconStatus.FAILED):
        raise_alert(
            stores.redis,
            f"recon_{result.kind}_{result.status}",
            f"{result.kind} reconciliation {result.status}: {result.flagged} flagged, "
            f"{result.recovered} recovered (run {result.run_id})",
            stores.now,
            run_id=str(result.run_id),
        )


def run_executions(stores: Stores, timeout_s: float | None = None) -> ReconResult:
    result = reconcile_executions(
        stores.engine,
        BridgeSnapshots(stores, answer_timeout_s() if timeout_s is None else timeout_s),
        stores.redis,
        since=day_start(stores),
        clock=_wall,
    )
    _alert(stores, result)
    return result


def run_positions(
    stores: Stores, trigger: str = "on_demand", timeout_s: float | None = None
) -> ReconResult:
    result = reconcile_positions(
        stores.engine,
        BridgeSnapshots(stores, answer_timeout_s() if timeout_s is None else timeout_s),
        clock=_wall,
        trigger=trigger,
    )
    _alert(stores, result)
    return result


@celery_app.task(name="tasks.recon.reconcile_executions", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def reconcile_executions_task(self: Task, recon_retry: object = None) -> Outcome:
    """Beat, every 5 minutes: the venue's executions against the ledger's fills."""
    return run_through_outages(
        self,
        lambda stores: run_executions(stores).as_dict(),
        name="recon",
        retry_state=recon_retry,
        state_kwarg="recon_retry",
    )


@celery_app.task(name="tasks.recon.reconcile_positions", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def reconcile_positions_task(self: Task, recon_retry: object = None) -> Outcome:
    """On demand: the venue's positions against the ledger's."""
    return run_through_outages(
        self,
        lambda stores: run_positions(stores).as_dict(),
        name="recon",
        retry_state=recon_retry,
        state_kwarg="recon_retry",
    )


def _eod(stores: Stores) -> Outcome:
    session = session_now(stores.settings, stores.redis, stores.now)
    close = session_close(trading_day(session))
    if not eod_due(stores.engine, now=session, close=close, delay_s=eod_delay_s()):
        return {"due": False, "session_time": session.isoformat()}
    return {"due": True, **run_positions(stores, trigger="eod").as_dict()}


@celery_app.task(name="tasks.recon.positions_eod_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def positions_eod_tick(self: Task, recon_retry: object = None) -> Outcome:
    """Beat: the end-of-day positions run, once per session day after the close."""
    return run_through_outages(
        self, _eod, name="recon", retry_state=recon_retry, state_kwarg="recon_retry"
    )


# A quote older than this is not the price "when the intent ended".
MARK_MAX_AGE = timedelta(seconds=60)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _marks(stores: Stores) -> Callable[[int], Decimal | None]:
    def mark(con_id: int) -> Decimal | None:
        raw = stores.redis.hgetall(f"md:{con_id}")
        fields = {_text(k): _text(v) for k, v in raw.items()}
        snapshot = MarketSnapshot.from_fields(con_id, fields) if fields else None
        if snapshot is None or snapshot.stale(stores.now, MARK_MAX_AGE):
            return None
        return snapshot.mid or snapshot.last

    return mark


def _shortfall(stores: Stores) -> Outcome:
    return {"written": compute_missing(stores.engine, _marks(stores), stores.now)}


@celery_app.task(name="tasks.recon.shortfall_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def shortfall_tick(self: Task, recon_retry: object = None) -> Outcome:
    """Beat: implementation shortfall for ended intents without metrics (idempotent)."""
    return run_through_outages(
        self, _shortfall, name="recon", retry_state=recon_retry, state_kwarg="recon_retry"
    )
