"""Option expiry, the books against the venue: a seeded mix of long and short calls and puts
around the money is traded on the simulator's engine (independent code), the session closes
there (OCC exercise by exception), and the same executions go through the ledger, whose expiry
run must leave every contract at the venue's quantity, the stock at the venue's average cost,
and the realized P&L (net of fees) the venue reports."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from epm.settings import get_settings
from models.fills import CENT, PRICE_QUANTUM
from services.ledger import process_callback
from store.db import write_transaction
from store.orders import create_order
from store.schema import positions_current
from tasks.app import Stores
from tasks.pnl import run_expiry
from tests.sim.engine_kit import AAPL, SPY, T0, standard_market
from tests.sim.test_engine_sessions import CLOSE, held, make_venue, opt_order, option
from tws_sim.types import Right

D = Decimal
SPY_CLOSE = "500.00"  # the standard market's closing auction price for SPY
STRIKES = ("480", "490", "499.99", "500", "500.01", "510", "520")


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.mark.parametrize("seed", [7, 12])
def test_expiry_in_the_ledger_matches_the_venues_settlement(
    engine: Engine, r: redis.Redis, seed: int
) -> None:
    rng = random.Random(seed)
    options = []
    for n, (strike, right) in enumerate((s, rt) for s in STRIKES for rt in (Right.CALL, Right.PUT)):
        options.append(option(920000 + n, strike, right))
    m = standard_market()
    for inst in options:
        m.set_book(inst.con_id, T0, [("2.00", "50")], [("2.10", "50")])
    v = make_venue(SPY, AAPL, *options, market=m)[0]
    v.on_market([], T0)
    for oid, inst in enumerate(options, start=1):
        side = rng.choice(("BUY", "SELL"))
        v.place(opt_order(oid, side, str(rng.randint(1, 3)), inst, order_ref=f"S-{oid}"), T0)
    realized_before = v.pnl(T0)[2]
    m.open = False
    v.on_market([], CLOSE)
    venue_realized = v.pnl(CLOSE)[2] - realized_before
    venue_positions = held(v)

    for inst in (SPY, *options):
        process_callback(
            "contract",
            {
                "con_id": inst.con_id,
                "symbol": "SPY",
                "sec_type": inst.sec_type.value,
                "expiry": None if inst.expiry is None else f"{inst.expiry:%Y%m%d}",
                "strike": None if inst.strike is None else str(inst.strike),
                "right": None if inst.right is None else inst.right.value,
                "multiplier": str(inst.multiplier),
                "under_con_id": inst.underlying_con_id,
                "received_at": T0.isoformat(),
            },
            engine=engine,
            redis_client=None,
            now=T0,
        )
    fees = D(0)
    for execution, commission in v.executions():
        with write_transaction(engine) as conn:
            create_order(
                conn,
                {"client_order_id": execution.order_ref, "client_id": 1, "strategy": "S"},
                T0,
            )
        process_callback(
            "execution",
            {
                "exec_id": execution.exec_id,
                "order_id": execution.order_id,
                "client_id": execution.client_id,
                "perm_id": execution.perm_id,
                "order_ref": execution.order_ref,
                "con_id": execution.con_id,
                "symbol": execution.symbol,
                "sec_type": execution.sec_type.value,
                "side": execution.side,
                "shares": str(execution.shares),
                "price": str(execution.price),
                "multiplier": "100",
                "time": execution.time.isoformat(),
                "received_at": T0.isoformat(),
            },
            engine=engine,
            redis_client=None,
            now=T0,
        )
        assert commission is not None
        fees += commission.commission
        process_callback(
            "commission",
            {
                "exec_id": execution.exec_id,
                "commission": str(commission.commission),
                "received_at": T0.isoformat(),
            },
            engine=engine,
            redis_client=None,
            now=T0,
        )
    r.hset(f"md:{SPY.con_id}", mapping={"last": SPY_CLOSE, "ts": CLOSE.isoformat()})
    out = run_expiry(Stores(get_settings(), engine, r, CLOSE + timedelta(seconds=1)))
    assert out["errors"] == [] and out["waiting"] == []
    assert len(out["settled"]) == len(options)

    with engine.connect() as conn:
        ledger = {row.con_id: row for row in conn.execute(sa.select(positions_current)).all()}
    for con_id, (qty, avg) in venue_positions.items():
        assert ledger[con_id].quantity == qty, con_id
        if con_id == SPY.con_id and qty != 0:
            # The ledger keeps averages to 10 places, re-quantized at each fill.
            assert abs(ledger[con_id].avg_price - avg) <= 2 * PRICE_QUANTUM
    assert set(ledger) == set(venue_positions)
    realized = sum((row.realized_pl for row in ledger.values()), D(0))
    assert (realized - fees).quantize(CENT) == venue_realized.quantize(CENT)
