"""What intake knows of an intent's instrument for the pre-trade gates: loaded, not decided.

For a stock whose contract is in the cache (`store.contracts`): its halt state as the bridge
publishes it (tick 49 → `epm:halt:instrument:{con_id}`) and the strategy's signed position in it
(`positions_current`). Anything not known stays None, and its gate is skipped: a contract not yet
cached is not an unknown instrument (the orders path resolves it and refuses UNKNOWN_CONTRACT).
"""

from __future__ import annotations

from decimal import Decimal

import redis
from sqlalchemy.engine import Connection

from models.instruments import StockContract
from models.intent import Intent
from models.risk import MarketFacts
from store import contracts as contracts_repo
from store import positions as positions_repo

__all__ = ["HALT_INSTRUMENT_KEY", "market_facts"]

# The bridge's key (ibgateway_bridge.commands.HALT_INSTRUMENT_KEY), pinned equal by a test.
HALT_INSTRUMENT_KEY = "epm:halt:instrument:{con_id}"


def market_facts(conn: Connection, redis_client: redis.Redis, intent: Intent) -> MarketFacts:
    """The facts for `intent`'s gates, read from the ledger and Redis (see the module doc)."""
    contract = intent.instrument
    if not isinstance(contract, StockContract):
        return MarketFacts()
    con_id = contracts_repo.find_con_id(conn, symbol=contract.symbol, sec_type="STK")
    if con_id is None:
        return MarketFacts()
    halted = redis_client.get(HALT_INSTRUMENT_KEY.format(con_id=con_id)) not in (None, "", "0")
    position = Decimal(0)
    for row in positions_repo.open_of(conn, intent.strategy):
        if row.con_id == con_id:
            position += Decimal(row.quantity)
    return MarketFacts(known=True, position=position, halted=halted)
