"""Use case: keep pegged-mid children at the midpoint, modified in place (same IB order id).

For each working PEGGED_MID child (claimed with SKIP LOCKED): the snapshot → `models.planners
.reprice` (throttled; backs off at once when the spread widens; never on stale or halted data)
→ the new limit and the next modification `version` committed on the row → after commit the
modification is queued (`enqueue_modify`); the bridge sends each (IB order id, version) once, and
a modification that raced a fill is refused by the venue (104) without changing the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from models.child_orders import Action, Template
from models.market import CENT, MarketSnapshot
from models.planners import reprice
from services.audit import audit_order_command
from services.orders.venue import Venue
from store import contracts as contracts_repo
from store import orders as orders_repo
from store.db import write_transaction

MODIFY_VERSION = "modify_version"


@dataclass(frozen=True, slots=True)
class _Modify:
    ib_order_id: int
    version: int
    client_order_id: str
    contract: dict[str, Any]
    order: dict[str, Any]
    strategy: str | None


def reprice_pegged(engine: Engine, venue: Venue, now: datetime, *, limit: int = 200) -> list[str]:
    """Re-price the pegged children whose mid moved; the keys of those modified."""
    modifies: list[_Modify] = []
    with write_transaction(engine) as conn:
        for row in orders_repo.claim_working_children(conn, limit):
            details = dict(row.details or {})
            if details.get("template") != Template.PEGGED_MID.value or row.con_id is None:
                continue
            plan = details.get("plan") or {}
            tick = contracts_repo.min_tick(conn, row.con_id) or CENT
            snapshot = MarketSnapshot.from_fields(row.con_id, venue.market(row.con_id), tick)
            priced_at = details.get("priced_at")
            if snapshot is None or row.limit_price is None or not isinstance(priced_at, str):
                continue
            action = Action(row.action)
            wanted = reprice(
                action,
                row.limit_price,
                snapshot,
                now,
                datetime.fromisoformat(priced_at),
                offset_ticks=int(plan.get("offset_ticks", 0)),
            )
            if wanted is None:
                continue
            version = int(details.get(MODIFY_VERSION, 0)) + 1
            details.update({MODIFY_VERSION: version, "priced_at": now.isoformat()})
            orders_repo.update_columns(conn, row, {"limit_price": wanted, "details": details}, now)
            contract = dict(details.get("contract") or {})
            contract["con_id"] = row.con_id
            modifies.append(
                _Modify(
                    ib_order_id=int(row.ib_order_id),
                    version=version,
                    client_order_id=row.client_order_id,
                    contract=contract,
                    order={
                        "action": row.action,
                        "quantity": str(row.quantity),
                        "order_type": "LMT",
                        "lmt_price": str(wanted),
                        "tif": row.tif,
                    },
                    strategy=row.strategy,
                )
            )
        for m in modifies:  # audited last in the transaction: the chain's lock spans the commit
            details = {"ib_order_id": m.ib_order_id, "version": m.version, **m.order}
            audit_order_command(conn, now, "order_modify", m.client_order_id, details)
    for m in modifies:
        venue.modify(m.ib_order_id, m.version, m.client_order_id, m.contract, m.order, m.strategy)
    return [m.client_order_id for m in modifies]
