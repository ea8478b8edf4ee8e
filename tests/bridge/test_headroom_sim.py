"""Headroom from client 2, end to end: the simulator's paper account (1,000,000 cash) reaches
intake through the bridge's account connection and decides; once the bridge goes quiet, an
opening intent is refused (fails closed) while an exit still passes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from services.intake import process_submission
from store.db import make_engine
from store.migrate import upgrade
from store.schema import positions_current
from tests.bridge.harness import bridge_in_process, poll, sim_thread, wait_ready

pytestmark = pytest.mark.redis


def submit(engine: sa.Engine, r: redis.Redis, now: datetime, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "signal_id": f"sig-{uuid.uuid4().hex[:10]}",
        "strategy": "Momentum_EQ",
        "instrument": "AAPL",
        "side": "BUY",
        "quantity": "100",
        "urgency": "Immediate",
        "time_in_force": "DAY",
        "target_price": "200",
    }
    payload.update(changes)
    return process_submission(
        payload, engine=engine, redis_client=r, now=now, max_active=lambda _s: 50
    )


def test_the_paper_account_through_client_2_decides_intake_and_a_quiet_bridge_fails_closed(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    with sim_thread() as sim, bridge_in_process(redis_url, sim.port):
        wait_ready(r, client_id=2)

        def summary() -> dict[str, str] | None:
            for key in r.scan_iter(match="ib:account:*"):
                found = r.hgetall(key)
                if found.get("NetLiquidation"):
                    return found
            return None

        figures = poll(summary, 30, what="the account summary from client 2")
        assert figures["NetLiquidation"] == "1000000.00"
        now = datetime.now(UTC)
        assert submit(engine, r, now)["status"] == "VALIDATED"
        # 9,500 × 200 × 0.5 = 950,000 of Reg T margin: more than the account has free.
        big = submit(engine, r, now, quantity="9500")
        assert big["reason"] == "MARGIN_HEADROOM", big
        assert "1000000.00" in big["message"]
    # The bridge has stopped: its last heartbeat ages past 10 s and nothing vouches for the figures.
    later = datetime.now(UTC) + timedelta(seconds=11)
    quiet = submit(engine, r, later)
    assert quiet["reason"] == "ACCOUNT_DATA_UNAVAILABLE", quiet
    with engine.begin() as conn:  # a long to sell, as the ledger books one
        conn.execute(
            sa.insert(positions_current).values(
                con_id=265598, strategy_id="Momentum_EQ", symbol="AAPL", quantity="100",
                avg_price="190", realized_pl="0", commissions="0", updated_at=later, version=1,
            )
        )  # fmt: skip
    assert submit(engine, r, later, side="SELL")["status"] == "VALIDATED"
