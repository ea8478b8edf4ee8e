"""Queries and writes of option settlement at expiry (`services/books/expiry.py`).

A settlement is booked like the ledger books an execution: an order row (`client_order_id` the
settlement key, state FILLED, `details.origin` "expiry") holding the synthetic fills, each with
a commission of 0 reported as final (not an estimate: IB charges nothing on expiry). The order
row's unique `client_order_id` is what makes a second run book nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.expiry import Settlement
from models.fills import ONE, ZERO, parse_exec_id
from models.orders import OrderState
from store import commissions as commissions_repo
from store import fills as fills_repo
from store.orders import create_order
from store.schema import contracts, execution_orders, positions_current


@dataclass(frozen=True, slots=True)
class OptionRow:
    """An open option position with its contract's terms (any of which may be unknown)."""

    con_id: int
    strategy: str
    symbol: str | None
    account: str | None
    quantity: Decimal
    multiplier: Decimal
    right: str | None
    strike: Decimal | None
    expiry: str | None
    underlying_con_id: int | None


def open_options(conn: Connection) -> list[OptionRow]:
    """Every non-flat position in a contract the cache describes as an option, with its
    underlying's conId (IB's underConId, else the cached stock of the same symbol)."""
    rows = conn.execute(
        sa.select(
            positions_current.c.con_id,
            positions_current.c.strategy_id,
            positions_current.c.account,
            positions_current.c.quantity,
            positions_current.c.multiplier.label("position_multiplier"),
            contracts.c.symbol,
            contracts.c.right,
            contracts.c.strike,
            contracts.c.expiry,
            contracts.c.multiplier.label("contract_multiplier"),
            contracts.c.details,
        )
        .select_from(
            positions_current.join(contracts, contracts.c.con_id == positions_current.c.con_id)
        )
        .where(contracts.c.sec_type.in_(["OPT", "FOP"]), positions_current.c.quantity != 0)
        .order_by(positions_current.c.con_id, positions_current.c.strategy_id)
    ).all()
    stocks = dict(
        conn.execute(
            sa.select(contracts.c.symbol, sa.func.min(contracts.c.con_id))
            .where(contracts.c.sec_type == "STK")
            .group_by(contracts.c.symbol)
        ).all()
    )
    out: list[OptionRow] = []
    for r in rows:
        details = r.details if isinstance(r.details, Mapping) else {}
        under = details.get("under_con_id")
        under_id = int(under) if isinstance(under, int) and under > 0 else stocks.get(r.symbol)
        multiplier = r.contract_multiplier or r.position_multiplier or ONE
        out.append(
            OptionRow(
                con_id=int(r.con_id),
                strategy=str(r.strategy_id),
                symbol=r.symbol,
                account=r.account,
                quantity=r.quantity,
                multiplier=Decimal(str(multiplier)),
                right=r.right,
                strike=None if r.strike is None else Decimal(str(r.strike)),
                expiry=r.expiry,
                underlying_con_id=None if under_id is None else int(under_id),
            )
        )
    return out


def position_quantity(conn: Connection, con_id: int, strategy: str) -> Decimal:
    """The position's quantity as it is now (0 when there is no row)."""
    found = conn.execute(
        sa.select(positions_current.c.quantity).where(
            positions_current.c.con_id == con_id, positions_current.c.strategy_id == strategy
        )
    ).first()
    return ZERO if found is None else Decimal(str(found.quantity))


def is_booked(conn: Connection, key: str) -> bool:
    """Whether a settlement with this key is booked already."""
    found = conn.execute(
        sa.select(execution_orders.c.id).where(execution_orders.c.client_order_id == key)
    ).first()
    return found is not None


def book(
    conn: Connection,
    settlement: Settlement,
    *,
    symbol: str | None,
    account: str | None,
    details: Mapping[str, Any],
    executed_at: datetime,
    now: datetime,
) -> None:
    """Write one settlement's order row, fills and zero commissions (positions not refreshed)."""
    option = settlement.fills[0]
    order_id = create_order(
        conn,
        {
            "client_order_id": settlement.key,
            "client_id": 0,
            "strategy": option.strategy,
            "con_id": option.con_id,
            "symbol": symbol,
            "sec_type": "OPT",
            "action": option.side.value,
            "quantity": option.shares,
            "order_type": settlement.kind.value,
            "account": account,
            "state": OrderState.FILLED.value,
            "filled_qty": option.shares,
            "avg_fill_price": option.price,
            "details": {"origin": "expiry", "kind": settlement.kind.value, **details},
        },
        now,
    )
    for fill in settlement.fills:
        key = parse_exec_id(fill.execution_id)
        fills_repo.insert_once(
            conn,
            {
                "execution_id": fill.execution_id,
                "exec_base": key.base,
                "exec_seq": key.seq,
                "order_id": order_id,
                "order_ref": settlement.key,
                "con_id": fill.con_id,
                "symbol": symbol,
                "sec_type": "OPT" if fill is option else "STK",
                "strategy": fill.strategy,
                "side": fill.side.value,
                "shares": fill.shares,
                "price": fill.price,
                "multiplier": fill.multiplier,
                "exchange": settlement.kind.value,
                "account": account,
                "executed_at": executed_at,
                "received_at": now,
            },
        )
        commissions_repo.put(
            conn,
            fill.execution_id,
            {
                "commission": ZERO,
                "currency": "USD",
                "realized_pnl": None,
                "estimated": False,
                "updated_at": now,
            },
            now,
        )
