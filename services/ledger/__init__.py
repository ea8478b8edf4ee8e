"""The ledger write path: IB callbacks → fills, commissions, orders, order events, positions.

One module per use case (`record_execution`, `record_commission`, `record_order_status`,
`record_open_order`, `record_order_error`, `record_order_replaced`, `record_contract`,
`own_events`), each loading rows from the repositories in `store/`, asking `models/` (the FSM in
`models.orders`, fill math in `models.fills`, the ledger's rules in `models.ledger_rules`) what
follows, and saving it, inside the caller's write transaction. `callbacks.process_callback` is
the entry the Celery tasks call. See `docs/ledger.md` for the invariants:

- executions are idempotent on `fills.execution_id` (a correction supersedes, never adds);
- commissions on `commissions.execution_id` (before or after the fill; an estimate stands in);
- order status / open order / error callbacks on a hash of the callback
  (`order_events.dedupe_key`); IB's own repeats are recorded with `applied = false`;
- every figure (the order's cumulative, its FSM state, each position) is a function of the *set*
  of callbacks seen, so any arrival order gives the same ledger.

Locking (PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers): the order row first
(`FOR UPDATE`), then any stand-in it adopts, then position rows in key order, so two tasks never
wait on each other in a cycle (a rare cycle between two position refreshes of one task is a
deadlock PostgreSQL breaks, and the task retries). Reads of fills happen after the locks, so
under READ COMMITTED they see every fill committed by a task that held the lock before.
"""

from __future__ import annotations

from services.ledger.callbacks import WRITERS, mirror_order, process_callback
from services.ledger.own_events import apply_order_event
from services.ledger.record_commission import record_commission
from services.ledger.record_contract import record_contract
from services.ledger.record_execution import record_execution
from services.ledger.record_open_order import record_open_order
from services.ledger.record_order_error import record_order_error
from services.ledger.record_order_replaced import record_order_replaced
from services.ledger.record_order_status import record_order_status
from services.ledger.result import LedgerResult, OrderNotFoundError
from store.orders import StaleOrderError, create_order, find_order, load_order

__all__ = [
    "WRITERS",
    "LedgerResult",
    "OrderNotFoundError",
    "StaleOrderError",
    "apply_order_event",
    "create_order",
    "find_order",
    "load_order",
    "mirror_order",
    "process_callback",
    "record_commission",
    "record_contract",
    "record_execution",
    "record_open_order",
    "record_order_error",
    "record_order_replaced",
    "record_order_status",
]
