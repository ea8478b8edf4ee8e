"""Ledger scenarios for the metrics and alert tests: intents, their children and fills written
through the ledger's own write path, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from services.ledger import process_callback
from store.db import write_transaction
from store.orders import create_order
from store.schema import intents

T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
SPY = 756733
AAPL = 265598
SYMBOLS = {SPY: "SPY", AAPL: "AAPL"}


def intent(
    engine: Engine,
    signal: str,
    *,
    status: str = "WORKING",
    urgency: str = "Normal",
    strategy: str = "Momentum_EQ",
    con_id: int = SPY,
    received_at: datetime = T0,
    **extra: Any,
) -> int:
    with write_transaction(engine) as conn:
        key = conn.execute(
            intents.insert().values(
                signal_id=signal,
                strategy=strategy,
                instrument=SYMBOLS[con_id],
                con_id=con_id,
                side="BUY",
                quantity=Decimal(100),
                urgency=urgency,
                status=status,
                received_at=received_at,
                updated_at=received_at,
                **extra,
            )
        ).inserted_primary_key
        assert key is not None
        return int(key[0])


def child(
    engine: Engine,
    intent_id: int,
    coid: str,
    ib_id: int,
    *,
    state: str = "PLACED",
    reference: str = "100.00",
    strategy: str = "Momentum_EQ",
    con_id: int = SPY,
) -> int:
    with write_transaction(engine) as conn:
        return create_order(
            conn,
            {
                "client_order_id": coid,
                "client_id": 1,
                "ib_order_id": ib_id,
                "intent_id": intent_id,
                "strategy": strategy,
                "con_id": con_id,
                "symbol": SYMBOLS[con_id],
                "sec_type": "STK",
                "action": "BUY",
                "quantity": Decimal(100),
                "state": state,
                "details": {"reference_price": reference},
            },
            T0,
        )


def fill(
    engine: Engine,
    n: int,
    coid: str,
    ib_id: int,
    shares: str,
    price: str,
    *,
    con_id: int = SPY,
    at: datetime = T0,
) -> None:
    exec_id = f"0000e0d5.{n:08x}.01.01"
    when = (at + timedelta(seconds=n)).isoformat()
    payload = {
        "exec_id": exec_id,
        "ib_order_id": ib_id,
        "client_id": 1,
        "perm_id": 7000 + n,
        "order_ref": coid,
        "con_id": con_id,
        "symbol": SYMBOLS[con_id],
        "sec_type": "STK",
        "side": "BOT",
        "shares": shares,
        "price": price,
        "time": when,
        "received_at": when,
    }
    process_callback("execution", payload, engine=engine, redis_client=None, now=at)
    process_callback(
        "commission",
        {"exec_id": exec_id, "commission": "1.00", "currency": "USD", "received_at": when},
        engine=engine,
        redis_client=None,
        now=at,
    )


class Venue:
    """IB's positions answer as the bridge hands it to reconciliation (IB itself is mocked)."""

    def __init__(self, positions: dict[int, str]) -> None:
        self._positions = positions

    def executions(self, since: datetime) -> list[dict[str, Any]]:
        return []

    def positions(self) -> list[dict[str, Any]]:
        return [
            {"con_id": c, "symbol": SYMBOLS[c], "position": q, "account": "DU1"}
            for c, q in self._positions.items()
        ]
