"""Use case: implementation shortfall of ended intents into `execution_metrics` (§7.4).

Beat (recon queue) finds ended intents (COMPLETED, EXPIRED, CANCELLED) without an intent-level
metrics row; for each, in one write transaction: lock the intent (PostgreSQL `FOR UPDATE`,
SQLite's writer lock) and check again → load its entry children (not bracket exits) and their
fills in effect with commissions → `models.shortfall.shortfall` → one intent row (`order_id`
NULL: implementation shortfall bps, slippage bps vs arrival, fees, the decomposition in
`details`) and one row per child (its slippage bps against its reference). The intent row is
what makes it idempotent: a second run, or a second worker, finds it and does nothing. An intent
whose children were never priced gets an intent row with no figures and the reason, so it is
not looked at again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.engine import Engine

from epm.logging import get_logger
from epm.metrics import hooks as metric_hooks
from models.intent import Side
from models.shortfall import ONE, ZERO, ChildFill, ShortfallError, shortfall
from store import metrics
from store.db import write_transaction

log = get_logger(__name__)

# The live price of a conId when the metrics are computed (the mid of `md:{conid}`), or None.
Marks = Callable[[int], Decimal | None]


def _decimal(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _buy(side: str | None) -> bool | None:
    try:
        return Side(side or "").wire_action.value == "BUY"
    except ValueError:
        return None


def _compute_one(conn: Any, intent_id: int, marks: Marks, now: datetime) -> bool:
    """Metrics rows for one intent; False when another run already wrote them."""
    intent = metrics.lock_intent(conn, intent_id)
    if intent is None:
        return False
    base = {
        "intent_id": intent.id,
        "strategy": intent.strategy,
        "con_id": intent.con_id,
        "side": intent.side,
        "target_price": intent.target_price,
        "computed_at": now,
    }
    buy = _buy(intent.side)
    wire = None if buy is None else ("BUY" if buy else "SELL")
    children = [c for c in metrics.entry_children(conn, intent.id) if c.action in (wire, None)]
    fills = metrics.effective_fills_of(conn, [c.id for c in children])
    by_order: dict[int, list[metrics.FillRow]] = {}
    for f in fills:
        by_order.setdefault(f.order_id, []).append(f)
    child_fills = []
    for child in children:
        own = by_order.get(child.id, [])
        filled = sum((f.shares for f in own), ZERO)
        notional = sum((f.shares * f.price for f in own), ZERO)
        child_fills.append(
            ChildFill(
                key=child.client_order_id,
                order_id=child.id,
                filled=filled,
                avg_price=notional / filled if filled > 0 else None,
                reference=_decimal(child.details.get("reference_price")),
                fees=sum((f.commission or ZERO for f in own), ZERO),
            )
        )
    arrival = next((c.reference for c in child_fills if c.reference is not None), None)
    multiplier = next((f.multiplier for f in fills if f.multiplier), ONE)
    con_id = intent.con_id or next((c.con_id for c in children if c.con_id), None)
    end = marks(con_id) if con_id else None
    end_source = "mid"
    if end is None and fills:
        end, end_source = fills[-1].price, "last_fill"
    try:
        if buy is None:
            raise ShortfallError(f"intent side {intent.side!r} has no direction")
        result = shortfall(
            buy=buy,
            target_qty=intent.quantity or ZERO,
            arrival_price=arrival,
            target_price=intent.target_price,
            end_price=end,
            children=child_fills,
            multiplier=multiplier,
        )
    except ShortfallError as e:
        metrics.insert_rows(
            conn, [{**base, "details": {"status": intent.status, "reason": str(e)}}]
        )
        log.info("shortfall.skipped", intent_id=intent.id, reason=str(e))
        return True
    rows: list[dict[str, Any]] = [
        {
            **base,
            "filled_qty": result.filled_qty,
            "arrival_price": result.arrival_price,
            "avg_fill_price": result.avg_fill_price,
            "implementation_shortfall_bps": result.total_bps,
            "slippage_bps": result.slippage_bps,
            "fees": result.fees,
            "details": {
                **result.as_details(),
                "status": intent.status,
                "signal_id": intent.signal_id,
                "end_price_source": end_source if end is not None else "arrival",
                "multiplier": str(multiplier),
            },
        }
    ]
    rows.extend(
        {
            **base,
            "order_id": c.order_id,
            "filled_qty": c.filled,
            "arrival_price": c.reference,
            "avg_fill_price": c.avg_price,
            "slippage_bps": c.slippage_bps,
            "fees": c.fees,
            "details": {"client_order_id": c.key},
        }
        for c in result.children
    )
    metrics.insert_rows(conn, rows)
    metric_hooks.slippage_written(conn, intent.strategy, result.slippage_bps)
    log.info(
        "shortfall.computed",
        intent_id=intent.id,
        bps=str(result.total_bps),
        children=len(result.children),
    )
    return True


def compute_missing(engine: Engine, marks: Marks, now: datetime, limit: int = 200) -> int:
    """Metrics for up to `limit` ended intents that lack them; how many were written."""
    with engine.connect() as conn:
        pending = metrics.ended_without_metrics(conn, limit)
    written = 0
    for intent_id in pending:
        with write_transaction(engine) as conn:
            written += _compute_one(conn, intent_id, marks, now)
    return written
