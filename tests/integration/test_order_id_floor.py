"""Order ids stay safe when Redis loses `ib:order:last_id`: the ledger's highest id is the floor.

On both dialects: the floor query covers orders and fills of one client id; a worker-side
allocation that finds the counter missing reseeds above it (never reusing an id the ledger
knows), and `epm ledger reseed-order-ids` does the same from the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Connection, Engine

from ibgateway_bridge import client_api
from ibgateway_bridge.ids import LAST_ID_KEY, OrderIdCounterMissingError
from services import ledger
from services.ledger import process_callback
from store.db import write_transaction
from store.order_ids import highest_ib_order_id
from store.schema import execution_orders, fills
from tests.integration.intake_procs import REPO

T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(LAST_ID_KEY, *client.keys("ib:sent:*"))
    yield client
    client.delete(LAST_ID_KEY, *client.keys("ib:sent:*"))
    client.close()


def _order(conn: Connection, coid: str, client_id: int, ib_order_id: int) -> None:
    ledger.create_order(
        conn,
        {
            "client_order_id": coid,
            "client_id": client_id,
            "ib_order_id": ib_order_id,
            "con_id": 265598,
            "symbol": "AAPL",
            "sec_type": "STK",
            "action": "BUY",
            "quantity": Decimal(10),
            "state": "PLACED",
        },
        T0,
    )


def seed_ledger(engine: Engine) -> None:
    """Client 1 used ids 11, 12 (orders), 40 (a TWS order seen in an execution) and 77 (a fill
    whose order row now carries another id); client 2 used 5000."""
    with write_transaction(engine) as conn:
        _order(conn, "F-1", 1, 11)
        _order(conn, "F-2", 1, 12)
        _order(conn, "G-1", 2, 5000)
    execution = {
        "exec_id": "fl.01.01",
        "order_id": 40,
        "client_id": 1,
        "perm_id": 4040,
        "con_id": 265598,
        "side": "BOT",
        "shares": "1",
        "price": "190",
        "received_at": T0.isoformat(),
    }
    process_callback("execution", execution, engine=engine, redis_client=None, now=T0)
    with write_transaction(engine) as conn:
        order_id = conn.execute(
            execution_orders.select().where(execution_orders.c.client_order_id == "F-1")
        ).one()
        conn.execute(
            fills.insert().values(
                execution_id="fl.02.01",
                exec_base="fl.02",
                exec_seq=1,
                order_id=order_id.id,
                ib_order_id=77,
                client_id=1,
                side="BUY",
                shares=Decimal(1),
                price=Decimal(190),
                executed_at=T0,
                received_at=T0,
            )
        )


def test_floor_is_the_highest_id_in_orders_and_fills_per_client(engine: Engine) -> None:
    with engine.connect() as conn:
        assert highest_ib_order_id(conn, 1) == 0
    seed_ledger(engine)
    with engine.connect() as conn:
        assert highest_ib_order_id(conn, 1) == 77
        assert highest_ib_order_id(conn, 2) == 5000
        assert highest_ib_order_id(conn, 3) == 0


def test_worker_allocation_after_redis_lost_the_counter_reseeds_above_the_ledger(
    engine: Engine, r: redis.Redis
) -> None:
    seed_ledger(engine)
    with pytest.raises(OrderIdCounterMissingError):
        client_api.allocate_order_id(r)

    def floor() -> int:
        with engine.connect() as conn:
            return highest_ib_order_id(conn, 1)

    first = client_api.allocate_order_id(r, floor=floor)
    assert first > 77
    assert client_api.allocate_order_id(r, floor=floor) == first + 1


def test_cli_reseed_order_ids_from_the_ledger(
    engine: Engine, r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    seed_ledger(engine)
    r.set("ib:sent:1:90", "sent:1-0")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
    env.update(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL=engine.url.render_as_string(hide_password=False),
        EPM_DATA_DIR=str(tmp_path / "epm-data"),
        PYTHONPATH=str(REPO),
    )
    done = subprocess.run(
        [sys.executable, "-m", "epm", "ledger", "reseed-order-ids"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    last = int(r.get(LAST_ID_KEY) or 0)
    assert last == 90 + client_api.ORDER_ID_RESEED_MARGIN
    assert "ledger floor 77" in done.stdout and f"ib:order:last_id {last}" in done.stdout
    # Run again: the counter exists, nothing moves.
    again = subprocess.run(
        [sys.executable, "-m", "epm", "ledger", "reseed-order-ids"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert int(r.get(LAST_ID_KEY) or 0) == last
