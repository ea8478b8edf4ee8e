"""What one ledger write did, as the task returns it and the Redis mirror needs it."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.ledger_rules import ADOPTED
from store.orders import OrderRow, order_mirror


class OrderNotFoundError(LookupError):
    """An event of ours names an order the ledger does not have."""

    code = "ORDER_NOT_FOUND"


@dataclass(frozen=True)
class LedgerResult:
    """What one ledger write did; `order` is the mirror of the order row after it."""

    outcome: str
    applied: bool = False
    client_order_id: str | None = None
    state: str | None = None
    note: str | None = None
    order: dict[str, str] = field(default_factory=dict)
    # Stand-ins this order adopted: their rows are gone, so are their mirrors.
    retired: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "applied": self.applied,
            "client_order_id": self.client_order_id,
            "state": self.state,
            "note": self.note,
        }


def result_of(outcome: str, row: OrderRow, applied: bool, note: str | None) -> LedgerResult:
    """The result of a write that ended with the order as `row`."""
    adopted = (row.details or {}).get(ADOPTED)
    return LedgerResult(
        outcome=outcome,
        applied=applied,
        client_order_id=row.client_order_id,
        state=row.state,
        note=note,
        order=order_mirror(row),
        retired=tuple(adopted) if isinstance(adopted, list) else (),
    )


def duplicate(row: OrderRow, note: str = "callback already recorded") -> LedgerResult:
    """The result of a callback recorded before (nothing changed)."""
    return result_of("duplicate", row, applied=False, note=note)
