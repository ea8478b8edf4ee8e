"""Option expiry booked in the ledger (SQLite and PostgreSQL, real Redis): at the close of the
expiry day ITM long options are exercised, ITM short ones assigned, OTM ones expire worthless;
positions and realized P&L to the cent, nothing before the close, nothing twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from epm.settings import get_settings
from models.expiry import is_settlement
from services.ledger import process_callback
from store import recon_runs
from store.orders import create_order
from store.schema import commissions, fills, positions_current
from tasks.app import Stores
from tasks.pnl import run_expiry

D = Decimal
SPY = 756733
C450, P460, P440, C470 = 900450, 900460, 900440, 900470
T0 = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # Friday; the close is 21:00 UTC (16:00 ET)
CLOSE = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def contract(engine: Engine, con_id: int, sec_type: str, **terms: Any) -> None:
    process_callback(
        "contract",
        {
            "con_id": con_id,
            "symbol": "SPY",
            "sec_type": sec_type,
            "currency": "USD",
            "received_at": T0.isoformat(),
            **terms,
        },
        engine=engine,
        redis_client=None,
        now=T0,
    )


def option_contract(engine: Engine, con_id: int, right: str, strike: str, expiry: str) -> None:
    contract(
        engine,
        con_id,
        "OPT",
        right=right,
        strike=strike,
        expiry=expiry,
        multiplier="100",
        under_con_id=SPY,
    )


_seq = iter(range(1, 10_000))


def order(engine: Engine, coid: str, strategy: str, con_id: int) -> None:
    from store.db import write_transaction

    with write_transaction(engine) as conn:
        create_order(
            conn,
            {
                "client_order_id": coid,
                "client_id": 1,
                "strategy": strategy,
                "con_id": con_id,
                "state": "PLACED",
            },
            T0,
        )


def execute(
    engine: Engine, strategy: str, con_id: int, side: str, qty: str, price: str, fee: str
) -> None:
    n = next(_seq)
    coid = f"{strategy}-{n}"
    order(engine, coid, strategy, con_id)
    exec_id = f"0000e0d5.{n:08x}.01.01"
    opt = 900_000 <= con_id < 1_000_000  # the tests' option con_ids
    process_callback(
        "execution",
        {
            "exec_id": exec_id,
            "order_id": 100 + n,
            "client_id": 1,
            "perm_id": 9000 + n,
            "order_ref": coid,
            "con_id": con_id,
            "symbol": "SPY",
            "sec_type": "OPT" if opt else "STK",
            "side": side,
            "shares": qty,
            "price": price,
            "multiplier": "100" if opt else None,
            "account": "DU1",
            "time": (T0 + timedelta(seconds=n)).isoformat(),
            "received_at": T0.isoformat(),
        },
        engine=engine,
        redis_client=None,
        now=T0,
    )
    process_callback(
        "commission",
        {"exec_id": exec_id, "commission": fee, "currency": "USD", "received_at": T0.isoformat()},
        engine=engine,
        redis_client=None,
        now=T0,
    )


def book(engine: Engine) -> dict[tuple[int, str], tuple[Decimal, Decimal | None, Decimal, Decimal]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(positions_current)).all()
    return {
        (r.con_id, r.strategy_id): (r.quantity, r.avg_price, r.realized_pl, r.commissions)
        for r in rows
    }


def stores(engine: Engine, r: redis.Redis, now: datetime) -> Stores:
    return Stores(settings=get_settings(), engine=engine, redis=r, now=now)


def seed(engine: Engine) -> None:
    contract(engine, SPY, "STK")
    option_contract(engine, C450, "C", "450", "20261204")
    option_contract(engine, P460, "P", "460", "20261204")
    option_contract(engine, P440, "P", "440", "20261204")
    option_contract(engine, C470, "C", "470", "20261204")
    execute(engine, "Momo", C450, "BUY", "2", "3.20", "1.30")  # long ITM call: exercised
    execute(engine, "Momo", P460, "SELL", "3", "6.10", "1.95")  # short ITM put: assigned
    execute(engine, "Momo", P440, "BUY", "1", "1.05", "1.00")  # long OTM put: worthless
    execute(engine, "Momo", C470, "SELL", "4", "0.80", "2.60")  # short OTM call: worthless
    execute(engine, "Hedge", SPY, "BUY", "100", "452", "1.00")  # covered call, assigned
    execute(engine, "Hedge", C450, "SELL", "1", "7.00", "1.00")
    execute(engine, "Bear", P460, "BUY", "1", "5.50", "1.00")  # long ITM put: exercised


def test_expiry_settles_itm_and_otm_long_and_short_to_the_cent_once(
    engine: Engine, r: redis.Redis
) -> None:
    seed(engine)
    r.hset(f"md:{SPY}", mapping={"last": "455.37", "ts": CLOSE.isoformat()})
    before = book(engine)

    early = run_expiry(stores(engine, r, CLOSE - timedelta(seconds=1)))
    assert early["due"] == 0 and early["settled"] == []
    assert book(engine) == before

    done = run_expiry(stores(engine, r, CLOSE + timedelta(seconds=30)))
    kinds = sorted((s["key"], s["kind"]) for s in done["settled"])
    assert kinds == [
        (f"SETTLE-{P440}-Momo-20261204", "EXPIRY"),
        (f"SETTLE-{C450}-Hedge-20261204", "ASSIGN"),
        (f"SETTLE-{C450}-Momo-20261204", "EXERCISE"),
        (f"SETTLE-{P460}-Bear-20261204", "EXERCISE"),
        (f"SETTLE-{P460}-Momo-20261204", "ASSIGN"),
        (f"SETTLE-{C470}-Momo-20261204", "EXPIRY"),
    ]
    assert done["waiting"] == [] and done["errors"] == []
    after = book(engine)
    # Options: flat, realized = the premium (paid: negative, received: positive), fees as paid.
    assert after[(C450, "Momo")] == (D(0), None, D("-640.00"), D("1.30"))
    assert after[(P460, "Momo")] == (D(0), None, D("1830.00"), D("1.95"))
    assert after[(P440, "Momo")] == (D(0), None, D("-105.00"), D("1.00"))
    assert after[(C470, "Momo")] == (D(0), None, D("320.00"), D("2.60"))
    assert after[(C450, "Hedge")] == (D(0), None, D("700.00"), D("1.00"))
    assert after[(P460, "Bear")] == (D(0), None, D("-550.00"), D("1.00"))
    # Stock at the strike: 200 @ 450 (call exercised) + 300 @ 460 (put assigned) = 500 @ 456.
    assert after[(SPY, "Momo")] == (D(500), D(456), D(0), D(0))
    # The covered call's stock is called away at 450: (450 - 452) x 100.
    assert after[(SPY, "Hedge")] == (D(0), None, D("-200.00"), D("1.00"))
    # The long put's exercise sells 100 at 460: short 100 @ 460.
    assert after[(SPY, "Bear")] == (D(-100), D(460), D(0), D(0))

    with engine.connect() as conn:
        synthetic = conn.execute(
            sa.select(fills.c.execution_id, commissions.c.commission, commissions.c.estimated)
            .select_from(
                fills.join(commissions, commissions.c.execution_id == fills.c.execution_id)
            )
            .where(fills.c.order_ref.like("SETTLE-%"))
        ).all()
        compared = recon_runs.effective_fills(
            conn, since=T0, received_before=CLOSE + timedelta(hours=1)
        )
    assert len(synthetic) == 10  # 6 option legs + 4 underlying legs
    assert all(c == 0 and not est for _, c, est in synthetic)
    assert not any(is_settlement(f.execution_id) for f in compared)
    assert len(compared) == 7

    again = run_expiry(stores(engine, r, CLOSE + timedelta(minutes=1)))
    assert again["settled"] == [] and again["due"] == 0
    assert book(engine) == after


def test_early_close_settles_from_13_et_and_a_missing_close_price_waits_by_name(
    engine: Engine, r: redis.Redis
) -> None:
    contract(engine, SPY, "STK")
    option_contract(engine, C450, "C", "450", "20261127")  # day after Thanksgiving: 13:00 ET
    execute(engine, "Momo", C450, "BUY", "1", "2.00", "1.00")
    early_close = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)

    assert run_expiry(stores(engine, r, early_close - timedelta(minutes=1)))["due"] == 0
    waiting = run_expiry(stores(engine, r, early_close + timedelta(seconds=5)))
    assert waiting["due"] == 1 and waiting["settled"] == []
    assert waiting["waiting"] == [f"{C450}:Momo: no closing price for the underlying {SPY}"]
    assert book(engine)[(C450, "Momo")][0] == D(1)
    # A quote from long before the close is not its closing price.
    r.hset(
        f"md:{SPY}", mapping={"last": "470", "ts": (early_close - timedelta(hours=3)).isoformat()}
    )
    stale = run_expiry(stores(engine, r, early_close + timedelta(seconds=30)))
    assert stale["settled"] == [] and len(stale["waiting"]) == 1

    r.hset(f"md:{SPY}", mapping={"last": "449.50", "ts": early_close.isoformat()})
    done = run_expiry(stores(engine, r, early_close + timedelta(minutes=1)))
    assert [s["kind"] for s in done["settled"]] == ["EXPIRY"]
    assert book(engine)[(C450, "Momo")] == (D(0), None, D("-200.00"), D("1.00"))
    assert (SPY, "Momo") not in book(engine)


def test_epm_books_settle_expiries_with_an_operators_closing_price(
    sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    """A quote around the close is missing: the position waits (exit 1) until an operator
    gives the underlying's closing price."""
    from store.db import make_engine
    from store.migrate import upgrade

    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    contract(engine, SPY, "STK")
    option_contract(engine, C450, "C", "450", "20261127")  # long past: due at once
    execute(engine, "Momo", C450, "BUY", "2", "2.00", "1.00")
    redis.Redis.from_url(redis_url).delete(f"md:{SPY}")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_DATABASE_URL": sqlite_url,
        "EPM_REDIS_URL": redis_url,
        "EPM_DATA_DIR": str(tmp_path / "cli-data"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "epm", "books", "settle-expiries", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    waiting = run()
    assert waiting.returncode == 1, waiting.stderr[-2000:]
    assert f"not settled: {C450}:Momo: no closing price for the underlying {SPY}" in waiting.stdout
    assert run("--price", "SPY=455").returncode == 2
    done = run("--price", f"{SPY}=455.25", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [s["kind"] for s in json.loads(done.stdout)["settled"]] == ["EXERCISE"]
    assert book(engine)[(C450, "Momo")] == (D(0), None, D("-400.00"), D("1.00"))
    assert book(engine)[(SPY, "Momo")] == (D(200), D(450), D(0), D(0))
