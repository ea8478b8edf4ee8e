"""The positions netting reads (`services/books/netting.py`): every non-flat position with its
contract's type, underlying symbol and multiplier (the contract cache's, else the position's)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.fills import ONE
from models.netting import HeldPosition
from store.schema import contracts, fills, positions_current


def held_positions(conn: Connection) -> list[HeldPosition]:
    """Non-flat positions; a contract the cache lacks takes its type from the position's fills
    (and is "unknown" when none says), its underlying from the position's symbol."""
    fill_types = dict(
        conn.execute(
            sa.select(fills.c.con_id, sa.func.max(fills.c.sec_type))
            .where(fills.c.con_id.is_not(None))
            .group_by(fills.c.con_id)
        ).all()
    )
    rows = conn.execute(
        sa.select(
            positions_current.c.con_id,
            positions_current.c.strategy_id,
            positions_current.c.symbol,
            positions_current.c.quantity,
            positions_current.c.multiplier,
            contracts.c.symbol.label("contract_symbol"),
            contracts.c.sec_type,
            contracts.c.multiplier.label("contract_multiplier"),
        )
        .select_from(
            positions_current.outerjoin(contracts, contracts.c.con_id == positions_current.c.con_id)
        )
        .where(positions_current.c.quantity != 0)
    ).all()
    return [
        HeldPosition(
            con_id=int(r.con_id),
            strategy=str(r.strategy_id),
            underlying=str(r.contract_symbol or r.symbol or f"con_id:{r.con_id}"),
            sec_type=str(r.sec_type or fill_types.get(r.con_id) or "unknown"),
            quantity=r.quantity,
            multiplier=r.contract_multiplier or r.multiplier or ONE,
        )
        for r in rows
    ]
