"""Recorded IB sessions (`tests/fixtures/ib`) through the bridge into the ledger, both dialects.

Each fixture's callbacks go through the real `BridgeWrapper` and `Outbox` (see
`tests/unit/ibgateway_bridge/replay.py`); the ledger payloads they publish are recorded with
`process_callback`, as `tasks.ledger` would. The expected books are computed here from the
fixture's raw execDetails and commissionReports, never from the ledger: the order's state, its
filled quantity and average price, one fill per execId, IB's commission (not the estimate) and
the position. Then delivery order must not matter: the same payloads again on the same ledger,
and reversed and shuffled on an empty one, give the same normalized dump of orders, fills,
commissions and positions.

Three worlds per fixture: `ours` (the orders path committed our row with its IB id before the
placement, as it does); `id_late` (our row without its IB id yet: ref-less orderStatus and
error() open a stand-in that the first callback naming our orderRef folds into our order; the
books must equal those of `ours`); and `unknown` (no row: the ledger learns the order from IB
alone, as after an order placed in TWS, and keeps it under a stand-in key). The `reject`
recordings have no `id_late` case: no callback of a venue reject names the orderRef, so nothing
can tie the stand-in to our row (docs/ledger.md: the orders path writes the IB id first).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services import ledger
from services.ledger import process_callback
from store.db import write_transaction
from store.schema import (
    UNATTRIBUTED_STRATEGY,
    commissions,
    execution_orders,
    fills,
    positions_current,
    risk_events,
)
from tests.fixtures.ib import Recording, fixture_names, load
from tests.integration.conftest import wipe
from tests.unit.ibgateway_bridge.replay import LedgerCall, ledger_callbacks, replay_wrapper

NOW = datetime(2026, 11, 24, 15, 5, tzinfo=UTC)  # the ledger's receive time
STRATEGY = "Recorded_EQ"
UNSET_DOUBLE = 1.7976931348623157e308
AVG = Decimal("1e-10")  # the ledger quantizes averages to this
FIXTURES = fixture_names()
WORLDS = ("ours", "id_late", "unknown")
SHUFFLES = 4

# How each recorded scenario ends in the books (what the recording's callbacks mean).
FINAL_STATE = {
    "market_buy_fill": "FILLED",
    "limit_partial_then_cancel": "CANCELLED",
    "reject": "REJECTED",
    "modify_filled_104": "FILLED",
}


def _dec(raw: Any) -> Decimal:
    return Decimal(str(raw))


def _fields(value: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = value["fields"]
    return fields


@dataclass(frozen=True)
class Books:
    """What the fixture's raw callbacks say the ledger must hold for its order."""

    ib_order_id: int
    order_ref: str
    con_id: int
    action: str
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None
    executions: dict[str, tuple[Decimal, Decimal]]  # execId → (shares, price), once each
    commissions: dict[str, Decimal]  # execId → IB's commissionReport
    ib_avg_price: Decimal | None  # IB's own average of the last orderStatus

    @property
    def filled(self) -> Decimal:
        return sum((shares for shares, _ in self.executions.values()), Decimal(0))

    @property
    def avg_price(self) -> Decimal | None:
        if not self.executions:
            return None
        notional = sum((s * p for s, p in self.executions.values()), Decimal(0))
        return notional / self.filled

    @property
    def signed_filled(self) -> Decimal:
        return self.filled if self.action == "BUY" else -self.filled


