"""Use case: what `epm intents` and `epm intent SIGNAL_ID` show (read only).

Each intent with its status (and why it ended), filled quantity and average price from its
children's fills (`models.intent_progress`), the template its plan runs and why, and for one
intent every child: state, IB order id, quantity, price, fills, hold reason. JSON-safe values
(Decimals as strings) so `--json` output is exact.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection, Engine, Row

from models.intent_progress import average_fill, filled_of
from services.orders.children import child_state
from store import intent_life
from store import orders as orders_repo


def _text(value: object) -> str | None:
    """Decimals without trailing zeros (the ledger stores averages at 10 places), never in
    exponent form."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _summary(conn: Connection, row: Row[Any]) -> dict[str, Any]:
    children = orders_repo.of_intent(conn, row.id)
    states = [child_state(c) for c in children]
    first = (children[0].details or {}) if children else {}
    return {
        "signal_id": row.signal_id,
        "intent_id": row.id,
        "strategy": row.strategy,
        "instrument": row.instrument,
        "side": row.side,
        "quantity": _text(row.quantity),
        "status": row.status,
        "reason": row.reject_reason,
        "message": row.reject_message,
        "filled": _text(filled_of(states)),
        "avg_price": _text(average_fill(states)),
        "template": first.get("template"),
        "why": first.get("why"),
        "children": len(children),
        "received_at": row.received_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def list_intents(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """The newest intents first, summarized."""
    with engine.connect() as conn:
        return [_summary(conn, row) for row in intent_life.recent(conn, limit)]


def describe_intent(engine: Engine, signal_id: str) -> dict[str, Any] | None:
    """One intent in full: its summary and every child, or None."""
    with engine.connect() as conn:
        row = intent_life.by_signal_id(conn, signal_id)
        if row is None:
            return None
        report = _summary(conn, row)
        report["payload"] = row.payload
        report["child_orders"] = [
            {
                "client_order_id": c.client_order_id,
                "ib_order_id": c.ib_order_id,
                "state": c.state,
                "action": c.action,
                "quantity": _text(c.quantity),
                "order_type": c.order_type,
                "limit_price": _text(c.limit_price),
                "tif": c.tif,
                "route": c.exchange,
                "due_at": None if c.due_at is None else c.due_at.isoformat(),
                "filled": _text(c.filled_qty),
                "avg_fill_price": _text(c.avg_fill_price),
                "reference_price": (c.details or {}).get("reference_price"),
                "held": (c.details or {}).get("held"),
                "last_ib_status": c.last_ib_status,
            }
            for c in orders_repo.of_intent(conn, row.id)
        ]
        return report
