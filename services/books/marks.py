"""Use case: mark the books (beat, every 5 s): unrealized P&L, state and risk tags of every
position, published to Redis, snapshotted, and checked against IB's own P&L.

Load the positions, live orders and financing (one read) → for each position the core picks a
mark (`models.pnl.choose_mark`: a fresh mid or last from `md:{conid}`, else the last fresh mark
kept and tagged `stale_mark`), computes unrealized, state (`models.pnl.position_state`) and
tags → one write transaction: the books' own columns of each position only while its ledger
version is unchanged (`store.books.save_marks`; a fill committed meanwhile wins and the next
tick catches up), `pnl_snapshots` rows per open position and per strategy, a `risk_events` row
for a contract whose unrealized P&L differs from reqPnLSingle's by more than $10 (one open
event per contract; resolved when back within the limit) → after commit, the Redis hashes
`pl:position:{conid}` and `pl:strategy:{strategy}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis
from sqlalchemy.engine import Engine

from models.fills import ZERO, exact
from models.market import MarketSnapshot
from models.pnl import (
    Holding,
    Mark,
    PnlLine,
    WorkingOrder,
    aggregate,
    by_strategy,
    choose_mark,
    compare_with_ib,
    delta_sign,
    hedged_keys,
    line_for,
    position_state,
    risk_tags,
)
from services.books.views import financing_of, money_text, quantity_text
from store import books, risk_events
from store.db import write_transaction

POSITION_KEY = "pl:position:{con_id}"
STRATEGY_KEY = "pl:strategy:{strategy}"


@dataclass(slots=True)
class MarkResult:
    """What one tick did (the task's outcome)."""

    positions: int = 0
    marked: int = 0
    stale: int = 0
    unmarked: int = 0
    skipped_for_ledger: int = 0
    ib_compared: int = 0
    ib_flagged: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "positions": self.positions,
            "marked": self.marked,
            "stale": self.stale,
            "unmarked": self.unmarked,
            "skipped_for_ledger": self.skipped_for_ledger,
            "ib_compared": self.ib_compared,
            "ib_flagged": list(self.ib_flagged),
        }


def mark_books(
    engine: Engine,
    market: Callable[[int], MarketSnapshot | None],
    ib_unrealized: Mapping[int, Decimal],
    redis_client: redis.Redis | None,
    now: datetime,
) -> MarkResult:
    """One mark tick over every position (see the module docstring)."""
    result = MarkResult()
    with engine.connect() as conn:
        rows = books.positions(conn)
        working = books.live_orders(conn)
        financing = financing_of(conn)
        open_mismatches = books.open_ib_mismatches(conn)
    orders: dict[tuple[int, str], list[WorkingOrder]] = {}
    for o in working:
        orders.setdefault((o.con_id, o.strategy), []).append(WorkingOrder(o.buy, o.remaining))
    hedged = hedged_keys(
        Holding(r.con_id, r.strategy, r.underlying, delta_sign(r.quantity, r.sec_type, r.right))
        for r in rows
    )
    snapshots: dict[int, MarketSnapshot | None] = {}
    updates: list[tuple[books.PositionRow, dict[str, object]]] = []
    lines: list[PnlLine] = []
    fresh: list[tuple[int, Decimal | None]] = []
    marks: dict[tuple[int, str], Mark | None] = {}
    for r in rows:
        result.positions += 1
        if r.con_id not in snapshots:
            snapshots[r.con_id] = market(r.con_id)
        snapshot = snapshots[r.con_id]
        previous = (
            Mark(r.mark_price, r.marked_at)
            if r.mark_price is not None and r.marked_at is not None
            else None
        )
        mark = choose_mark(snapshot, previous, now)
        key = (r.con_id, r.strategy)
        marks[key] = mark
        line = line_for(
            con_id=r.con_id,
            strategy=r.strategy,
            symbol=r.symbol,
            quantity=r.quantity,
            avg_cost=r.avg_price,
            multiplier=r.multiplier,
            realized=r.realized_pl,
            fees=r.commissions,
            financing=financing.get(key, ZERO),
            mark=None if mark is None else mark.price,
        )
        lines.append(line)
        if r.quantity != ZERO:
            if mark is None:
                result.unmarked += 1
            elif mark.stale:
                result.stale += 1
            else:
                result.marked += 1
        fresh.append((r.con_id, line.unrealized if mark is not None and not mark.stale else None))
        values: dict[str, object] = {
            "unrealized_pl": line.unrealized,
            "mark_price": None if mark is None else mark.price,
            "marked_at": None if mark is None else mark.at,
            "state": position_state(r.quantity, orders.get(key, []), key in hedged).value,
            "risk_tags": risk_tags(
                r.quantity,
                r.sec_type,
                mark,
                key in hedged,
                snapshot is not None and snapshot.halted,
            ),
        }
        current = {
            "unrealized_pl": r.unrealized_pl,
            "mark_price": r.mark_price,
            "marked_at": r.marked_at,
            "state": r.state,
            "risk_tags": r.risk_tags,
        }
        if values != current:
            updates.append((r, values))
    comparisons = compare_with_ib(fresh, dict(ib_unrealized))
    result.ib_compared = len(comparisons)
    totals = aggregate(lines, by_strategy)
    with write_transaction(engine) as conn:
        for r, values in updates:
            if not books.save_marks(conn, r.con_id, r.strategy, r.version, values):
                result.skipped_for_ledger += 1
        books.append_snapshots(conn, _snapshot_rows(lines, totals, now))
        for c in comparisons:
            if c.flagged:
                result.ib_flagged.append(c.con_id)
                if str(c.con_id) in open_mismatches:
                    continue
                risk_events.record(
                    conn,
                    kind=books.IB_MISMATCH_KIND,
                    severity="warning",
                    scope="position",
                    scope_key=str(c.con_id),
                    code="PNL_SINGLE_DIFFERENCE",
                    message=(
                        f"unrealized P&L of con_id {c.con_id}: ours {money_text(c.ours)}, IB's "
                        f"{money_text(c.theirs)}, difference {money_text(c.difference)} "
                        "(limit $10): review"
                    ),
                    details={
                        "ours": money_text(c.ours),
                        "ib": money_text(c.theirs),
                        "difference": money_text(c.difference),
                    },
                    now=now,
                )
            elif str(c.con_id) in open_mismatches:
                books.resolve_ib_mismatch(conn, c.con_id, now)
    if redis_client is not None:
        publish(redis_client, lines, totals, marks, now)
    return result