def books_of(rec: Recording) -> Books:
    placed = rec.requests("placeOrder")[0].args
    order, contract = _fields(placed["order"]), _fields(placed["contract"])
    executions: dict[str, tuple[Decimal, Decimal]] = {}
    for event in rec.callbacks("execDetails"):
        ex = _fields(event.args["execution"])
        seen = executions.setdefault(ex["execId"], (_dec(ex["shares"]), _dec(ex["price"])))
        # A repeat (reqExecutions) must say the same as the live one.
        assert seen == (_dec(ex["shares"]), _dec(ex["price"])), ex
    reports: dict[str, Decimal] = {}
    for event in rec.callbacks("commissionReport") + rec.callbacks("commissionAndFeesReport"):
        report = _fields(next(iter(event.args.values())))
        amount = report["commission"] if "commission" in report else report["commissionAndFees"]
        reports[report["execId"]] = _dec(amount)
    statuses = rec.callbacks("orderStatus")
    last_avg = statuses[-1].args["avgFillPrice"] if statuses else None
    lmt = order["lmtPrice"]
    return Books(
        ib_order_id=int(placed["orderId"]),
        order_ref=str(order["orderRef"]),
        con_id=int(contract["conId"]),
        action=str(order["action"]),
        quantity=_dec(order["totalQuantity"]),
        order_type=str(order["orderType"]),
        # The request as the bridge built it: Decimal prices (recorded as str), or unset.
        limit_price=None if isinstance(lmt, float) and lmt >= UNSET_DOUBLE else _dec(lmt),
        executions=executions,
        commissions=reports,
        ib_avg_price=None if not last_avg else _dec(last_avg),
    )


def our_order(engine: Engine, rec: Recording, books: Books, *, with_ib_id: bool = True) -> None:
    """Our row as the orders path commits it before `enqueue_place`: ref, IB id, terms."""
    contract = _fields(rec.requests("placeOrder")[0].args["contract"])
    with write_transaction(engine) as conn:
        ledger.create_order(
            conn,
            {
                "client_order_id": books.order_ref,
                "client_id": rec.client_id,
                "ib_order_id": books.ib_order_id if with_ib_id else None,
                "strategy": STRATEGY,
                "con_id": books.con_id,
                "symbol": contract["symbol"],
                "sec_type": contract["secType"],
                "action": books.action,
                "quantity": books.quantity,
                "order_type": books.order_type,
                "limit_price": books.limit_price,
                "state": "PLACED",
            },
            NOW,
        )


def deliver(engine: Engine, calls: list[LedgerCall]) -> None:
    for kind, payload in calls:
        outcome = process_callback(kind, payload, engine=engine, redis_client=None, now=NOW)
        assert outcome["outcome"] != "rejected", (kind, payload, outcome)


def _rows(engine: Engine, query: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query).all()]


ORDER_COLUMNS = (
    "client_order_id",
    "client_id",
    "ib_order_id",
    "perm_id",
    "strategy",
    "con_id",
    "symbol",
    "action",
    "quantity",
    "order_type",
    "limit_price",
    "state",
    "filled_qty",
    "avg_fill_price",
    "ib_filled_qty",
    "last_ib_status",
    "reject_code",
    "reject_reason",
)
FILL_COLUMNS = (
    "execution_id",
    "superseded_by",
    "order_ref",
    "ib_order_id",
    "client_id",
    "perm_id",
    "con_id",
    "strategy",
    "side",
    "shares",
    "price",
    "cum_qty",
    "avg_price",
    "exchange",
    "account",
    "executed_at",
)


