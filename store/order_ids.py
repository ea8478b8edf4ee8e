"""The ledger's highest IB order id per client id: the floor for re-seeding `ib:order:last_id`.

Every id epm placed under is in the ledger before its placement is queued (`execution_orders`),
and every id IB reported a fill for is on the fill (`fills.ib_order_id`), so when Redis loses the
counter no id at or below this floor may be handed out again (`client_api.allocate_order_id`'s
`floor`, `epm ledger reseed-order-ids`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.schema import execution_orders, fills


def highest_ib_order_id(conn: Connection, client_id: int) -> int:
    """max(ib_order_id) over `client_id`'s orders and fills; 0 when it has none."""
    orders_max = sa.select(sa.func.max(execution_orders.c.ib_order_id)).where(
        execution_orders.c.client_id == client_id
    )
    fills_max = sa.select(sa.func.max(fills.c.ib_order_id)).where(fills.c.client_id == client_id)
    found = [conn.execute(query).scalar_one_or_none() for query in (orders_max, fills_max)]
    return max((int(v) for v in found if v is not None), default=0)
