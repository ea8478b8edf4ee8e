"""DESIGN invariant: position quantity = signed sum of the (effective) fills.

Random executions over several orders, strategies and contracts, each possibly corrected one or
more times (a correction replaces, never adds), delivered in any order with duplicates and with
or without commissions, on SQLite and on PostgreSQL, one worker or several racing. The expected
figures are computed here independently of `models.fills`: per execution base, the version with
the highest suffix counts, with the sign of its order's side.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from services import ledger
from services.ledger import process_callback
from store.db import write_transaction
from store.schema import UNATTRIBUTED_STRATEGY as UNATTRIBUTED
from store.schema import execution_orders, fills
from store.schema import positions_current as positions
from tests.integration.conftest import wipe

T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
D = Decimal
Callback = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class _Order:
    coid: str | None  # None: placed in TWS, unknown to epm until its execution arrives
    ib_order_id: int
    perm_id: int
    strategy: str
    con_id: int
    action: str
    # Our order, but its IB id is not on the row yet: executions without its orderRef open a
    # stand-in that the first execution with the ref folds into it.
    id_unknown: bool = False

    @property
    def sign(self) -> Decimal:
        return D(1) if self.action == "BUY" else D(-1)

    @property
    def key(self) -> tuple[int, str]:
        return (self.con_id, self.strategy)


ORDERS = (
    _Order("P-1", 21, 5001, "Momentum_EQ", 1001, "BUY"),
    _Order("P-2", 22, 5002, "Momentum_EQ", 1001, "SELL"),
    _Order("P-3", 23, 5003, "MeanRev_EQ", 1001, "BUY"),
    _Order("P-4", 24, 5004, "MeanRev_EQ", 2002, "SELL"),
    _Order(None, 0, 5005, UNATTRIBUTED, 1001, "SELL"),
    _Order("P-6", 26, 5006, "Momentum_EQ", 2002, "BUY", id_unknown=True),
)


def _reset(engine: Engine) -> None:
    """An empty ledger holding epm's own orders (targets too large to matter here)."""
    wipe(engine)
    with write_transaction(engine) as conn:
        for o in ORDERS:
            if o.coid is None:
                continue
            ledger.create_order(
                conn,
                {
                    "client_order_id": o.coid,
                    "client_id": 1,
                    "ib_order_id": None if o.id_unknown else o.ib_order_id,
                    "strategy": o.strategy,
                    "con_id": o.con_id,
                    "symbol": f"SYM{o.con_id}",
                    "sec_type": "STK",
                    "action": o.action,
                    "quantity": D(10_000_000),
                    "state": "PLACED",
                },
                T0,
            )


@dataclass(frozen=True)
class _Version:
    """One execId: `seq` 1 is the original, higher ones are corrections of it."""

    order: _Order
    base: str
    seq: int
    shares: Decimal
    price: Decimal
    at: int
    with_ref: bool = True

    @property
    def exec_id(self) -> str:
        return f"{self.base}.{self.seq:02x}"

    def callback(self) -> Callback:
        o = self.order
        return (
            "execution",
            {
                "exec_id": self.exec_id,
                "order_id": o.ib_order_id,
                "client_id": 1 if o.coid is not None else 0,
                "perm_id": o.perm_id,
                "order_ref": o.coid if self.with_ref else None,
                "con_id": o.con_id,
                "symbol": f"SYM{o.con_id}",
                "sec_type": "STK",
                "side": "BOT" if o.action == "BUY" else "SLD",
                "shares": str(self.shares),
                "price": str(self.price),
                "account": "DU1",
                "time": (T0 + timedelta(seconds=self.at)).isoformat(),
                "received_at": (T0 + timedelta(seconds=self.at, milliseconds=self.seq)).isoformat(),
            },
        )


# Fractional quantities and sub-cent prices: exactness is part of the invariant.
_shares = st.decimals(min_value=D("0.01"), max_value=D("5000"), places=2)
_prices = st.decimals(min_value=D("0.0001"), max_value=D("999"), places=4)