def dump(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """The books without surrogate ids, versions and write times."""
    o = execution_orders.c
    orders = _rows(engine, sa.select(*(o[c] for c in ORDER_COLUMNS)).order_by(o.client_order_id))
    f = fills.c
    fill_rows = _rows(
        engine,
        sa.select(*(f[c] for c in FILL_COLUMNS), o.client_order_id.label("order"))
        .join(execution_orders, execution_orders.c.id == f.order_id)
        .order_by(f.execution_id),
    )
    c = commissions.c
    commission_rows = _rows(
        engine,
        sa.select(c.execution_id, c.commission, c.currency, c.realized_pnl, c.estimated).order_by(
            c.execution_id
        ),
    )
    p = positions_current.c
    position_rows = _rows(
        engine,
        sa.select(
            p.con_id,
            p.strategy_id,
            p.symbol,
            p.account,
            p.quantity,
            p.avg_price,
            p.multiplier,
            p.realized_pl,
            p.unrealized_pl,
            p.commissions,
        ).order_by(p.con_id, p.strategy_id),
    )
    return {
        "orders": orders,
        "fills": fill_rows,
        "commissions": commission_rows,
        "positions": position_rows,
    }


def fresh(engine: Engine, rec: Recording, books: Books, world: str) -> None:
    wipe(engine)
    if world != "unknown":
        our_order(engine, rec, books, with_ib_id=world == "ours")


def assert_books(engine: Engine, rec: Recording, books: Books, world: str) -> None:
    state = dump(engine)
    assert len(state["orders"]) == 1, state["orders"]
    order = state["orders"][0]
    if world == "unknown":
        assert order["client_order_id"] != books.order_ref
    else:
        assert order["client_order_id"] == books.order_ref and order["strategy"] == STRATEGY
    strategy = UNATTRIBUTED_STRATEGY if world == "unknown" else STRATEGY
    assert order["ib_order_id"] == books.ib_order_id and order["client_id"] == rec.client_id
    assert order["state"] == FINAL_STATE[rec.name.split(".", 1)[0]]
    if order["state"] == "REJECTED":
        codes = {e.args["errorCode"] for e in rec.callbacks("error") if e.args["reqId"] > 0}
        assert order["reject_code"] in codes
    assert order["filled_qty"] == books.filled
    if books.executions:
        assert books.avg_price is not None and order["avg_fill_price"] is not None
        assert order["avg_fill_price"].quantize(AVG) == books.avg_price.quantize(AVG)
        # ... which is IB's own average too.
        assert books.ib_avg_price is not None
        assert abs(books.avg_price - books.ib_avg_price) < Decimal("1e-9")
    else:
        assert order["avg_fill_price"] is None
    # One fill per execId, each as executed, on this order.
    assert {f["execution_id"]: (f["shares"], f["price"]) for f in state["fills"]} == (
        books.executions
    )
    assert all(f["superseded_by"] is None for f in state["fills"])
    assert all(f["order"] == order["client_order_id"] for f in state["fills"])
    assert all(f["strategy"] == strategy for f in state["fills"])
    # IB's commission per execution, none of them our estimate.
    assert {c["execution_id"]: c["commission"] for c in state["commissions"]} == books.commissions
    assert set(books.commissions) == set(books.executions)
    assert not any(c["estimated"] for c in state["commissions"])
    positions = state["positions"]
    if books.executions:
        assert len(positions) == 1
        pos = positions[0]
        assert (pos["con_id"], pos["strategy_id"]) == (books.con_id, strategy)
        assert pos["quantity"] == books.signed_filled
        assert books.avg_price is not None and pos["avg_price"] is not None
        assert pos["avg_price"].quantize(AVG) == books.avg_price.quantize(AVG)
        assert pos["commissions"] == sum(books.commissions.values(), Decimal(0))
        assert pos["realized_pl"] == 0  # an opening trade
    else:
        assert all(p["quantity"] == 0 for p in positions)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(risk_events)).scalar() == 0


CASES = [
    pytest.param(name, world, id=f"{name}-{world}")
    for name in FIXTURES
    for world in WORLDS
    if not (world == "id_late" and name.split(".", 1)[0] == "reject")
]


@pytest.mark.parametrize(("name", "world"), CASES)
def test_recorded_session_books_and_any_delivery_order(
    engine: Engine, name: str, world: str
) -> None:
    rec = load(name)
    books = books_of(rec)
    data, _control = replay_wrapper(rec)
    calls = ledger_callbacks(rec, data)
    assert calls, "the recording gives the ledger nothing"

    fresh(engine, rec, books, world)
    deliver(engine, calls)
    assert_books(engine, rec, books, world)
    recorded = dump(engine)

    # The same callbacks again (task redelivery, a reconnect's resync): nothing changes.
    deliver(engine, calls)
    assert dump(engine) == recorded, "delivering the same callbacks again changed the books"

    orders = {"reversed": list(reversed(calls))}
    for seed in range(SHUFFLES):
        shuffled = list(calls)
        random.Random(seed).shuffle(shuffled)
        orders[f"shuffled (seed {seed})"] = shuffled
    for label, permuted in orders.items():
        fresh(engine, rec, books, world)
        deliver(engine, permuted)
        assert dump(engine) == recorded, f"{label} delivery gave other books"

    if world == "id_late":
        # Adopted: the same books as when our row knew its IB id from the start.
        fresh(engine, rec, books, "ours")
        deliver(engine, calls)
        assert dump(engine) == recorded, "the stand-in's adoption left other books"
