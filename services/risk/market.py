"""What intake knows of an intent's instrument for the pre-trade gates: loaded, not decided.

For every intent, the account's margin headroom from the risk connection
(services/risk/account.py). For a stock whose contract is in the cache (`store.contracts`): its
halt state as the bridge publishes it (tick 49 → `epm:halt:instrument:{con_id}`) and the
strategy's signed position in it (`positions_current`). Anything not known stays None, and its
gate is skipped: a contract not yet cached is not an unknown instrument (the orders path resolves
it and refuses UNKNOWN_CONTRACT). The headroom is the exception: unknown there refuses.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

import redis
from sqlalchemy.engine import Connection

from epm.settings import get_settings
from models.instruments import StockContract
from models.intent import Intent, Side
from models.limits import DEFAULT_DUPLICATE_WINDOW_S, Limits, strategy_limits
from models.market import MarketSnapshot
from models.risk import MarketFacts, Recent
from services.risk.account import account_facts
from store import contracts as contracts_repo
from store import intents as intents_repo
from store import positions as positions_repo

__all__ = ["HALT_INSTRUMENT_KEY", "market_facts"]

# The bridge's key (ibgateway_bridge.commands.HALT_INSTRUMENT_KEY), pinned equal by a test.
HALT_INSTRUMENT_KEY = "epm:halt:instrument:{con_id}"


# A quote older than this says nothing about where the market is now: no price band from it.
QUOTE_MAX_AGE = timedelta(seconds=10)


def market_facts(
    conn: Connection,
    redis_client: redis.Redis,
    intent: Intent,
    *,
    now: datetime | None = None,
    limits: Limits | None = None,
) -> MarketFacts:
    """The facts for `intent`'s gates, read from the ledger and Redis (see the module doc); with
    `now`, also the account's headroom from the risk connection (services/risk/account.py), a
    fresh quote for the price band and, with `limits`, the near-duplicate history. Call it under
    the strategy's lock so two workers cannot both miss each other's near-duplicate."""
    facts = _instrument_facts(conn, redis_client, intent, now)
    if now is None:
        return facts
    settings = get_settings()
    account = account_facts(
        redis_client,
        now=now,
        mode=settings.headroom_check,
        client_id=settings.ib_client_id_account,
        account=settings.ib_account,
    )
    facts = dataclasses.replace(facts, account=account, now=now)
    if limits is None or intent.side not in (Side.BUY, Side.SELL_SHORT):
        # An exit is bounded by the side-vs-position gate; holding a repeated exit back as a
        # "duplicate" could keep a position open that must close (the 0DTE flat).
        return facts
    window_s = strategy_limits(limits, intent.strategy).duplicate_window_s
    window = timedelta(seconds=DEFAULT_DUPLICATE_WINDOW_S if window_s is None else window_s)
    if not window:
        return facts
    key = intent.instrument.text
    prior = intents_repo.admitted_since(
        conn, strategy=intent.strategy, instrument=key, side=intent.side.value, since=now - window
    )
    recent = tuple(Recent(intent.strategy, key, intent.side, sid, at) for sid, at in prior)
    return dataclasses.replace(facts, recent=recent, duplicate_window=window)


def _nbbo(
    redis_client: redis.Redis, con_id: int, now: datetime | None
) -> tuple[Decimal, Decimal] | None:
    """The (bid, ask) of a fresh two-sided quote the bridge published, else None."""
    if now is None:
        return None
    fields = cast(dict[str, str], redis_client.hgetall(f"md:{con_id}"))
    snap = MarketSnapshot.from_fields(con_id, fields) if fields else None
    if snap is None or snap.stale(now, QUOTE_MAX_AGE) or snap.bid is None or snap.ask is None:
        return None
    return (snap.bid, snap.ask) if snap.two_sided else None


def _instrument_facts(
    conn: Connection, redis_client: redis.Redis, intent: Intent, now: datetime | None
) -> MarketFacts:
    contract = intent.instrument
    if not isinstance(contract, StockContract):
        return MarketFacts()
    con_id = contracts_repo.find_con_id(conn, symbol=contract.symbol, sec_type="STK")
    if con_id is None:
        return MarketFacts(position=_uncached_position(conn, intent.strategy, contract.symbol))
    halted = redis_client.get(HALT_INSTRUMENT_KEY.format(con_id=con_id)) not in (None, "", "0")
    position = Decimal(0)
    for row in positions_repo.open_of(conn, intent.strategy):
        if row.con_id == con_id:
            position += Decimal(row.quantity)
    return MarketFacts(
        known=True, position=position, halted=halted, nbbo=_nbbo(redis_client, con_id, now)
    )


def _uncached_position(conn: Connection, strategy: str, symbol: str) -> Decimal:
    """The strategy's position in a stock whose contract is not cached yet, by symbol.

    A stock position comes from fills, and a fill from an order the orders path resolved (and so
    cached), so no row is the common case and means flat: a cover or a sell with nothing behind
    it is then refused here, not sent. Rows of contracts described as anything but a stock (an
    option on the same symbol) do not count."""
    position = Decimal(0)
    for row in positions_repo.open_of(conn, strategy):
        if row.symbol != symbol:
            continue
        described = contracts_repo.described(conn, int(row.con_id))
        if described is None or described.get("sec_type") == "STK":
            position += Decimal(row.quantity)
    return position
