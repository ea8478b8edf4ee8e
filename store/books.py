"""Queries of the books (P&L, marks, attribution, extracts): reads across the ledger's tables and
the writes the books own.

The ledger owns a position's quantity, average cost, realized P&L, commissions and `version`
(`store/positions.py`); the books write only `unrealized_pl`, `mark_price`, `marked_at`,
`state` and `risk_tags`, and only while the row still has the version their figures were
computed from (`save_marks`), without bumping it: a fill committed meanwhile wins, and the next
mark tick (5 s) recomputes. Money is never summed here (SQLite keeps it as text): every total
is made in Python (`models.pnl.aggregate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from models.fills import ONE, FillRecord, Side
from models.orders import TERMINAL_STATES
from store.dialect import upsert
from store.schema import (
    commissions,
    contracts,
    execution_orders,
    fills,
    financing_charges,
    intents,
    pnl_snapshots,
    positions_current,
    risk_events,
)


@dataclass(frozen=True, slots=True)
class PositionRow:
    """A `positions_current` row with what its contract says (either may be unknown)."""

    con_id: int
    strategy: str
    symbol: str | None
    account: str | None
    quantity: Decimal
    avg_price: Decimal | None
    multiplier: Decimal
    realized_pl: Decimal
    commissions: Decimal
    unrealized_pl: Decimal | None
    mark_price: Decimal | None
    marked_at: datetime | None
    state: str | None
    risk_tags: list[str] | None
    version: int
    sec_type: str | None
    right: str | None
    underlying: str | None


def positions(conn: Connection) -> list[PositionRow]:
    """Every position the ledger has (flat ones too: their realized P&L is the day's), with
    the contract's type and right from `contracts`, else from the position's fills."""
    fill_types = dict(
        conn.execute(
            sa.select(fills.c.con_id, sa.func.max(fills.c.sec_type))
            .where(fills.c.con_id.is_not(None))
            .group_by(fills.c.con_id)
        ).all()
    )
    rows = conn.execute(
        sa.select(
            positions_current,
            contracts.c.sec_type.label("contract_sec_type"),
            contracts.c.right.label("contract_right"),
            contracts.c.symbol.label("contract_symbol"),
        )
        .select_from(
            positions_current.outerjoin(contracts, contracts.c.con_id == positions_current.c.con_id)
        )
        .order_by(positions_current.c.strategy_id, positions_current.c.con_id)
    ).all()
    return [_position(r, fill_types.get(r.con_id)) for r in rows]


def _position(r: Row[Any], fill_sec_type: str | None) -> PositionRow:
    tags = r.risk_tags
    return PositionRow(
        con_id=int(r.con_id),
        strategy=str(r.strategy_id),
        symbol=r.symbol or r.contract_symbol,
        account=r.account,
        quantity=r.quantity,
        avg_price=r.avg_price,
        multiplier=r.multiplier if r.multiplier is not None else ONE,
        realized_pl=r.realized_pl,
        commissions=r.commissions,
        unrealized_pl=r.unrealized_pl,
        mark_price=r.mark_price,
        marked_at=r.marked_at,
        state=r.state,
        risk_tags=[str(t) for t in tags] if isinstance(tags, list) else None,
        version=int(r.version),
        sec_type=r.contract_sec_type or fill_sec_type,
        right=r.contract_right,
        underlying=r.contract_symbol or r.symbol,
    )


@dataclass(frozen=True, slots=True)
class LiveOrder:
    """A not yet terminal order of a strategy in a contract, with what is left of it."""

    con_id: int
    strategy: str
    buy: bool
    remaining: Decimal


def live_orders(conn: Connection) -> list[LiveOrder]:
    """Orders still working or scheduled (any state but the terminal ones and VALIDATED, which
    no venue has seen yet and which may never be sent)."""
    excluded = sorted({s.value for s in TERMINAL_STATES} | {"VALIDATED"})
    rows = conn.execute(
        sa.select(
            execution_orders.c.con_id,
            execution_orders.c.strategy,
            execution_orders.c.action,
            execution_orders.c.quantity,
            execution_orders.c.filled_qty,
        ).where(
            execution_orders.c.state.not_in(excluded),
            execution_orders.c.con_id.is_not(None),
            execution_orders.c.action.is_not(None),
        )
    ).all()
    out: list[LiveOrder] = []
    for r in rows:
        remaining = (r.quantity or Decimal(0)) - (r.filled_qty or Decimal(0))
        out.append(
            LiveOrder(int(r.con_id), r.strategy or "UNATTRIBUTED", r.action == "BUY", remaining)
        )
    return out


def financing(conn: Connection) -> list[tuple[int | None, str | None, Decimal]]:
    """Every financing charge's (con_id, strategy, amount); a cost is positive."""
    rows = conn.execute(
        sa.select(
            financing_charges.c.con_id, financing_charges.c.strategy_id, financing_charges.c.amount
        )
    ).all()
    return [(r.con_id, r.strategy_id, r.amount) for r in rows]


def save_marks(
    conn: Connection, con_id: int, strategy: str, version: int, values: Mapping[str, object]
) -> bool:
    """Write the books' columns of one position if its version is still `version`; False when
    a ledger write came in between (the figures were computed on older quantities)."""
    allowed = {"unrealized_pl", "mark_price", "marked_at", "state", "risk_tags"}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"the books do not write {sorted(unknown)} of positions_current")
    done = conn.execute(
        positions_current.update()
        .where(
            positions_current.c.con_id == con_id,
            positions_current.c.strategy_id == strategy,
            positions_current.c.version == version,
        )
        .values(**values)
    )
    return bool(done.rowcount)


