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
        found[int(row.con_id)] = found.get(int(row.con_id), Decimal(0)) + Decimal(str(row.quantity))
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


def shortfall_rows(engine: sa.engine.Engine, run: str, after: int) -> list[dict[str, Any]]:
    from epm.demo.view import RUN_INTENTS

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT i.signal_id, m.strategy, m.filled_qty, m.arrival_price,"
                " m.avg_fill_price, m.implementation_shortfall_bps, m.fees"
                " FROM execution_metrics m JOIN intents i ON i.id = m.intent_id"
                f" WHERE m.order_id IS NULL AND {RUN_INTENTS} ORDER BY i.id"
            ),
            {"run": f"demo-{run}-%", "after": after},
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
            "positions": len(book_positions(engine)),
        }  # fmt: skip


def wall_now() -> datetime:
    return datetime.now(UTC)


def script_checks(
    engine: sa.engine.Engine, run: str, after: int, events: list[str], audit_after: int
) -> list[tuple[str, bool, str]]:
    """Whether each scripted behaviour showed in the ledger or the event log: (what, seen, detail).

    Informative: the verdict is the reconciliation. A behaviour that depends on the market path
    (a leg resting past the kill switch, say) can miss a run without anything being wrong."""

    def one(sql: str, **params: object) -> Any:
        with engine.connect() as conn:
            values = {"run": f"demo-{run}-%", "after": after, **params}
            return conn.execute(sa.text(sql), values).first()

    def intent(name: str) -> Any:
        return one("SELECT id, status, reject_reason FROM intents WHERE signal_id = :s",
                   s=f"demo-{run}-{name}")  # fmt: skip

    @dataclass(frozen=True)
    class Child:
        key: str
        sec_type: str | None
        order_type: str | None
        state: str
        quantity: Decimal | None
        filled_qty: Decimal
        parent_order_id: int | None
        fills: int

    def children(name: str) -> list[Child]:
        row = intent(name)
        if row is None:
            return []
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT o.client_order_id AS key, o.sec_type, o.order_type, o.state,"
                    " o.quantity, o.filled_qty, o.parent_order_id,"
                    " (SELECT COUNT(*) FROM fills f WHERE f.order_id = o.id) AS fills"
                    " FROM execution_orders o WHERE o.intent_id = :i ORDER BY o.id"
                ),
                {"i": row.id},
            ).all()
        # Plain SQL: SQLite hands decimals back as text, PostgreSQL as Decimal.
        return [
            Child(
                str(r.key), r.sec_type, r.order_type, str(r.state),
                None if r.quantity is None else Decimal(str(r.quantity)),
                Decimal(str(r.filled_qty)), r.parent_order_id, int(r.fills),
            )
            for r in rows
        ]  # fmt: skip

    found: list[tuple[str, bool, str]] = []

    def add(what: str, seen: bool, detail: object = "") -> None:
        found.append((what, seen, str(detail)))

    scalp = children("scalp")
    add("0DTE_Scalp sweep filled", any(c.filled_qty > 0 for c in scalp),
        f"{sum(c.filled_qty for c in scalp)} contracts")  # fmt: skip
    twap = [c for c in children("twap") if c.fills]
    add("Passive TWAP traded in slices", len(twap) >= 3, f"{len(twap)} slices filled")
    exits = [c for c in children("bracket") if c.parent_order_id is not None]
    kinds = sorted(str(c.order_type) for c in exits)
    add("Momentum_EQ bracket with trailing stop", "TRAIL" in kinds, ", ".join(kinds))
    roll = children("roll")
    bag = [c for c in roll if c.sec_type == "BAG"]
    bag_state = bag[0].state if bag else "no BAG"
    add("Spread_Roll combo refused at the venue", bag_state == "REJECTED", bag_state)
    legs = [c for c in roll if "-leg-" in str(c.key) and c.fills]
    add("Spread_Roll legged fallback traded", len(legs) >= 2, f"{len(legs)} legs filled")
    partial = [
        c
        for c in children("hedge") + children("twap")
        if (c.quantity and 0 < c.filled_qty < c.quantity) or c.fills > 1
    ]
    add("Gamma_Rebalance partial fills", bool(partial), f"{len(partial)} children")
    chase = intent("chase")
    why = chase.reject_reason if chase is not None else "no intent"
    add("slippage abort", why == "MAX_SLIPPAGE_EXCEEDED", why)
    halted = any("halted" in e for e in events) and any("trading again" in e for e in events)
    add("halt and resume (tick 49)", halted)
    dropped = any("→ DISCONNECTED" in e for e in events)
    add("disconnect and recovery", dropped and any("DISCONNECTED → READY" in e for e in events))
    audit = one(
        "SELECT COUNT(*) AS n FROM audit_log WHERE action IN ('kill_switch', 'resume')"
        " AND id > :audit_after",
        audit_after=audit_after,
    )
    entries = int(audit.n) if audit is not None else 0
    add("kill switch and resume (audited)", entries >= 2, f"{entries} audit entries")
    flat = one(
        "SELECT status FROM intents WHERE signal_id LIKE 'flat-%' AND id > :after ORDER BY id DESC"
    )
    flat_status = flat.status if flat is not None else "no flat intent"
    add("0DTE flat at 15:55 (beat)", flat_status == "COMPLETED", flat_status)
    return found
