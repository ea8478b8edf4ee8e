"""Repository of `strategy_states`: one row per scope (a strategy's name, or "global").

A scope without a row is ACTIVE at version 0. `save` writes a change only from the version it
was decided on (compare and set), so two writers deciding at once cannot both win: the loser
re-reads and decides again.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.strategy_state import Change, StateRecord, TradingState, initial
from store.dialect import upsert
from store.schema import strategy_states

__all__ = ["all_states", "get", "save"]


def _record(row: Any) -> StateRecord:
    return StateRecord(
        scope=row.scope,
        state=TradingState(row.state),
        reason=row.reason,
        actor=row.actor,
        changed_at=row.changed_at,
        version=int(row.version),
    )


def get(conn: Connection, scope: str) -> StateRecord:
    """The scope's state (ACTIVE, version 0, when it never changed)."""
    row = conn.execute(sa.select(strategy_states).where(strategy_states.c.scope == scope)).first()
    return initial(scope) if row is None else _record(row)


def all_states(conn: Connection) -> list[StateRecord]:
    """Every scope that ever changed, by scope."""
    rows = conn.execute(sa.select(strategy_states).order_by(strategy_states.c.scope))
    return [_record(r) for r in rows]


def save(conn: Connection, change: Change) -> bool:
    """Store `change.after` if the scope is still at `change.before.version`; whether it was."""
    after = change.after
    values = {
        "state": after.state.value,
        "reason": after.reason,
        "actor": after.actor,
        "changed_at": after.changed_at,
        "version": after.version,
    }
    if change.before.version == 0:
        result = conn.execute(
            upsert(conn, strategy_states)
            .values(scope=after.scope, **values)
            .on_conflict_do_nothing(index_elements=["scope"])
        )
    else:
        result = conn.execute(
            sa.update(strategy_states)
            .where(
                strategy_states.c.scope == after.scope,
                strategy_states.c.version == change.before.version,
            )
            .values(**values)
        )
    return bool(result.rowcount == 1)
