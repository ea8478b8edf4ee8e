"""How the orders path sees one child row: its progress view (`models.intent_progress`)."""

from __future__ import annotations

from decimal import Decimal

from models.intent_progress import ChildState
from models.orders import OrderState
from models.replace import REPLACES
from services.orders import combo
from store.orders import OrderRow


def child_state(row: OrderRow) -> ChildState:
    """The progress view of one child row."""
    details = row.details or {}
    reference = details.get("reference_price")
    return ChildState(
        state=OrderState(row.state),
        quantity=row.quantity,
        filled=row.filled_qty,
        sent=row.ib_order_id is not None,
        avg_price=row.avg_fill_price,
        reference=None if reference is None else Decimal(str(reference)),
        key=row.client_order_id,
        # A replacement stands in for its old child; bracket exits and hedges are extra.
        exit=row.parent_order_id is not None and row.parent_link != REPLACES,
        ratio=int(details["ratio"]) if combo.role_of(row) == "leg" else None,
    )
