"""Recompute positions from their fills: the step every fill-moving write ends with.

A position is a function of the *set* of its effective fills and their commissions
(`models.fills.position_from_fills`), so recomputing it after any write, in any arrival order,
gives the same figures. Rows are locked in key order (`models.ledger_rules.positions_to_refresh`)
so two tasks never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.engine import Connection

from models.fills import position_from_fills
from models.ledger_rules import positions_to_refresh
from store import fills as fills_repo
from store import positions as positions_repo


def refresh_position(
    conn: Connection, con_id: int, strategy: str, cause: str, now: datetime
) -> None:
    """Recompute one position from its fills (and their commissions) and store it if changed."""
    current = positions_repo.lock(conn, con_id, strategy, now)
    state = position_from_fills(fills_repo.records_of_position(conn, con_id, strategy))
    if positions_repo.state_of(current) == state and current.version > 0:
        return
    positions_repo.save(
        conn,
        current,
        state,
        symbol=fills_repo.symbol_of(conn, con_id),
        account=fills_repo.account_of(conn, con_id, strategy),
        cause=cause,
        now=now,
    )


def refresh_positions(
    conn: Connection, keys: Iterable[tuple[int | None, str]], cause: str, now: datetime
) -> None:
    """Recompute every position in `keys` (those without a contract id are not positions)."""
    for con_id, strategy in positions_to_refresh(keys):
        refresh_position(conn, con_id, strategy, cause, now)
