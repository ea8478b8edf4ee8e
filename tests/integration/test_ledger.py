"""The ledger write path on SQLite and PostgreSQL: fills once, corrections, commissions, FSM."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.ledger_reports import OpenOrderReport
from models.orders import InvalidTransition, OrderEvent, OrderEventType
from services import ledger
from services.ledger import mirror_order, process_callback
from store.db import dispose_engines, make_engine, write_transaction
from store.migrate import upgrade
from store.schema import (
    UNATTRIBUTED_STRATEGY,
    commissions,
    contracts,
    execution_orders,
    fills,
    order_events,
    positions_current,
    positions_history,
    risk_events,
)
from tests.integration.conftest import wipe

T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
D = Decimal
CON_ID = 265598


def our_order(engine: Engine, coid: str = "A-1", ib_order_id: int = 11, **kw: Any) -> None:
    values: dict[str, Any] = {
        "client_order_id": coid,
        "client_id": 1,
        "ib_order_id": ib_order_id,
        "strategy": "Momentum_EQ",
        "con_id": CON_ID,
        "symbol": "AAPL",
        "sec_type": "STK",
        "action": "BUY",
        "quantity": D("100"),
        "order_type": "LMT",
        "limit_price": D("190"),
        "state": "PLACED",
        **kw,
    }
    with write_transaction(engine) as conn:
        ledger.create_order(conn, values, T0)


def execution(exec_id: str, shares: str, price: str, **kw: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "exec_id": exec_id,
        "req_id": -1,
        "order_id": 11,
        "client_id": 1,
        "perm_id": 9001,
        "con_id": CON_ID,
        "symbol": "AAPL",
        "sec_type": "STK",
        "multiplier": None,
        "currency": "USD",
        "side": "BOT",
        "action": "BUY",
        "shares": shares,
        "price": price,
        "exec_exchange": "ISLAND",
        "account": "DU123",
        "order_ref": "A-1",
        "time": T0.isoformat(),
        "received_at": T0.isoformat(),
    }
    payload.update(kw)
    return payload


def status(ib_status: str, filled: str, remaining: str, **kw: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "order_id": 11,
        "client_id": 1,
        "perm_id": 9001,
        "ib_status": ib_status,
        "filled": filled,
        "remaining": remaining,
        "avg_fill_price": "0",
        "received_at": T0.isoformat(),
    }
    payload.update(kw)
    return payload


def commission(exec_id: str, amount: str, **kw: Any) -> dict[str, Any]:
    payload = {
        "exec_id": exec_id,
        "client_id": 1,
        "commission": amount,
        "currency": "USD",
        "realized_pnl": None,
        "received_at": T0.isoformat(),
    }
    payload.update(kw)
    return payload


def run(engine: Engine, kind: str, payload: object, **kw: Any) -> dict[str, Any]:
    return process_callback(kind, payload, engine=engine, redis_client=None, now=T0, **kw)


def one(engine: Engine, query: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(query).one()


def rows(engine: Engine, query: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def order_row(engine: Engine, coid: str = "A-1") -> Any:
    return one(
        engine, sa.select(execution_orders).where(execution_orders.c.client_order_id == coid)
    )


def position(engine: Engine, strategy: str = "Momentum_EQ") -> Any:
    return one(
        engine,
        sa.select(positions_current).where(
            positions_current.c.con_id == CON_ID, positions_current.c.strategy_id == strategy
        ),
    )


def count(engine: Engine, table: sa.Table) -> int:
    return int(one(engine, sa.select(sa.func.count()).select_from(table))[0])


def test_executions_fill_the_order_and_build_the_position(engine: Engine) -> None:
    our_order(engine)
    first = run(engine, "execution", execution("e1.01.01", "60", "190.10"))
    assert first["outcome"] == "recorded"
    assert first["state"] == "PARTIAL_FILLED"
    run(engine, "execution", execution("e2.01.01", "40", "190.35"))
    order = order_row(engine)
    assert order.state == "FILLED"
    assert order.filled_qty == D("100")
    assert order.avg_fill_price == D("190.2")
    assert order.perm_id == 9001
    pos = position(engine)
    assert pos.quantity == D("100")
    assert pos.avg_price == D("190.2")
    assert pos.realized_pl == D(0)
    # Estimates stand in until the commission reports arrive: IB tiered, 0.0035 a share with
    # a 0.35 minimum (60 and 40 shares: both at the minimum).
    assert pos.commissions == D("0.35") + D("0.35")
    assert count(engine, positions_history) == 2


def test_duplicate_execution_is_a_noop(engine: Engine) -> None:
    our_order(engine)
    run(engine, "execution", execution("e1.01.01", "60", "190.10"))
    events_before = count(engine, order_events)
    history_before = count(engine, positions_history)
    again = run(engine, "execution", execution("e1.01.01", "60", "190.10"))
    assert again["outcome"] == "duplicate"
    assert count(engine, fills) == 1
    assert count(engine, order_events) == events_before
    assert count(engine, positions_history) == history_before
    assert order_row(engine).filled_qty == D("60")


@pytest.mark.parametrize("correction_first", [False, True])
def test_correction_replaces_the_earlier_execution(engine: Engine, correction_first: bool) -> None:
    our_order(engine)
    original = execution("e1.01.01", "60", "190.10")
    corrected = execution("e1.01.02", "60", "190.00")
    for payload in [corrected, original] if correction_first else [original, corrected]:
        run(engine, "execution", payload)
    superseded = dict(
        (r.execution_id, r.superseded_by)
        for r in rows(engine, sa.select(fills.c.execution_id, fills.c.superseded_by))
    )
    assert superseded == {"e1.01.01": "e1.01.02", "e1.01.02": None}
    order = order_row(engine)
    assert order.filled_qty == D("60")
    assert order.avg_fill_price == D("190.00")
    pos = position(engine)
    assert pos.quantity == D("60")
    assert pos.avg_price == D("190.00")


@pytest.mark.parametrize("commission_first", [False, True])
def test_commission_before_or_after_its_fill(engine: Engine, commission_first: bool) -> None:
    our_order(engine)
    steps = [
        ("execution", execution("e1.01.01", "100", "190")),
        ("commission", commission("e1.01.01", "0.52")),
    ]
    for kind, payload in reversed(steps) if commission_first else steps:
        run(engine, kind, payload)
    row = one(engine, sa.select(commissions))
    assert row.commission == D("0.52")
    assert row.estimated is False
    assert position(engine).commissions == D("0.52")


def test_repeated_commission_report_is_a_noop(engine: Engine) -> None:
    our_order(engine)
    run(engine, "execution", execution("e1.01.01", "100", "190"))
    run(engine, "commission", commission("e1.01.01", "0.52"))
    assert run(engine, "commission", commission("e1.01.01", "0.52"))["outcome"] == "duplicate"


def test_unknown_order_is_created_from_its_execution(engine: Engine) -> None:
    # Placed in TWS by hand: IB order id 0, only the permId identifies it.
    manual = execution(
        "m1.01.01",
        "30",
        "189.5",
        order_id=0,
        client_id=0,
        perm_id=777,
        order_ref=None,
        side="SLD",
        action="SELL",
    )
    result = run(engine, "execution", manual)
    assert result["client_order_id"] == "ib:perm:777"
    order = order_row(engine, "ib:perm:777")
    assert order.action == "SELL"
    assert order.quantity is None
    assert order.state == "PARTIAL_FILLED"
    assert order.details["origin"] == "execution"
    pos = position(engine, UNATTRIBUTED_STRATEGY)
    assert pos.quantity == D("-30")
    # IB's Filled status completes an order whose target the ledger never learned.
    run(engine, "order_status", status("Filled", "30", "0", order_id=0, client_id=0, perm_id=777))
    assert order_row(engine, "ib:perm:777").state == "FILLED"


def test_open_order_names_the_target_of_an_order_seen_first_in_an_execution(
    engine: Engine,
) -> None:
    run(engine, "execution", execution("x1.01.01", "50", "10", order_id=42, order_ref=None))
    assert order_row(engine, "ib:1:42").state == "PARTIAL_FILLED"
    open_order = {
        "order_id": 42,
        "client_id": 1,
        "perm_id": 9001,
        "con_id": CON_ID,
        "symbol": "AAPL",
        "sec_type": "STK",
        "action": "BUY",
        "total_quantity": "50",
        "order_type": "MKT",
        "tif": "DAY",
        "ib_status": "Submitted",
        "received_at": T0.isoformat(),
    }
    run(engine, "open_order", open_order)
    order = order_row(engine, "ib:1:42")
    assert order.quantity == D("50")
    assert order.order_type == "MKT"
    assert order.state == "FILLED"


def test_late_submitted_after_filled_is_recorded_not_applied(engine: Engine) -> None:
    our_order(engine)
    run(engine, "order_status", status("Filled", "100", "0"))
    late = run(engine, "order_status", status("Submitted", "0", "100"))
    assert late["applied"] is False
    assert late["state"] == "FILLED"
    events = rows(engine, sa.select(order_events).order_by(order_events.c.id))
    assert [(e.ib_status, e.applied) for e in events] == [("Filled", True), ("Submitted", False)]


def test_redelivered_status_task_records_one_event(engine: Engine) -> None:
    our_order(engine)
    payload = status("Submitted", "0", "100")
    run(engine, "order_status", payload)
    assert run(engine, "order_status", payload)["outcome"] == "duplicate"
    assert count(engine, order_events) == 1
    # IB's own repeat (received later) is a second fact, recorded but not applied.
    repeat = status("Submitted", "0", "100", received_at=(T0 + timedelta(seconds=1)).isoformat())
    assert run(engine, "order_status", repeat)["applied"] is False
    assert count(engine, order_events) == 2


@pytest.mark.parametrize(
    ("code", "state", "event_type"),
    [(201, "REJECTED", "REJECTED"), (202, "CANCELLED", "CANCELLED"), (399, "PLACED", "IB_WARNING")],
)
def test_order_errors(engine: Engine, code: int, state: str, event_type: str) -> None:
    our_order(engine)
    error = {
        "order_id": 11,
        "client_id": 1,
        "code": code,
        "message": "from IB",
        "received_at": T0.isoformat(),
    }
    run(engine, "order_error", error)
    order = order_row(engine)
    assert order.state == state
    event = one(engine, sa.select(order_events))
    assert event.event_type == event_type
    if code == 201:
        assert order.reject_code == 201
        assert order.reject_reason == "from IB"


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        ("execution", "not a dict", "BAD_PAYLOAD"),
        ("execution", {"exec_id": "e", "side": "BOT"}, "INVALID_EXECUTION"),
        ("execution", execution("e1.01.01", 60.0, "1"), "INVALID_EXECUTION"),  # type: ignore[arg-type]
        ("execution", execution("e1.01.01", "NaN", "1"), "INVALID_EXECUTION"),
        (
            "execution",
            execution("e1.01.01", "1", "1", time="2026-11-26T15:00:00"),
            "INVALID_EXECUTION",
        ),
        ("execution", execution("   ", "1", "1"), "INVALID_EXECUTION"),
        ("commission", {"exec_id": "e", "commission": "x"}, "INVALID_COMMISSION"),
        ("order_status", status("Submitted", "-1", "0"), "INVALID_ORDERSTATUS"),
        # Ids beyond the columns' integer range, and a time with no UTC equivalent, used to
        # escape the task as driver errors (OverflowError / DataError).
        ("execution", execution("e1.01.01", "1", "1", order_id=2**70), "INVALID_EXECUTION"),
        ("order_status", status("Submitted", "0", "1", client_id=2**40), "INVALID_ORDERSTATUS"),
        (
            "execution",
            execution("e1.01.01", "1", "1", time="0001-01-01T00:00:00+14:00"),
            "INVALID_EXECUTION",
        ),
        # PostgreSQL text cannot hold NUL; the driver raised ValueError out of the task.
        ("execution", execution("e1\x00.01.01", "1", "1"), "INVALID_EXECUTION"),
        (
            "order_error",
            {**status("x", "0", "0"), "code": 201, "message": "a\x00b"},
            "INVALID_ORDERERROR",
        ),
    ],
)
def test_bad_payloads_are_rejected_with_a_code_not_raised(
    engine: Engine, kind: str, payload: object, reason: str
) -> None:
    result = run(engine, kind, payload)
    assert result["outcome"] == "rejected"
    assert result["reason"] == reason
    event = one(engine, sa.select(risk_events))
    assert event.kind == "LEDGER_PAYLOAD_REJECTED"
    assert event.code == reason
    assert count(engine, fills) == 0
    assert count(engine, execution_orders) == 0


def test_unknown_ib_status_is_recorded_with_its_code(engine: Engine) -> None:
    our_order(engine)
    result = run(engine, "order_status", status("Sumbitted", "0", "100"))
    assert result["applied"] is False
    assert one(engine, sa.select(order_events)).event_type == "UNKNOWN_IB_STATUS"


def test_decimal_precision_survives_the_write_path(engine: Engine) -> None:
    our_order(engine, quantity=D("1"))
    run(engine, "execution", execution("p.01.01", "0.1234567891", "0.1234567891"))
    row = one(engine, sa.select(fills))
    assert row.shares == D("0.1234567891")
    assert row.price == D("0.1234567891")
    assert row.executed_at == T0
    assert row.executed_at.tzinfo is not None


def test_sell_realizes_against_average_cost(engine: Engine) -> None:
    our_order(engine)
    our_order(engine, "A-2", 12, action="SELL", quantity=D("40"))
    run(engine, "execution", execution("b.01.01", "100", "10"))
    later = (T0 + timedelta(minutes=5)).isoformat()
    run(
        engine,
        "execution",
        execution(
            "s.01.01",
            "40",
            "12",
            order_id=12,
            perm_id=9002,
            order_ref="A-2",
            side="SLD",
            action="SELL",
            time=later,
        ),
    )
    pos = position(engine)
    assert pos.quantity == D("60")
    assert pos.avg_price == D("10")
    assert pos.realized_pl == D("80")
    assert order_row(engine, "A-2").state == "FILLED"


def test_our_own_events_through_apply_order_event(engine: Engine) -> None:
    our_order(engine, state="VALIDATED", ib_order_id=None)
    with write_transaction(engine) as conn:
        placed = ledger.apply_order_event(
            conn, "A-1", OrderEvent(OrderEventType.PLACED, ts_init=T0), dedupe_key="placed:A-1"
        )
        again = ledger.apply_order_event(
            conn, "A-1", OrderEvent(OrderEventType.PLACED, ts_init=T0), dedupe_key="placed:A-1"
        )
    assert placed.applied is True
    assert again.applied is False
    assert order_row(engine).state == "PLACED"
    assert order_row(engine).version == 2
    with pytest.raises(InvalidTransition), write_transaction(engine) as conn:
        ledger.apply_order_event(conn, "A-1", OrderEvent(OrderEventType.CLOSED, ts_init=T0))
    with pytest.raises(ledger.OrderNotFoundError), write_transaction(engine) as conn:
        ledger.apply_order_event(conn, "nope", OrderEvent(OrderEventType.PLACED, ts_init=T0))


def test_order_replaced_after_103_follows_the_new_id(engine: Engine) -> None:
    our_order(engine)
    link = {
        "old_order_id": 11,
        "new_order_id": 15,
        "client_order_id": "A-1",
        "client_id": 1,
        "reason": "IB_103_DUPLICATE_ORDER_ID",
        "at": T0.isoformat(),
    }
    assert run(engine, "order_replaced", link)["applied"] is True
    assert run(engine, "order_replaced", link)["outcome"] == "duplicate"
    assert order_row(engine).ib_order_id == 15
    run(engine, "execution", execution("r.01.01", "100", "190", order_id=15, order_ref=None))
    assert order_row(engine).state == "FILLED"


def test_contract_cache_upsert_keeps_the_newest(engine: Engine) -> None:
    payload = {
        "con_id": 123,
        "symbol": "SPY",
        "sec_type": "OPT",
        "expiry": "20261127",
        "strike": "600",
        "right": "C",
        "multiplier": "100",
        "local_symbol": "SPY   261127C00600000",
        "min_tick": "0.01",
        "received_at": T0.isoformat(),
    }
    run(engine, "contract", payload)
    run(
        engine,
        "contract",
        {**payload, "min_tick": "0.05", "received_at": (T0 - timedelta(1)).isoformat()},
    )
    row = one(engine, sa.select(contracts))
    assert row.min_tick == D("0.01")
    assert row.multiplier == D("100")
    run(
        engine,
        "contract",
        {**payload, "min_tick": "0.05", "received_at": (T0 + timedelta(1)).isoformat()},
    )
    assert one(engine, sa.select(contracts)).min_tick == D("0.05")


def test_mirror_to_redis_keeps_the_newest_version(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    newer = {"client_order_id": "M-1", "state": "FILLED", "version": "5"}
    older = {"client_order_id": "M-1", "state": "PLACED", "version": "3"}
    assert mirror_order(client, newer) is True
    assert mirror_order(client, older) is False
    assert client.hgetall("exec:order:M-1") == newer
    client.delete("exec:order:M-1")


def test_process_callback_mirrors_after_commit(engine: Engine, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    our_order(engine, "MIR-1")
    process_callback(
        "execution",
        execution("mi.01.01", "100", "190", order_ref="MIR-1"),
        engine=engine,
        redis_client=client,
        now=T0,
    )
    mirrored = client.hgetall("exec:order:MIR-1")
    assert mirrored["state"] == "FILLED"
    assert mirrored["filled_qty"] == "100"
    client.delete("exec:order:MIR-1")


def test_record_batch_task_records_each_item_and_rejects_bad_ones(
    engine: Engine, epm_env: pytest.MonkeyPatch, redis_url: str
) -> None:
    from tasks.ledger import record_batch

    epm_env.setenv("EPM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    epm_env.setenv("EPM_REDIS_URL", redis_url)
    our_order(engine)
    items = [
        {"kind": "execution", "payload": execution("bt.01.01", "100", "190")},
        {"kind": "nonsense", "payload": {}},
        {"kind": "commission", "payload": commission("bt.01.01", "0.5")},
        {"kind": "execution", "payload": execution("bt.01.01", "100", "190")},
    ]
    outcomes = record_batch.run(items)
    assert [o["outcome"] for o in outcomes] == ["recorded", "rejected", "recorded", "duplicate"]
    assert outcomes[1]["reason"] == "UNKNOWN_KIND"
    assert order_row(engine).state == "FILLED"
    assert position(engine).commissions == D("0.5")
    assert record_batch.run("not a list")[0]["reason"] == "BAD_PAYLOAD"
    redis.Redis.from_url(redis_url).delete("exec:order:A-1")


def open_order(total: str, received_at: datetime, **kw: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "order_id": 11,
        "client_id": 1,
        "perm_id": 9001,
        "order_ref": "A-1",
        "con_id": CON_ID,
        "symbol": "AAPL",
        "sec_type": "STK",
        "action": "BUY",
        "total_quantity": total,
        "order_type": "LMT",
        "lmt_price": "190",
        "ib_status": "Submitted",
        "received_at": received_at.isoformat(),
    }
    payload.update(kw)
    return payload


@pytest.mark.parametrize("newest_first", [False, True])
def test_late_open_order_does_not_shrink_a_modified_target(
    engine: Engine, newest_first: bool
) -> None:
    # The order was modified from 100 to 150; the two openOrder views reach two workers and
    # are recorded in either order. The newer view (by the bridge's receive time) must stand,
    # or 120 filled would complete an order that IB is still working.
    our_order(engine)
    views = [
        open_order("100", T0 + timedelta(seconds=1), lmt_price="190"),
        open_order("150", T0 + timedelta(seconds=2), lmt_price="191"),
    ]
    for view in reversed(views) if newest_first else views:
        assert run(engine, "open_order", view)["outcome"] != "rejected"
    run(engine, "execution", execution("m.01.01", "120", "190.5"))
    order = order_row(engine)
    assert (order.quantity, order.limit_price) == (D("150"), D("191"))
    assert order.state == "PARTIAL_FILLED"


@pytest.mark.parametrize("newest_first", [False, True])
def test_order_replaced_twice_keeps_the_newest_id(engine: Engine, newest_first: bool) -> None:
    # Two 103s in a row (11 → 15 → 16); the links may be recorded in either order, but order
    # ids only grow, so the order must end on 16.
    our_order(engine)
    links = [
        {
            "old_order_id": old,
            "new_order_id": new,
            "client_order_id": "A-1",
            "client_id": 1,
            "reason": "IB_103_DUPLICATE_ORDER_ID",
            "at": (T0 + timedelta(seconds=new)).isoformat(),
        }
        for old, new in ((11, 15), (15, 16))
    ]
    for link in reversed(links) if newest_first else links:
        assert run(engine, "order_replaced", link)["outcome"] != "rejected"
    assert order_row(engine).ib_order_id == 16


def test_report_times_are_stored_as_utc(engine: Engine) -> None:
    our_order(engine)
    run(engine, "execution", execution("t.01.01", "1", "190", time="2026-11-26T10:00:00-05:00"))
    fill = one(engine, sa.select(fills.c.executed_at))
    assert fill.executed_at == T0
    assert fill.executed_at.utcoffset() == timedelta(0)


def _refless_then_ref() -> list[tuple[str, dict[str, Any]]]:
    """Callbacks of order A-1 (IB id 11): four without its orderRef, then an openOrder with it."""
    return [
        ("order_status", status("Submitted", "0", "100", received_at=T0.isoformat())),
        ("execution", execution("g.01.01", "40", "190", order_ref=None)),
        ("order_status", status("PendingCancel", "40", "60", received_at="2026-11-26T15:00:01Z")),
        ("order_status", status("Cancelled", "40", "60", received_at="2026-11-26T15:00:02Z")),
        ("open_order", open_order("100", T0, ib_status="Submitted")),
    ]


def assert_adopted(engine: Engine) -> None:
    orders = rows(engine, sa.select(execution_orders))
    assert [o.client_order_id for o in orders] == ["A-1"]
    order = orders[0]
    assert (order.ib_order_id, order.perm_id) == (11, 9001)
    assert (order.state, order.filled_qty) == ("CANCELLED", D("40"))
    fill = one(engine, sa.select(fills))
    assert (fill.order_id, fill.strategy) == (order.id, "Momentum_EQ")
    assert position(engine).quantity == D("40")
    stray = rows(
        engine,
        sa.select(positions_current).where(
            positions_current.c.strategy_id == UNATTRIBUTED_STRATEGY
        ),
    )
    assert all(p.quantity == 0 for p in stray)
    # One event per callback, plus the adoption itself when there was a stand-in to adopt.
    events = rows(engine, sa.select(order_events.c.event_type))
    adopted = [e for e in events if e.event_type == "STAND_IN_ADOPTED"]
    assert len(adopted) <= 1
    assert len(events) == len(_refless_then_ref()) + len(adopted)


@pytest.mark.parametrize("ref_first", [False, True])
def test_callbacks_that_beat_the_order_ref_join_our_order(engine: Engine, ref_first: bool) -> None:
    # Our order is known by its ref before its IB id is recorded on it. orderStatus and error()
    # carry no orderRef, so when they are recorded first they open an order keyed by the IB id;
    # the first callback that names both (openOrder) must fold that one into ours, or every
    # later status (the cancel confirmation) would land on the stand-in and ours never move.
    our_order(engine, ib_order_id=None, state="PLACED")
    sequence = _refless_then_ref()
    if ref_first:
        sequence = [sequence[-1], *sequence[:-1]]
    for kind, payload in sequence:
        assert run(engine, kind, payload)["outcome"] != "rejected"
    assert_adopted(engine)
    adoptions = rows(
        engine,
        sa.select(order_events).where(order_events.c.event_type == "STAND_IN_ADOPTED"),
    )
    assert len(adoptions) == (0 if ref_first else 1)


def test_adoption_under_racing_workers(engine: Engine) -> None:
    our_order(engine, ib_order_id=None, state="PLACED")
    errors: list[BaseException] = []

    def deliver(seed: int) -> None:
        delivery = _refless_then_ref()
        random.Random(seed).shuffle(delivery)
        try:
            for kind, payload in delivery:
                for attempt in range(30):
                    try:
                        assert run(engine, kind, payload)["outcome"] != "rejected"
                        break
                    except (sa.exc.DBAPIError, ledger.StaleOrderError):
                        if attempt == 29:
                            raise
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=deliver, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert_adopted(engine)


def test_commission_racing_an_adoption_lands_on_the_adopted_position(pg_url: str) -> None:
    # PostgreSQL only (SQLite serializes whole transactions). The adoption moves a fill from the
    # UNATTRIBUTED position to our strategy's while a commissionReport for that fill is being
    # recorded; the commission must end up in the position the fill ends up in.
    upgrade(pg_url)
    engine = make_engine(pg_url)
    wipe(engine)
    our_order(engine, ib_order_id=None, state="PLACED")
    run(engine, "execution", execution("g.01.01", "40", "190", order_ref=None))
    report = commission("g.01.01", "0.35")
    outcome: list[dict[str, Any]] = []
    with write_transaction(engine) as conn:
        ledger.record_open_order(conn, OpenOrderReport.model_validate(open_order("100", T0)), T0)
        worker = threading.Thread(target=lambda: outcome.append(run(engine, "commission", report)))
        worker.start()
        # Wait (bounded) until the commission writer is blocked on a lock this transaction holds.
        deadline = time.monotonic() + 20
        while True:
            with engine.connect() as probe:
                waiting = probe.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                ).scalar_one()
            if waiting:
                break
            assert time.monotonic() < deadline, "the commission writer never waited"
    worker.join(timeout=30)
    assert outcome and outcome[0]["outcome"] == "recorded"
    assert position(engine).commissions == D("0.35")
    assert position(engine).quantity == D("40")
    wipe(engine)
    dispose_engines()


def test_adopted_stand_in_leaves_no_mirror(engine: Engine, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    our_order(engine, ib_order_id=None, state="PLACED")
    for kind, payload in _refless_then_ref():
        process_callback(kind, payload, engine=engine, redis_client=client, now=T0)
        if kind == "order_status" and payload["ib_status"] == "Submitted":
            assert client.hget("exec:order:ib:1:11", "state") == "PLACED"
    assert client.exists("exec:order:ib:1:11") == 0
    assert client.hget("exec:order:A-1", "state") == "CANCELLED"
    client.delete("exec:order:A-1")
