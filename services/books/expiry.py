"""Use case: settle the option positions whose expiry has come (blueprint §8, `docs/books.md`).

Beat runs it every minute; before the close of an expiry day (the exchange calendar's, 13:00 ET
on early-close days) it books nothing. Each due position is settled in its own transaction:
the option's and the underlying's position rows are locked in key order (as the ledger locks
them), the option's quantity re-read, the settlement decided (`models.expiry.settle`), its
synthetic fills booked (`store.settlements`) and both positions recomputed from their fills,
as after any execution. The settlement key per (contract, strategy, expiry) makes a re-run,
or two runs at once, book nothing twice. A position whose underlying has no closing price yet,
or whose terms are unusable, is reported by name (`waiting`, `errors`) and retried next run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from epm.calendar import session_close, trading_day
from models.expiry import ExpiryError, OptionPosition, is_due, parse_expiry, settle
from services.ledger.positions import refresh_positions
from store import positions as positions_repo
from store import settlements
from store.db import write_transaction


@dataclass(slots=True)
class ExpiryResult:
    """What one run settled, skipped for want of a price, or could not settle."""

    day: date
    due: int = 0
    settled: list[dict[str, str]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "due": self.due,
            "settled": self.settled,
            "waiting": self.waiting,
            "errors": self.errors,
        }


def settle_expiries(
    engine: Engine, closing_price: Callable[[int, datetime], Decimal | None], now: datetime
) -> ExpiryResult:
    """Settle every open option position whose expiry's close has passed at `now`.

    `closing_price(con_id, close)` is the underlying's closing price for the session that
    closed at `close` (None while unknown).
    """
    day = trading_day(now)
    result = ExpiryResult(day)
    close_today = session_close(day)
    with engine.connect() as conn:
        candidates = settlements.open_options(conn)  # in con_id order
    rank_of: dict[tuple[date, int], int] = {}
    for row in candidates:
        expiry = parse_expiry(row.expiry)
        name = f"{row.con_id}:{row.strategy}"
        if expiry is None or not is_due(expiry, day, now, close_today):
            continue
        result.due += 1
        if row.right is None or row.strike is None:
            result.errors.append(f"{name}: the contract cache has no right or strike")
            continue
        position = OptionPosition(
            con_id=row.con_id,
            strategy=row.strategy,
            quantity=row.quantity,
            multiplier=row.multiplier,
            right=row.right,
            strike=row.strike,
            expiry=expiry,
            underlying_con_id=row.underlying_con_id,
        )
        # The settlement's fills are timed at the expiry's close, a microsecond apart in option
        # con_id order: settlements buying and selling the same stock then fold into its average
        # cost in one fixed order (the simulator's, for positions opened in con_id order).
        close = min(session_close(expiry) or now, now)
        under = row.underlying_con_id
        price = closing_price(under, close) if under else None
        if price is None:
            result.waiting.append(f"{name}: no closing price for the underlying {under}")
            continue
        rank = rank_of.setdefault((expiry, row.con_id), len(rank_of))
        executed_at = close + timedelta(microseconds=rank)
        try:
            booked = _settle_one(engine, position, row, price, executed_at, now)
        except ExpiryError as e:
            result.errors.append(f"{name}: {e}")
            continue
        if booked is not None:
            result.settled.append(booked)
    return result


def _settle_one(
    engine: Engine,
    position: OptionPosition,
    row: settlements.OptionRow,
    price: Decimal,
    executed_at: datetime,
    now: datetime,
) -> dict[str, str] | None:
    # Which rows the settlement touches depends only on the terms and the price (in the money
    # or not), not on the quantity: lock exactly those, so a worthless expiry creates no
    # underlying row.
    keys = {(f.con_id, f.strategy) for f in settle(position, price).fills}
    with write_transaction(engine) as conn:
        for con_id, strategy in sorted(keys):
            positions_repo.lock(conn, con_id, strategy, now)
        quantity = settlements.position_quantity(conn, position.con_id, position.strategy)
        if quantity == 0:
            return None
        settlement = settle(replace(position, quantity=quantity), price)
        if settlements.is_booked(conn, settlement.key):
            return None
        settlements.book(
            conn,
            settlement,
            symbol=row.symbol,
            account=row.account,
            details={
                "underlying_close": str(price),
                "intrinsic": str(settlement.intrinsic),
                "expiry": position.expiry.isoformat(),
                "contracts": str(quantity),
            },
            executed_at=executed_at,
            now=now,
        )
        refresh_positions(
            conn, [(f.con_id, f.strategy) for f in settlement.fills], settlement.key, now
        )
    return {
        "key": settlement.key,
        "kind": settlement.kind.value,
        "contracts": str(quantity),
        "underlying_close": str(price),
    }
