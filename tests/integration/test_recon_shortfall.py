"""Implementation shortfall on real stores (SQLite and PostgreSQL): ended intents get their
`execution_metrics` rows once, from the ledger's fills and commissions and the children's
reference prices; exits of a bracket are not part of the entry's cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.ledger import process_callback
from services.shortfall import compute_missing
from store import metrics
from store.db import write_transaction
from store.orders import create_order
from store.schema import execution_metrics, intents

T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
D = Decimal
CON = 756733


def _intent(engine: Engine, signal: str, status: str, side: str = "BUY", **extra: Any) -> int:
    with write_transaction(engine) as conn:
        key = conn.execute(
            intents.insert().values(
                signal_id=signal,
                strategy="Momentum_EQ",
                instrument="SPY",
                con_id=CON,
                side=side,
                quantity=D(100),
                urgency="Normal",
                status=status,
                received_at=T0,
                updated_at=T0,
                **extra,
            )
        ).inserted_primary_key
        assert key is not None
        return int(key[0])


def _child(
    engine: Engine, intent_id: int, coid: str, ib_id: int, reference: str | None, **extra: Any
) -> int:
    with write_transaction(engine) as conn:
        return create_order(
            conn,
            {
                "client_order_id": coid,
                "client_id": 1,
                "ib_order_id": ib_id,
                "intent_id": intent_id,
                "strategy": "Momentum_EQ",
                "con_id": CON,
                "symbol": "SPY",
                "sec_type": "STK",
                "action": "BUY",
                "quantity": D(60),
                "state": "PLACED",
                "details": {} if reference is None else {"reference_price": reference},
                **extra,
            },
            T0,
        )


def _fill(engine: Engine, n: int, coid: str, ib_id: int, shares: str, price: str, fee: str) -> None:
    exec_id = f"0000e0d5.{n:08x}.01.01"
    at = (T0 + timedelta(seconds=n)).isoformat()
    payload = {
        "exec_id": exec_id,
        "ib_order_id": ib_id,
        "client_id": 1,
        "perm_id": 7000 + n,
        "order_ref": coid,
        "con_id": CON,
        "symbol": "SPY",
        "sec_type": "STK",
        "side": "BOT",
        "shares": shares,
        "price": price,
        "time": at,
        "received_at": at,
    }
    process_callback("execution", payload, engine=engine, redis_client=None, now=T0)
    process_callback(
        "commission",
        {"exec_id": exec_id, "commission": fee, "currency": "USD", "received_at": at},
        engine=engine,
        redis_client=None,
        now=T0,
    )


def test_ended_intents_get_their_shortfall_once(engine: Engine) -> None:
    done = _intent(engine, "sig-done", "COMPLETED")
    entry = _child(engine, done, "C-1", 11, "100")
    _child(engine, done, "C-2", 12, "100")
    # The entry's exit (a bracket's profit target): its own child, not part of the entry's cost.
    _child(engine, done, "C-1-exit", 13, None, action="SELL", parent_order_id=entry)
    _fill(engine, 1, "C-1", 11, "60", "100.10", "0.30")
    _fill(engine, 2, "C-2", 12, "40", "100.20", "0.20")
    _fill(engine, 3, "C-1-exit", 13, "100", "105", "0.50")  # the bracket's exit: not the entry
    working = _intent(engine, "sig-working", "WORKING")
    _child(engine, working, "W-1", 21, "100")
    never = _intent(engine, "sig-never-priced", "CANCELLED")
    _child(engine, never, "N-1", 31, None)

    assert compute_missing(engine, lambda con_id: D("101"), T0) == 2
    assert compute_missing(engine, lambda con_id: D("101"), T0) == 0

    with engine.connect() as conn:
        top, *children = metrics.of_intent(conn, done)
        assert metrics.of_intent(conn, working) == []
        [skipped] = metrics.of_intent(conn, never)
    assert top.order_id is None
    assert (top.filled_qty, top.arrival_price, top.avg_fill_price) == (D(100), D(100), D("100.14"))
    assert top.implementation_shortfall_bps == D("14.5")
    assert top.slippage_bps == D("14") and top.fees == D("0.5")
    assert top.details["execution_cost"] == "14.000000"
    assert top.details["end_price_source"] == "mid"
    assert [(c.details["client_order_id"], c.slippage_bps) for c in children] == [
        ("C-1", D("10")),
        ("C-2", D("20")),
    ]
    assert skipped.implementation_shortfall_bps is None
    assert "no arrival price" in skipped.details["reason"]
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(execution_metrics)).scalar()
    assert total == 4
