"""The production shape runs: every Procfile line, started with honcho against the machine's
Redis and PostgreSQL, stays up through 30 idle seconds, and then an intent sent to
`signals.exec.intent` reaches the venue and trades: relay → intake → orders (plan, contract
details, market data, beat's scheduler tick) → bridge → simulator → ledger, to a COMPLETED intent
whose fills are the venue's executions.

Run as a newcomer would: `epm db upgrade`, then `honcho start` with `EPM_REDIS_URL` and
`EPM_DATABASE_URL` set (isolated here: this run's database and Redis db number, OS-chosen ports).
honcho stops every line when one of them exits, so honcho still running means all of them are.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from epm.streams import INTENT_STREAM
from store.migrate import upgrade
from tests.integration.intake_procs import wait_for
from tests.integration.procfile_stack import procfile_stack
from tests.services import postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

IDLE_S = 30.0


@pytest.fixture
def procfile_db() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        yield url


def test_every_procfile_line_stays_up_idle_and_takes_an_intent(
    procfile_db: str, redis_url: str, tmp_path: Path
) -> None:
    with procfile_stack(procfile_db, redis_url, tmp_path) as stack:
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        deadline = time.monotonic() + IDLE_S
        while time.monotonic() < deadline:  # the property under test is this idle stretch
            stack.assert_running()
            time.sleep(1.0)
        sweep_id = f"procfile-{uuid.uuid4().hex[:10]}"
        bracket_id = f"procfile-{uuid.uuid4().hex[:10]}"
        base = {
            "strategy": "Momentum_EQ",
            "side": "BUY",
            "urgency": "High",
            "time_in_force": "DAY",
            "max_slippage_bps": "25",
        }
        r.xadd(
            INTENT_STREAM, {**base, "signal_id": sweep_id, "instrument": "NVDA", "quantity": "10"}
        )
        # A bracket: entry at the touch, a trailing stop and a profit target as an OCA pair.
        r.xadd(
            INTENT_STREAM,
            {
                **base,
                "signal_id": bracket_id,
                "instrument": "AAPL",
                "quantity": "5",
                "params": json.dumps({"trail_percent": "2", "profit_target": "400"}),
            },
        )
        engine = sa.create_engine(procfile_db)
        try:
            sweep = _traded(engine, sweep_id, stack.log_path)
            assert _filled(engine, sweep.id) == Decimal(10)
            bracket = _traded(engine, bracket_id, stack.log_path)
            assert _filled(engine, bracket.id) == Decimal(5)

            def exits_working() -> list[sa.Row[tuple[str, str | None, str | None]]]:
                with engine.connect() as conn:
                    rows = conn.execute(
                        sa.text(
                            "SELECT order_type, last_ib_status, state FROM execution_orders "
                            "WHERE intent_id = :i AND parent_order_id IS NOT NULL ORDER BY id"
                        ),
                        {"i": bracket.id},
                    ).all()
                working = [x for x in rows if x.last_ib_status in ("PreSubmitted", "Submitted")]
                return rows if len(working) == 2 else []

            # The venue's own view (openOrder / orderStatus through the ledger): both exits
            # work there, the limit and the trailing stop, after the entry filled.
            exits = wait_for(exits_working, timeout_s=30, what="the bracket's exits working")
            assert [x.order_type for x in exits] == ["LMT", "TRAIL"], exits
        finally:
            engine.dispose()
        stack.assert_running()
        r.close()


def _traded(engine: sa.engine.Engine, signal_id: str, log_path: Path) -> Any:
    """The intent's row once it has ended; it must have COMPLETED."""

    def intent() -> Any:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT status, id, reject_message FROM intents WHERE signal_id = :s"),
                {"s": signal_id},
            ).first()

    def ended() -> Any:
        row = intent()
        return (
            row if row is not None and row.status in ("COMPLETED", "EXPIRED", "REJECTED") else None
        )

    try:
        final = wait_for(ended, timeout_s=60, what=f"intent {signal_id} traded to its end")
    except AssertionError:
        raise AssertionError(
            f"intent {intent()}: {log_path.read_text(errors='replace')[-4000:]}"
        ) from None
    assert final.status == "COMPLETED", final
    return final


def _filled(engine: sa.engine.Engine, intent_id: int) -> Decimal:
    """What the venue executed for the intent, as booked to its children in the ledger."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT f.shares FROM fills f JOIN execution_orders o ON o.id = f.order_id "
                "WHERE o.intent_id = :i AND o.parent_order_id IS NULL"
            ),
            {"i": intent_id},
        ).all()
    return sum((Decimal(row.shares) for row in rows), Decimal(0))
