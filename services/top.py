"""Use case: one frame of `epm top`, the operator's live view: the ledger's side (working orders,
positions with their P&L, P&L by strategy, trading states) beside what the shell read from Redis
(bridge connections, lease, farms, halt flags). Read-only; every figure is the books' own text
(`services.books.views`), so `epm top` and `epm pnl` never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from services.books.views import GroupBy, money_text, pnl_view, positions_view, quantity_text
from store import strategy_states
from store.working_orders import working_orders


@dataclass(frozen=True, slots=True)
class Venue:
    """What the shell read of the bridge: session states, lease, heartbeat, farms, halts."""

    connections: Mapping[str, str]
    lease_holder: str | None
    lease_ttl_ms: int
    heartbeat: str | None
    farms: Mapping[str, str]
    halts: Mapping[str, str]


@dataclass(slots=True)
class Frame:
    at: datetime
    venue: Venue
    states: list[dict[str, str]] = field(default_factory=list)
    orders: list[dict[str, str]] = field(default_factory=list)
    orders_total: int = 0
    positions: list[dict[str, Any]] = field(default_factory=list)
    strategies: list[dict[str, Any]] = field(default_factory=list)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def load_frame(engine: Engine, venue: Venue, at: datetime, max_orders: int = 20) -> Frame:
    """The ledger's part of a frame, with `venue` as given."""
    frame = Frame(at=at, venue=venue)
    with engine.connect() as conn:
        orders, frame.orders_total = working_orders(conn, max_orders)
        frame.orders = [
            {
                "order": _text(o["client_order_id"]),
                "ib_id": _text(o["ib_order_id"]),
                "strategy": _text(o["strategy"]),
                "symbol": _text(o["symbol"] or o["con_id"]),
                "side": _text(o["action"]),
                "qty": _text(quantity_text(o["quantity"])),
                "filled": _text(quantity_text(o["filled_qty"])),
                "type": _text(o["order_type"]),
                "limit": _text(money_text(o["limit_price"])),
                "state": _text(o["state"]),
                "ib_status": _text(o["last_ib_status"]),
            }
            for o in orders
        ]
        frame.positions = [p for p in positions_view(conn) if p["quantity"] not in (None, "0")]
        frame.strategies = pnl_view(conn, GroupBy.STRATEGY)
        frame.states = [
            {
                "scope": s.scope,
                "state": str(s.state),
                "reason": s.reason or "",
                "actor": s.actor,
                "since": s.changed_at.isoformat() if s.changed_at else "",
            }
            for s in strategy_states.all_states(conn)
        ]
    return frame