def _snapshot_rows(
    lines: list[PnlLine], totals: list[Any], now: datetime
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for line in lines:
        if line.quantity == ZERO:
            continue
        rows.append(
            {
                "scope": "position",
                "scope_key": f"{line.con_id}:{line.strategy}",
                "con_id": line.con_id,
                "strategy_id": line.strategy,
                "quantity": line.quantity,
                "realized_pl": line.realized,
                "unrealized_pl": line.unrealized if line.unrealized is not None else ZERO,
                "fees": line.fees,
                "net_pl": line.net,
                "mark_price": line.mark,
                "source": "books" if line.unrealized is not None else "books:unmarked",
                "ts": now,
            }
        )
    for total in totals:
        rows.append(
            {
                "scope": "strategy",
                "scope_key": total.key,
                "con_id": None,
                "strategy_id": total.key,
                "quantity": None,
                "realized_pl": total.realized,
                "unrealized_pl": total.unrealized if total.unrealized is not None else ZERO,
                "fees": total.fees,
                "net_pl": total.net,
                "mark_price": None,
                "source": "books" if total.unknown_marks == 0 else "books:partly_unmarked",
                "ts": now,
            }
        )
    return rows


@exact
def publish(
    client: redis.Redis,
    lines: list[PnlLine],
    totals: list[Any],
    marks: Mapping[tuple[int, str], Mark | None],
    now: datetime,
) -> None:
    """The dashboard hashes: per contract (summed over strategies, each strategy's figures in
    `strategies` as JSON) and per strategy; decimals as strings, `ts` the tick's time."""
    pipe = client.pipeline(transaction=False)
    stamp = now.isoformat()
    for con_id, group in _by_contract(lines).items():
        quantity = sum((x.quantity for x in group), ZERO)
        known = [x.unrealized for x in group if x.unrealized is not None]
        unreal: Decimal | None = sum(known, ZERO) if len(known) == len(group) else None
        realized = sum((x.realized for x in group), ZERO)
        fees = sum((x.fees for x in group), ZERO)
        financing = sum((x.financing for x in group), ZERO)
        net = sum((x.net for x in group), ZERO)
        mark = next(
            (marks[(x.con_id, x.strategy)] for x in group if marks.get((x.con_id, x.strategy))),
            None,
        )
        fields: dict[Any, str] = {
            "con_id": str(con_id),
            "symbol": group[0].symbol or "",
            "quantity": quantity_text(quantity) or "0",
            "realized": money_text(realized) or "0",
            "unrealized": money_text(unreal) or "",
            "fees": money_text(fees) or "0",
            "financing": money_text(financing) or "0",
            "net": money_text(net) or "0",
            "mark": "" if mark is None else money_text(mark.price) or "",
            "marked_at": "" if mark is None else mark.at.isoformat(),
            "mark_stale": "" if mark is None else ("1" if mark.stale else "0"),
            "strategies": json.dumps(
                {
                    x.strategy: {
                        "quantity": quantity_text(x.quantity),
                        "avg_cost": money_text(x.avg_cost),
                        "realized": money_text(x.realized),
                        "unrealized": money_text(x.unrealized),
                        "fees": money_text(x.fees),
                        "net": money_text(x.net),
                    }
                    for x in group
                },
                sort_keys=True,
            ),
            "ts": stamp,
        }
        pipe.hset(POSITION_KEY.format(con_id=con_id), mapping=fields)
    for total in totals:
        strategy_fields: dict[Any, str] = {
            "strategy": total.key,
            "realized": money_text(total.realized) or "0",
            "unrealized": money_text(total.unrealized) or "",
            "fees": money_text(total.fees) or "0",
            "financing": money_text(total.financing) or "0",
            "net": money_text(total.net) or "0",
            "positions": str(sum(1 for m in total.members if m.quantity != ZERO)),
            "unmarked": str(total.unknown_marks),
            "ts": stamp,
        }
        pipe.hset(STRATEGY_KEY.format(strategy=total.key), mapping=strategy_fields)
    pipe.execute()


def _by_contract(lines: list[PnlLine]) -> dict[int, list[PnlLine]]:
    out: dict[int, list[PnlLine]] = {}
    for line in lines:
        out.setdefault(line.con_id, []).append(line)
    return out
