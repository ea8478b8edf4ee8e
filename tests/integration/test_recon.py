"""Reconciliation use cases on real stores (SQLite and PostgreSQL): the venue's answer (IB's,
given here as the bridge hands it over) against the ledger; recovered, flagged, recorded."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services import ledger
from services.ledger import process_callback
from services.recon.executions import reconcile_executions
from services.recon.positions import eod_due, reconcile_positions
from services.recon.venue import VenueUnansweredError
from store.db import write_transaction
from store.schema import fills, positions_current, recon_runs, risk_events

T0 = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
DAY = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)  # midnight New York
D = Decimal
CON = 756733


class Venue:
    """IB's answers, as the bridge's snapshot hands them to the service (None: no answer)."""

    def __init__(
        self,
        executions: list[dict[str, Any]] | None = None,
        positions: list[dict[str, Any]] | None = None,
    ) -> None:
        self._executions = executions
        self._positions = positions
        self.asked_since: list[datetime] = []

    def executions(self, since: datetime) -> list[dict[str, Any]]:
        self.asked_since.append(since)
        if self._executions is None:
            raise VenueUnansweredError("no reqExecutions answer within 0.1 s")
        return self._executions

    def positions(self) -> list[dict[str, Any]]:
        if self._positions is None:
            raise VenueUnansweredError("no reqPositions answer within 0.1 s")
        return self._positions


def clock() -> Iterator[datetime]:
    t = T0 + timedelta(minutes=10)
    while True:
        yield t
        t += timedelta(milliseconds=1)


def execution(n: int, shares: str, side: str = "BOT", ref: str | None = "R-1") -> dict[str, Any]:
    return {
        "exec_id": f"0000e0d5.{n:08x}.01.01",
        "req_id": 7,
        "ib_order_id": 11,
        "client_id": 1,
        "perm_id": 9001,
        "order_ref": ref,
        "con_id": CON,
        "symbol": "SPY",
        "sec_type": "STK",
        "side": side,
        "shares": shares,
        "price": "450.25",
        "account": "DU1",
        "time": (T0 + timedelta(seconds=n)).isoformat(),
        "received_at": (T0 + timedelta(seconds=n)).isoformat(),
    }


def _order(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        ledger.create_order(
            conn,
            {
                "client_order_id": "R-1",
                "client_id": 1,
                "ib_order_id": 11,
                "strategy": "Momentum_EQ",
                "con_id": CON,
                "symbol": "SPY",
                "sec_type": "STK",
                "action": "BUY",
                "quantity": D(1000),
                "state": "PLACED",
            },
            T0,
        )


def _record(engine: Engine, payload: dict[str, Any]) -> None:
    process_callback("execution", payload, engine=engine, redis_client=None, now=T0)


def _position(engine: Engine, con_id: int = CON) -> Decimal:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(positions_current.c.quantity).where(positions_current.c.con_id == con_id)
        )
        return sum((r.quantity for r in rows), D(0))


def _runs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(recon_runs).order_by(recon_runs.c.id)))


def _events(engine: Engine, kind: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(risk_events).where(risk_events.c.kind == kind)))


def test_missing_executions_are_recovered_once_and_positions_follow(engine: Engine) -> None:
    _order(engine)
    venue_execs = [execution(1, "100"), execution(2, "50"), execution(3, "25")]
    _record(engine, venue_execs[0])  # the other two were lost between the bridge and the ledger
    venue = Venue(executions=venue_execs)
    times = clock()

    result = reconcile_executions(engine, venue, None, since=DAY, clock=lambda: next(times))

    assert result.status == "warning"
    assert (result.checked, result.recovered, result.flagged) == (3, 2, 0)
    assert result.details["recovered_exec_ids"] == [e["exec_id"] for e in venue_execs[1:]]
    assert venue.asked_since == [DAY]
    assert _position(engine) == D(175)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(fills)).scalar() == 3
    # Again: nothing left to recover, the books unchanged (ingestion is keyed by execId).
    again = reconcile_executions(engine, venue, None, since=DAY, clock=lambda: next(times))
    assert (again.status, again.recovered, again.flagged) == ("ok", 0, 0)
    assert _position(engine) == D(175)
    runs = _runs(engine)
    assert [(r.kind, r.status, r.checked, r.recovered) for r in runs] == [
        ("executions", "warning", 3, 2),
        ("executions", "ok", 3, 0),
    ]
    assert all(r.finished_at >= r.started_at for r in runs)


def test_a_ledger_fill_the_venue_does_not_know_is_flagged(engine: Engine) -> None:
    _order(engine)
    known, phantom = execution(1, "100"), execution(2, "8")
    _record(engine, known)
    _record(engine, phantom)
    times = clock()
    result = reconcile_executions(
        engine, Venue(executions=[known]), None, since=DAY, clock=lambda: next(times)
    )
    # 8 shares the venue never executed: more than 5, critical.
    assert result.status == "critical"
    assert (result.recovered, result.flagged) == (0, 1)
    [diff] = result.differences
    assert diff["type"] == "unknown_fill" and diff["exec_id"] == phantom["exec_id"]
    assert diff["shares"] == "8"
    [event] = _events(engine, "RECON_UNKNOWN_FILLS")
    assert event.severity == "critical" and phantom["exec_id"] in event.message
    assert event.details["recon_run_id"] == result.run_id


def test_fills_before_the_window_or_after_the_question_are_not_flagged(engine: Engine) -> None:
    _order(engine)
    yesterday = execution(1, "100")
    yesterday["time"] = (DAY - timedelta(hours=2)).isoformat()
    _record(engine, yesterday)
    # Received after the venue was asked: the answer cannot be expected to list it.
    late = execution(2, "100")
    late["received_at"] = (T0 + timedelta(hours=1)).isoformat()
    _record(engine, late)
    times = clock()
    result = reconcile_executions(
        engine, Venue(executions=[]), None, since=DAY, clock=lambda: next(times)
    )
    assert (result.status, result.flagged) == ("ok", 0)


def test_a_venue_that_does_not_answer_is_a_failed_run_never_ok(engine: Engine) -> None:
    times = clock()
    result = reconcile_executions(engine, Venue(), None, since=DAY, clock=lambda: next(times))
    assert result.status == "failed"
    assert "no reqExecutions answer" in result.details["reason"]
    positions = reconcile_positions(engine, Venue(), clock=lambda: next(times))
    assert positions.status == "failed"
    assert [(r.kind, r.status) for r in _runs(engine)] == [
        ("executions", "failed"),
        ("positions", "failed"),
    ]


def test_positions_difference_over_five_is_critical_smaller_a_warning(engine: Engine) -> None:
    _order(engine)
    _record(engine, execution(1, "100"))
    times = clock()
    # The venue holds 106: 6 more than the ledger's 100 (critical); QQQ 2 the ledger lacks.
    venue = Venue(
        positions=[
            {
                "con_id": CON,
                "symbol": "SPY",
                "position": "106",
                "avg_cost": "450",
                "account": "DU1",
            },
            {
                "con_id": 320227571,
                "symbol": "QQQ",
                "position": "2",
                "avg_cost": "1",
                "account": "DU1",
            },
        ]
    )
    result = reconcile_positions(engine, venue, clock=lambda: next(times))
    assert result.status == "critical"
    by_con = {d["con_id"]: d for d in result.differences}
    assert by_con[CON]["severity"] == "critical" and by_con[CON]["difference"] == "6"
    assert by_con[320227571]["severity"] == "warning"
    [event] = _events(engine, "RECON_POSITION_MISMATCH")
    assert event.severity == "critical" and event.scope_key == str(CON)

    venue = Venue(positions=[{"con_id": CON, "symbol": "SPY", "position": "103"}])
    assert reconcile_positions(engine, venue, clock=lambda: next(times)).status == "warning"
    venue = Venue(positions=[{"con_id": CON, "symbol": "SPY", "position": "100"}])
    result = reconcile_positions(engine, venue, clock=lambda: next(times))
    assert (result.status, result.flagged, result.checked) == ("ok", 0, 1)
    assert len(_events(engine, "RECON_POSITION_MISMATCH")) == 1


def test_end_of_day_run_is_due_once_after_the_close(engine: Engine) -> None:
    close = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # 13:00 ET, the day after Thanksgiving
    assert not eod_due(engine, now=close, close=close, delay_s=900)
    after = close + timedelta(minutes=16)
    assert eod_due(engine, now=after, close=close, delay_s=900)
    assert not eod_due(engine, now=after, close=None, delay_s=900)
    failed = reconcile_positions(engine, Venue(), clock=lambda: after)
    assert failed.status == "failed"
    assert eod_due(engine, now=after, close=close, delay_s=900)  # a failed run is tried again
    reconcile_positions(engine, Venue(positions=[]), clock=lambda: after, trigger="eod")
    assert not eod_due(engine, now=after + timedelta(hours=1), close=close, delay_s=900)


def test_beat_runs_the_recon_tasks_on_the_recon_queue() -> None:
    import celeryconfig
    from tasks.app import celery_app

    celery_app.loader.import_default_modules()
    names = {
        entry["task"]
        for key, entry in celeryconfig.beat_schedule.items()
        if str(key).startswith("recon-")
    }
    assert names == {
        "tasks.recon.reconcile_executions",
        "tasks.recon.positions_eod_tick",
        "tasks.recon.shortfall_tick",
    }
    assert names <= set(celery_app.tasks)
    assert celeryconfig.beat_schedule["recon-executions"]["schedule"] == 300.0
    assert celery_app.amqp.router.route({}, "tasks.recon.reconcile_executions")["queue"].name == (
        "recon"
    )


def test_the_task_records_a_failed_run_when_no_bridge_answers(
    epm_env: Any, redis_url: str, pg_url: str
) -> None:
    from store.db import make_engine as engine_for
    from store.migrate import upgrade
    from tasks.recon import reconcile_executions_task
    from tests.integration.conftest import wipe

    upgrade(pg_url)
    eng = engine_for(pg_url)
    wipe(eng)
    epm_env.setenv("EPM_REDIS_URL", redis_url)
    epm_env.setenv("EPM_DATABASE_URL", pg_url)
    epm_env.setenv("EPM_RECON_TIMEOUT_S", "0.2")
    outcome = reconcile_executions_task.apply().get()
    assert outcome["status"] == "failed" and outcome["kind"] == "executions"
    assert [(r.kind, r.status) for r in _runs(eng)] == [("executions", "failed")]
    wipe(eng)
    # The question it queued for the bridge: gone, so no later test's bridge meets it.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    asked = [i for i, f in client.xrange("ib:commands") if f.get("type") == "req_executions"]
    assert len(asked) == 1
    client.xdel("ib:commands", *asked)
    client.close()
