"""The demo's end: reconciliation against the venue, an outside client's look, and the tables.

The verdict is the venue's word, asked two ways: epm's own reconciliation (`tasks.recon`
through the bridge: the venue's executions against the ledger's fills, its positions against
the books) and a separate IB client (client id 9, as a desk's TWS would be) reading the
account's positions straight from the gateway. The demo passes only when both agree with the
books; every difference is printed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

OUTSIDE_CLIENT_ID = 9


@dataclass
class Verdict:
    """What reconciliation found; `ok` only when nothing differs."""

    recon: list[dict[str, Any]] = field(default_factory=list)
    venue_positions: dict[int, Decimal] = field(default_factory=dict)
    book_positions: dict[int, Decimal] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def book_positions(engine: sa.engine.Engine) -> dict[int, Decimal]:
    """The ledger's quantity per conId, summed over strategies, flat ones left out."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT con_id, quantity FROM positions_current WHERE quantity IS NOT NULL")
        ).all()
    found: dict[int, Decimal] = {}
    for row in rows:
        found[int(row.con_id)] = found.get(int(row.con_id), Decimal(0)) + Decimal(row.quantity)
    return {k: v for k, v in found.items() if v != 0}


def venue_positions(
    port: int, *, client_id: int = OUTSIDE_CLIENT_ID, timeout_s: float = 20.0
) -> dict[int, Decimal]:
    """The account's positions per conId as an outside ibapi client sees them (flat left out)."""
    from ibapi.client import EClient
    from ibapi.wrapper import EWrapper

    class Reader(EWrapper, EClient):  # type: ignore[misc]
        def __init__(self) -> None:
            EWrapper.__init__(self)
            EClient.__init__(self, self)
            self.ready = threading.Event()
            self.done = threading.Event()
            self.found: dict[int, Decimal] = {}

        def nextValidId(self, orderId: int) -> None:
            self.ready.set()

        def position(self, account: str, contract: Any, position: Any, avgCost: float) -> None:
            con_id = int(contract.conId)
            self.found[con_id] = self.found.get(con_id, Decimal(0)) + Decimal(str(position))

        def positionEnd(self) -> None:
            self.done.set()

        def error(self, *args: Any) -> None:  # farm notices and the like; the answer decides
            pass

    app = Reader()
    app.connect("127.0.0.1", port, client_id)
    thread = threading.Thread(target=app.run, name="demo-outside-client", daemon=True)
    thread.start()
    try:
        if not app.ready.wait(timeout_s):
            raise TimeoutError(f"client {client_id} got no nextValidId from 127.0.0.1:{port}")
        app.reqPositions()
        if not app.done.wait(timeout_s):
            raise TimeoutError(f"client {client_id} got no positionEnd")
        return {k: v for k, v in app.found.items() if v != 0}
    finally:
        app.disconnect()
        thread.join(5)


def reconcile(engine: sa.engine.Engine, port: int, *, timeout_s: float = 30.0) -> Verdict:
    """epm's reconciliation runs (written to `recon_runs`) and the outside client's check."""
    from tasks.app import Stores
    from tasks.recon import run_executions, run_positions

    verdict = Verdict()
    stores = Stores.open()
    executions = run_executions(stores, timeout_s).as_dict()
    positions = run_positions(Stores.open(), "on_demand", timeout_s).as_dict()
    verdict.recon = [executions, positions]
    for result in verdict.recon:
        bad = [d for d in result["differences"] if d.get("type") not in ("recovered",)]
        if result["status"] not in ("ok", "warning") or bad:
            verdict.problems.append(
                f"recon {result['kind']}: {result['status']}, "
                f"{len(bad)} difference(s), run {result['run_id']}"
            )
            verdict.problems.extend(f"  {d}" for d in bad[:50])
    verdict.book_positions = book_positions(engine)
    try:
        verdict.venue_positions = venue_positions(port)
    except (OSError, TimeoutError) as e:
        verdict.problems.append(f"outside client {OUTSIDE_CLIENT_ID}: {e}")
        return verdict
    for con_id in sorted(set(verdict.book_positions) | set(verdict.venue_positions)):
        venue = verdict.venue_positions.get(con_id, Decimal(0))
        books = verdict.book_positions.get(con_id, Decimal(0))
        if venue != books:
            verdict.problems.append(
                f"con_id {con_id}: venue (client {OUTSIDE_CLIENT_ID}) {venue}, books {books}"
            )
    return verdict


def shortfall(engine: sa.engine.Engine, redis_client: Any, now: datetime) -> int:
    """Write the execution metrics of ended intents beat has not got to yet; → rows written."""
    from models.market import MarketSnapshot
    from services.shortfall import compute_missing

    def mark(con_id: int) -> Decimal | None:
        fields = redis_client.hgetall(f"md:{con_id}")
        snap = MarketSnapshot.from_fields(con_id, fields) if fields else None
        if snap is None or snap.stale(now, timedelta(seconds=60)):
            return None
        return snap.mid or snap.last

    return compute_missing(engine, mark, now)


def shortfall_rows(engine: sa.engine.Engine, run: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT i.signal_id, m.strategy, m.filled_qty, m.arrival_price,"
                " m.avg_fill_price, m.implementation_shortfall_bps, m.fees"
                " FROM execution_metrics m JOIN intents i ON i.id = m.intent_id"
                " WHERE m.order_id IS NULL AND (i.signal_id LIKE :run OR i.signal_id LIKE 'flat-%')"
                " ORDER BY i.id"
            ),
            {"run": f"demo-{run}-%"},
        ).all()
    return [dict(r._mapping) for r in rows]


def counts(engine: sa.engine.Engine) -> dict[str, int]:
    """Orders sent, fills in effect, open positions: what the summary and its test compare."""
    with engine.connect() as conn:
        one = conn.execute
        return {
            "orders": int(one(sa.text(
                "SELECT COUNT(*) FROM execution_orders WHERE ib_order_id IS NOT NULL"
            )).scalar_one()),
            "fills": int(one(sa.text(
                "SELECT COUNT(*) FROM fills WHERE superseded_by IS NULL"
            )).scalar_one()),
            "positions": int(one(sa.text(
                "SELECT COUNT(*) FROM positions_current WHERE quantity != 0"
            )).scalar_one()),
        }  # fmt: skip


def wall_now() -> datetime:
    return datetime.now(UTC)
