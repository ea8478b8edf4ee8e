"""Recompute positions from their fills: the step every fill-moving write ends with.

A position is a function of the *set* of its effective fills and their commissions
(`models.fills.position_from_fills`), so recomputing it after any write, in any arrival order,
gives the same figures. Rows are locked in key order (`models.ledger_rules.positions_to_refresh`)
so two tasks never wait on each other in a cycle.

Inside `once_per_batch` (a batch of callbacks in one transaction) a refresh is only noted, and
each touched position is recomputed once, in key order, when the batch's writes are done: the
position is a function of the set of fills, so one recompute at the end equals one per write.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
        # Known once a fill carried them; looked up only while the row has none.
        symbol=current.symbol or fills_repo.symbol_of(conn, con_id),
        account=current.account or fills_repo.account_of(conn, con_id, strategy),
        cause=cause,
        now=now,
    )


# conn.info key of the positions a batch touched so far: {(con_id, strategy): cause}.
_PENDING = "epm.ledger.pending_positions"


def refresh_positions(
    conn: Connection, keys: Iterable[tuple[int | None, str]], cause: str, now: datetime
) -> None:
    """Recompute every position in `keys` (those without a contract id are not positions);
    inside `once_per_batch`, note them for the batch's one recompute instead."""
    pending: dict[tuple[int, str], str] | None = conn.info.get(_PENDING)
    for con_id, strategy in positions_to_refresh(keys):
        if pending is not None:
            pending[(con_id, strategy)] = cause
        else:
            refresh_position(conn, con_id, strategy, cause, now)


@contextmanager
def once_per_batch(conn: Connection, now: datetime) -> Iterator[None]:
    """Recompute each position the block touches once, after the block (if it raised nothing).

    The positions are locked last and in key order across the whole batch, as for one callback.
    """
    pending: dict[tuple[int, str], str] = {}
    conn.info[_PENDING] = pending
    try:
        yield
    finally:
        conn.info.pop(_PENDING, None)
    for con_id, strategy in positions_to_refresh(pending):
        refresh_position(conn, con_id, strategy, pending[(con_id, strategy)], now)