def append_snapshots(conn: Connection, rows: Sequence[Mapping[str, object]]) -> None:
    """Append P&L snapshots; a repeated (scope, scope_key, ts) is the same snapshot, kept once."""
    if not rows:
        return
    conn.execute(
        upsert(conn, pnl_snapshots)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["scope", "scope_key", "ts"])
    )


@dataclass(frozen=True, slots=True)
class SignalFillRow:
    """A fill with its position key and the signal of the intent its order served."""

    con_id: int
    strategy: str
    signal_id: str | None
    record: FillRecord


def signal_fills(
    conn: Connection, keys: Iterable[tuple[int, str]] | None = None
) -> list[SignalFillRow]:
    """Every fill (all versions: the core picks the effective ones) with its commission and
    signal id (fill → order → intent); only those of the position `keys` when given."""
    query = (
        sa.select(
            fills.c.execution_id,
            fills.c.con_id,
            fills.c.strategy,
            fills.c.side,
            fills.c.shares,
            fills.c.price,
            fills.c.executed_at,
            fills.c.multiplier,
            commissions.c.commission,
            intents.c.signal_id,
        )
        .select_from(
            fills.outerjoin(commissions, commissions.c.execution_id == fills.c.execution_id)
            .outerjoin(execution_orders, execution_orders.c.id == fills.c.order_id)
            .outerjoin(intents, intents.c.id == execution_orders.c.intent_id)
        )
        .where(fills.c.con_id.is_not(None))
    )
    wanted = set(keys) if keys is not None else None
    out: list[SignalFillRow] = []
    for r in conn.execute(query).all():
        key = (int(r.con_id), str(r.strategy))
        if wanted is not None and key not in wanted:
            continue
        out.append(
            SignalFillRow(
                key[0],
                key[1],
                r.signal_id,
                FillRecord(
                    execution_id=r.execution_id,
                    side=Side(r.side),
                    shares=r.shares,
                    price=r.price,
                    executed_at=r.executed_at,
                    multiplier=r.multiplier if r.multiplier is not None else ONE,
                    commission=r.commission,
                ),
            )
        )
    return out


def fills_between(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The fills executed in [start, end), with commission and signal id, oldest first."""
    rows = conn.execute(
        sa.select(
            fills.c.execution_id,
            fills.c.superseded_by,
            fills.c.executed_at,
            fills.c.con_id,
            fills.c.symbol,
            fills.c.sec_type,
            fills.c.strategy,
            intents.c.signal_id,
            fills.c.order_ref,
            fills.c.ib_order_id,
            fills.c.side,
            fills.c.shares,
            fills.c.price,
            fills.c.multiplier,
            commissions.c.commission,
            commissions.c.estimated.label("commission_estimated"),
            fills.c.exchange,
            fills.c.account,
        )
        .select_from(
            fills.outerjoin(commissions, commissions.c.execution_id == fills.c.execution_id)
            .outerjoin(execution_orders, execution_orders.c.id == fills.c.order_id)
            .outerjoin(intents, intents.c.id == execution_orders.c.intent_id)
        )
        .where(fills.c.executed_at >= start, fills.c.executed_at < end)
        .order_by(fills.c.executed_at, fills.c.execution_id)
    ).all()
    return [dict(r._mapping) for r in rows]


def orders_between(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The orders created or updated in [start, end), oldest first."""
    t = execution_orders
    rows = conn.execute(
        sa.select(
            t.c.client_order_id,
            t.c.ib_order_id,
            t.c.perm_id,
            t.c.strategy,
            intents.c.signal_id,
            t.c.con_id,
            t.c.symbol,
            t.c.sec_type,
            t.c.action,
            t.c.quantity,
            t.c.order_type,
            t.c.limit_price,
            t.c.tif,
            t.c.state,
            t.c.filled_qty,
            t.c.avg_fill_price,
            t.c.created_at,
            t.c.updated_at,
        )
        .select_from(t.outerjoin(intents, intents.c.id == t.c.intent_id))
        .where(
            sa.or_(
                sa.and_(t.c.created_at >= start, t.c.created_at < end),
                sa.and_(t.c.updated_at >= start, t.c.updated_at < end),
            )
        )
        .order_by(t.c.created_at, t.c.id)
    ).all()
    return [dict(r._mapping) for r in rows]


IB_MISMATCH_KIND = "pnl_ib_mismatch"


def open_ib_mismatches(conn: Connection) -> set[str]:
    """The contracts (scope_key = con_id) with an unresolved P&L difference against IB."""
    rows = conn.execute(
        sa.select(risk_events.c.scope_key).where(
            risk_events.c.kind == IB_MISMATCH_KIND, risk_events.c.resolved_at.is_(None)
        )
    ).all()
    return {str(r.scope_key) for r in rows}


def resolve_ib_mismatch(conn: Connection, con_id: int, now: datetime) -> None:
    """Mark the contract's open P&L differences against IB resolved (back within the limit)."""
    conn.execute(
        risk_events.update()
        .where(
            risk_events.c.kind == IB_MISMATCH_KIND,
            risk_events.c.scope_key == str(con_id),
            risk_events.c.resolved_at.is_(None),
        )
        .values(resolved_at=now)
    )
