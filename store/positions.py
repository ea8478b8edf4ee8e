"""Repository of `positions_current` (one row per (con_id, strategy)) and `positions_history`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from models.fills import ONE, ZERO, PositionState
from store.dialect import upsert
from store.schema import positions_current, positions_history


def lock(conn: Connection, con_id: int, strategy: str, now: datetime) -> Row[Any]:
    """Lock a position row, creating it flat (version 0) if it does not exist."""
    conn.execute(
        upsert(conn, positions_current)
        .values(
            con_id=con_id,
            strategy_id=strategy,
            quantity=ZERO,
            realized_pl=ZERO,
            commissions=ZERO,
            updated_at=now,
            version=0,
        )
        .on_conflict_do_nothing(index_elements=["con_id", "strategy_id"])
    )
    return conn.execute(
        sa.select(positions_current)
        .where(positions_current.c.con_id == con_id, positions_current.c.strategy_id == strategy)
        .with_for_update()
    ).one()


def state_of(row: Row[Any]) -> PositionState:
    """The position math's view of a row."""
    return PositionState(
        row.quantity,
        row.avg_price,
        row.realized_pl,
        row.commissions,
        row.multiplier if row.multiplier is not None else ONE,
    )


def save(
    conn: Connection,
    row: Row[Any],
    state: PositionState,
    *,
    symbol: str | None,
    account: str | None,
    cause: str,
    now: datetime,
) -> None:
    """Store a position's new figures and append them to its history."""
    key = {"con_id": row.con_id, "strategy_id": row.strategy_id}
    conn.execute(
        positions_current.update()
        .where(
            positions_current.c.con_id == row.con_id,
            positions_current.c.strategy_id == row.strategy_id,
        )
        .values(
            quantity=state.quantity,
            avg_price=state.avg_price,
            multiplier=state.multiplier,
            realized_pl=state.realized_pl,
            commissions=state.commissions,
            symbol=symbol,
            account=account,
            updated_at=now,
            version=row.version + 1,
        )
    )
    conn.execute(
        positions_history.insert().values(
            **key,
            quantity=state.quantity,
            avg_price=state.avg_price,
            realized_pl=state.realized_pl,
            commissions=state.commissions,
            cause=cause,
            recorded_at=now,
        )
    )


def open_of(conn: Connection, strategy: str) -> list[Row[Any]]:
    """The strategy's positions that are not flat."""
    return list(
        conn.execute(
            sa.select(positions_current).where(
                positions_current.c.strategy_id == strategy, positions_current.c.quantity != 0
            )
        ).all()
    )
