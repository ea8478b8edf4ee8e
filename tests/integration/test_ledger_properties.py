"""Replay determinism of the ledger: any permutation or duplication of a recorded callback
sequence gives the same fills, orders and positions, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from services import ledger
from services.ledger import process_callback
from store.db import dispose_engines, make_engine, write_transaction
from store.migrate import upgrade
from store.schema import commissions, execution_orders, fills, positions_current
from tests.integration.conftest import wipe

T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
D = Decimal
CON_ID = 265598
Callback = tuple[str, dict[str, Any]]


def _reset(engine: Engine) -> None:
    """Empty the ledger and create the two orders epm itself placed."""
    wipe(engine)
    with write_transaction(engine) as conn:
        for coid, ib_id, action, qty in (("A-1", 11, "BUY", "100"), ("A-2", 12, "SELL", "30")):
            ledger.create_order(
                conn,
                {
                    "client_order_id": coid,
                    "client_id": 1,
                    "ib_order_id": ib_id,
                    "strategy": "Momentum_EQ",
                    "con_id": CON_ID,
                    "symbol": "AAPL",
                    "sec_type": "STK",
                    "action": action,
                    "quantity": D(qty),
                    "state": "PLACED",
                },
                T0,
            )


class _Clock:
    """Distinct receive times, so each recorded callback is a distinct fact."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return (T0 + timedelta(milliseconds=self.n)).isoformat()


def _exec(
    clock: _Clock, exec_id: str, order: dict[str, Any], shares: D, price: D, at: int
) -> Callback:
    return (
        "execution",
        {
            "exec_id": exec_id,
            "order_id": order["order_id"],
            "client_id": order["client_id"],
            "perm_id": order["perm_id"],
            "order_ref": order["ref"],
            "con_id": CON_ID,
            "symbol": "AAPL",
            "sec_type": "STK",
            "side": "BOT" if order["action"] == "BUY" else "SLD",
            "shares": str(shares),
            "price": str(price),
            "account": "DU1",
            "time": (T0 + timedelta(seconds=at)).isoformat(),
            "received_at": clock(),
        },
    )


def _status(clock: _Clock, order: dict[str, Any], ib_status: str, filled: D, total: D) -> Callback:
    return (
        "order_status",
        {
            "order_id": order["order_id"],
            "client_id": order["client_id"],
            "perm_id": order["perm_id"],
            "ib_status": ib_status,
            "filled": str(filled),
            "remaining": str(total - filled),
            "received_at": clock(),
        },
    )


def _commission(clock: _Clock, exec_id: str, amount: str) -> Callback:
    return (
        "commission",
        {"exec_id": exec_id, "commission": amount, "currency": "USD", "received_at": clock()},
    )


def _open(clock: _Clock, order: dict[str, Any], total: D, ib_status: str) -> Callback:
    return (
        "open_order",
        {
            "order_id": order["order_id"],
            "client_id": order["client_id"],
            "perm_id": order["perm_id"],
            "order_ref": order["ref"],
            "con_id": CON_ID,
            "symbol": "AAPL",
            "sec_type": "STK",
            "action": order["action"],
            "total_quantity": str(total),
            "order_type": "LMT",
            "lmt_price": "190",
            "account": "DU1",
            "ib_status": ib_status,
            "received_at": clock(),
        },
    )


A = {"order_id": 11, "client_id": 1, "perm_id": 9001, "ref": "A-1", "action": "BUY"}
B = {"order_id": 12, "client_id": 1, "perm_id": 9002, "ref": "A-2", "action": "SELL"}
# Placed by hand in TWS: no IB order id, no ref; only the permId identifies it.
C = {"order_id": 0, "client_id": 0, "perm_id": 777, "ref": None, "action": "SELL"}


@st.composite
def recordings(draw: st.DrawFn) -> list[Callback]:
    """One plausible session: order A filled in parts (maybe with a correction), B partly or
    wholly filled or cancelled, and C, unknown to epm, filled."""
    clock = _Clock()
    seq: list[Callback] = []
    cents = st.integers(min_value=18900, max_value=19100).map(lambda c: D(c) / 100)

    parts = draw(st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=4))
    sizes: list[D] = []
    for p in parts:
        if sum(sizes, D(0)) + p >= 100:
            break
        sizes.append(D(p))
    sizes.append(D(100) - sum(sizes, D(0)))
    seq.append(_open(clock, A, D(100), "PreSubmitted"))
    seq.append(_status(clock, A, "PreSubmitted", D(0), D(100)))
    seq.append(_status(clock, A, "Submitted", D(0), D(100)))
    seq.append(_status(clock, A, "Submitted", D(0), D(100)))  # IB repeats itself
    cum = D(0)
    for i, size in enumerate(sizes):
        exec_id = f"0000a.{i:04x}.01.01"
        seq.append(_exec(clock, exec_id, A, size, draw(cents), at=i))
        if draw(st.booleans()):
            seq.append(_commission(clock, exec_id, draw(st.sampled_from(["0.35", "1.00", "0.5"]))))
        cum += size
        seq.append(_status(clock, A, "Submitted" if cum < 100 else "Filled", cum, D(100)))
    if draw(st.booleans()):
        # A correction of the first execution: same base, next suffix, a new price.
        seq.append(_exec(clock, "0000a.0000.01.02", A, sizes[0], draw(cents), at=0))
        seq.append(_commission(clock, "0000a.0000.01.02", "0.40"))

    b_fill = draw(st.sampled_from([D(0), D(10), D(30)]))
    seq.append(_status(clock, B, "Submitted", D(0), D(30)))
    if b_fill:
        seq.append(_exec(clock, "0000b.0000.01.01", B, b_fill, draw(cents), at=60))
    if b_fill < 30:
        seq.append(_status(clock, B, "PendingCancel", b_fill, D(30)))
        seq.append(_status(clock, B, "Cancelled", b_fill, D(30)))
        seq.append(
            (
                "order_error",
                {
                    "order_id": 12,
                    "client_id": 1,
                    "code": 202,
                    "message": "Order Canceled - reason:",
                    "received_at": clock(),
                },
            )
        )
    else:
        seq.append(_status(clock, B, "Filled", b_fill, D(30)))

    seq.append(_exec(clock, "0000c.0000.01.01", C, D(20), draw(cents), at=30))
    seq.append(_commission(clock, "0000c.0000.01.01", "1.00"))
    seq.append(_status(clock, C, "Filled", D(20), D(20)))
    if draw(st.booleans()):
        seq.append(_open(clock, C, D(20), "Filled"))
    return seq


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[Callback], list[Callback]]:
    recorded = draw(recordings())
    extra = draw(st.lists(st.sampled_from(recorded), max_size=6))
    return recorded, draw(st.permutations(recorded + extra))