@st.composite
def sessions(draw: st.DrawFn) -> tuple[list[_Version], list[Callback]]:
    """Executions with their corrections, and one delivery of them (shuffled, duplicated)."""
    versions: list[_Version] = []
    n = draw(st.integers(min_value=1, max_value=12))
    for i in range(n):
        order = draw(st.sampled_from(ORDERS))
        base = f"{i:04x}{order.perm_id:04x}.6581b1f5.01"
        # Which suffixes IB sent for this execution: 1 always, corrections possibly skip.
        seqs = sorted(draw(st.sets(st.integers(min_value=2, max_value=5), max_size=2)) | {1})
        for seq in seqs:
            with_ref = not order.id_unknown or draw(st.booleans())
            versions.append(
                _Version(order, base, seq, draw(_shares), draw(_prices), at=i, with_ref=with_ref)
            )
    callbacks = [v.callback() for v in versions]
    for v in versions:
        if draw(st.booleans()):
            callbacks.append(
                (
                    "commission",
                    {
                        "exec_id": v.exec_id,
                        "commission": str(draw(st.sampled_from(["0.35", "1.00", "1.0725"]))),
                        "currency": "USD",
                        "received_at": T0.isoformat(),
                    },
                )
            )
    duplicates = draw(st.lists(st.sampled_from(callbacks), max_size=len(callbacks)))
    return versions, draw(st.permutations(callbacks + duplicates))


def expected_positions(versions: list[_Version]) -> dict[tuple[int, str], Decimal]:
    """Signed sum per (con_id, strategy) of the highest-suffix version of each execution."""
    latest: dict[str, _Version] = {}
    for v in versions:
        if v.base not in latest or latest[v.base].seq < v.seq:
            latest[v.base] = v
    totals: dict[tuple[int, str], Decimal] = {}
    for v in latest.values():
        key = v.order.key if _attributed(v.order, versions) else (v.order.con_id, UNATTRIBUTED)
        totals[key] = totals.get(key, D(0)) + v.order.sign * v.shares
    return totals


def _attributed(order: _Order, versions: list[_Version]) -> bool:
    """Whether the ledger can know the order's fills are ours: some execution named its ref."""
    return any(v.with_ref for v in versions if v.order == order)


def _deliver(engine: Engine, callbacks: list[Callback]) -> None:
    for kind, payload in callbacks:
        # Transient conflicts between racing workers are retried, as the Celery task does.
        for attempt in range(30):
            try:
                outcome = process_callback(kind, payload, engine=engine, redis_client=None, now=T0)
            except (sa.exc.DBAPIError, ledger.StaleOrderError):
                if attempt == 29:
                    raise
                continue
            assert outcome["outcome"] != "rejected", outcome
            break


def check_invariant(engine: Engine, versions: list[_Version]) -> None:
    want = expected_positions(versions)
    with engine.connect() as conn:
        stored = {(r.con_id, r.strategy_id): r.quantity for r in conn.execute(sa.select(positions))}
        recorded = sorted(r.execution_id for r in conn.execute(sa.select(fills.c.execution_id)))
        orders = {
            r.client_order_id: r.filled_qty for r in conn.execute(sa.select(execution_orders))
        }
    for key in set(want) | set(stored):
        assert stored.get(key, D(0)) == want.get(key, D(0)), key
    # Every execId exactly once.
    assert recorded == sorted({v.exec_id for v in versions})
    # An order's cumulative quantity is the unsigned sum of its effective fills.
    latest: dict[str, _Version] = {}
    for v in versions:
        if v.base not in latest or latest[v.base].seq < v.seq:
            latest[v.base] = v
    for o in ORDERS:
        coid = o.coid if o.coid is not None else f"ib:perm:{o.perm_id}"
        if o.id_unknown and not _attributed(o, versions):
            coid = f"ib:1:{o.ib_order_id}"  # the stand-in, never adopted
        filled = sum((v.shares for v in latest.values() if v.order == o), D(0))
        if coid in orders:
            assert orders[coid] == filled, coid
        else:
            assert filled == D(0), coid
        if o.id_unknown and _attributed(o, versions):
            assert f"ib:1:{o.ib_order_id}" not in orders


_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _examples(n: int) -> settings:
    return settings(_SETTINGS, max_examples=n)


@_examples(25)
@given(case=sessions())
def test_position_quantity_is_the_signed_sum_of_effective_fills(
    engine: Engine, case: tuple[list[_Version], list[Callback]]
) -> None:
    versions, delivery = case
    _reset(engine)
    _deliver(engine, delivery)
    check_invariant(engine, versions)


@_examples(6)
@given(case=sessions(), seed=st.integers(min_value=0, max_value=2**16))
def test_position_invariant_holds_with_racing_workers(
    engine: Engine, case: tuple[list[_Version], list[Callback]], seed: int
) -> None:
    versions, delivery = case
    _reset(engine)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        mine = list(delivery)
        random.Random(seed + n).shuffle(mine)
        try:
            _deliver(engine, mine)
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check_invariant(engine, versions)