def _s(value: object) -> str | None:
    return None if value is None else str(value)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The ledger state that must not depend on arrival order (as strings: scale included).

    Read in one snapshot: polled while a worker still writes, PostgreSQL's READ COMMITTED would
    let a later query see an order the first did not (REPEATABLE READ; SQLite's read
    transaction is a snapshot already)."""
    isolation = "REPEATABLE READ" if engine.dialect.name == "postgresql" else None
    options = {"isolation_level": isolation} if isolation else {}
    with engine.connect().execution_options(**options) as conn:
        coid = {r.id: r.client_order_id for r in conn.execute(sa.select(execution_orders))}
        return {
            "orders": sorted(
                (
                    r.client_order_id,
                    r.state,
                    r.action,
                    _s(r.quantity),
                    _s(r.filled_qty),
                    _s(r.avg_fill_price),
                    _s(r.ib_filled_qty),
                    r.last_ib_status,
                    r.reject_code,
                    r.ib_order_id,
                    r.perm_id,
                )
                for r in conn.execute(sa.select(execution_orders))
            ),
            "fills": sorted(
                (
                    r.execution_id,
                    r.superseded_by,
                    coid[r.order_id],
                    _s(r.shares),
                    _s(r.price),
                    r.strategy,
                    r.executed_at.isoformat(),
                )
                for r in conn.execute(sa.select(fills))
            ),
            "commissions": sorted(
                (r.execution_id, _s(r.commission), r.estimated)
                for r in conn.execute(sa.select(commissions))
            ),
            "positions": sorted(
                (
                    r.con_id,
                    r.strategy_id,
                    _s(r.quantity),
                    _s(r.avg_price),
                    _s(r.realized_pl),
                    _s(r.commissions),
                )
                for r in conn.execute(sa.select(positions_current))
            ),
        }


def replay(engine: Engine, callbacks: list[Callback]) -> dict[str, list[tuple[Any, ...]]]:
    _reset(engine)
    for kind, payload in callbacks:
        outcome = process_callback(kind, payload, engine=engine, redis_client=None, now=T0)
        assert outcome["outcome"] != "rejected", outcome
    return snapshot(engine)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=deliveries())
def test_any_delivery_order_gives_the_recorded_ledger(
    engine: Engine, case: tuple[list[Callback], list[Callback]]
) -> None:
    recorded, delivered = case
    expected = replay(engine, recorded)
    assert replay(engine, delivered) == expected


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seq=recordings())
def test_recorded_ledger_is_consistent(engine: Engine, seq: list[Callback]) -> None:
    state = replay(engine, seq)
    orders = {o[0]: o for o in state["orders"]}
    assert orders["A-1"][1] == "FILLED"
    assert orders["A-1"][4] == "100"
    assert orders["ib:perm:777"][1] == "FILLED"
    # Position quantity = signed sum of the effective fills.
    effective = [f for f in state["fills"] if f[1] is None]
    signed = {
        "A-1": D(1),
        "A-2": D(-1),
        "ib:perm:777": D(-1),
    }
    for con_id, strategy, qty, *_ in state["positions"]:
        want = sum((signed[f[2]] * D(f[3]) for f in effective if f[5] == strategy), D(0))
        assert con_id == CON_ID
        assert D(qty) == want
    # Every execution appears exactly once.
    executions = {p["exec_id"] for kind, p in seq if kind == "execution"}
    assert sorted(executions) == [f[0] for f in state["fills"]]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seq=recordings())
def test_same_recording_gives_identical_ledgers_on_sqlite_and_postgresql(
    sqlite_url: str, pg_url: str, seq: list[Callback]
) -> None:
    results = []
    for url in (sqlite_url, pg_url):
        upgrade(url)
        results.append(replay(make_engine(url), seq))
    dispose_engines()
    assert results[0] == results[1]
