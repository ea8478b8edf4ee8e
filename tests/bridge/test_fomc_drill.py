"""Issue 13 acceptance: the FOMC drill (docs/risk.md, `## FOMC drill`).

The production shape under honcho (the simulator on `--scenario fomc`, accelerated and started
shortly before 14:00 ET, the real bridge, the relay, a worker per queue and beat, on this run's
PostgreSQL and Redis). With the desk's drawdown cap set by `epm limits set`, Momentum_EQ buys
AAPL as a bracket before the statement; the 14:00 gap takes the loss beyond the cap and the
risk monitor halts the strategy: no entry of it is left working at the venue (its protective
exits are), a new intent is refused and nothing new of it reaches the venue. TSLA's volatility
pause freezes it for every strategy. The gateway's ten-second drop is shorter than the
disconnect limit, so nobody is halted and the bridge comes back READY. Then `epm kill-switch`
leaves no working order at the venue and the bridge refuses what comes after it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from epm.calendar import ET
from epm.streams import INTENT_STREAM
from ibgateway_bridge.commands import REJECT_STREAM, BridgeRejectReason
from store.migrate import upgrade
from tests.bridge.harness import poll
from tests.integration.intake_procs import REPO, process_env
from tests.integration.procfile_stack import free_port, group_alive
from tests.services import postgres_database
from tws_sim.server.testing import RecordingClient

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

TSLA = 76792991
BRACKET = '{"trail_percent": "5", "profit_target": "400"}'
CAP = "1500"  # USD: the gap takes ~0.9 % of the 1,000 AAPL alone, about 2,000
PROCFILE = """\
sim: epm sim --port $EPM_IB_PORT --scenario fomc --start 13:57 --speed 2
bridge: epm bridge
relay: epm relay
intake: epm worker -Q intake -c 1
orders: epm worker -Q orders -c 1
ledger: epm worker -Q ledger -c 1
pnl: epm worker -Q pnl -c 1
recon: epm worker -Q recon -c 1
beat: epm beat
"""


def both_ready(r: redis.Redis) -> bool:
    return r.hmget("ib:bridge:state", ["client1", "client2"]) == ["READY", "READY"]


@contextlib.contextmanager
def fomc_stack(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The session under honcho; (simulator port, log path). Stopped by PID."""
    venv_bin = Path(sys.executable).parent
    port = free_port()
    env = process_env(
        EPM_REDIS_URL=redis_url,
        EPM_DATABASE_URL=db_url,
        EPM_DATA_DIR=str(tmp_path / "epm-data"),
        EPM_IB_PORT=str(port),
        EPM_BRIDGE_LEASE_TTL_MS="2000",
    )
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    procfile = tmp_path / "Procfile"
    procfile.write_text(PROCFILE)
    log_path = tmp_path / "honcho.log"
    with log_path.open("ab") as log:
        honcho = subprocess.Popen(
            [str(venv_bin / "honcho"), "-f", str(procfile), "-d", str(REPO), "start"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield port, log_path
    finally:
        if honcho.poll() is None:
            honcho.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                honcho.wait(timeout=30)
        if group_alive(honcho.pid):
            os.killpg(honcho.pid, signal.SIGKILL)
        poll(lambda: not group_alive(honcho.pid), 30, 0.2, "no session process left")


_ASKER_IDS = itertools.count(10)


def venue(port: int) -> tuple[datetime, dict[str, str]]:
    """The simulator's clock and {orderRef: status} of every order it holds,
    working or done, asked as an outside client (a fresh id each time: the venue may not have
    seen the previous one leave yet)."""
    client = RecordingClient()
    client.start(port, next(_ASKER_IDS))
    try:
        client.reqCurrentTime()
        client.reqAllOpenOrders()
        client.wait_for(lambda: client.of("currentTime") and client.of("openOrderEnd"), 15)
        client.reqCompletedOrders(False)
        client.wait_for(lambda: client.of("completedOrdersEnd"), 15)
    finally:
        client.stop()
    orders: dict[str, str] = {}
    for _contract, order, state in client.of("completedOrder"):
        orders[order.orderRef] = state.status
    for _id, _contract, order, state in client.of("openOrder"):
        orders[order.orderRef] = state.status
    now = datetime.fromtimestamp(int(client.of("currentTime")[-1][0]), UTC)
    return now, orders


def working(orders: dict[str, str]) -> set[str]:
    return {ref for ref, status in orders.items() if status in ("Submitted", "PreSubmitted")}


def _rows(engine: sa.engine.Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def intent(engine: sa.engine.Engine, signal_id: str) -> Any:
    rows = _rows(
        engine,
        "SELECT id, status, reject_reason, reject_message FROM intents WHERE signal_id = :s",
        s=signal_id,
    )
    return rows[0] if rows else None


def refs_of(engine: sa.engine.Engine, strategy: str) -> set[str]:
    rows = _rows(
        engine,
        "SELECT client_order_id FROM execution_orders WHERE strategy = :s",
        s=strategy,
    )
    return {str(row.client_order_id) for row in rows}


def child_refs(engine: sa.engine.Engine, signal_id: str) -> list[Any]:
    return _rows(
        engine,
        "SELECT o.client_order_id, o.state, o.ib_order_id, o.reject_reason "
        "FROM execution_orders o JOIN intents i ON i.id = o.intent_id WHERE i.signal_id = :s",
        s=signal_id,
    )


def epm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "epm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def drill_db() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        yield url


def test_fomc_drill_halts_freezes_rides_the_drop_and_kills(
    drill_db: str, redis_url: str, tmp_path: Path
) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.flushdb()
    engine = sa.create_engine(drill_db)
    tag = uuid.uuid4().hex[:8]
    sid = {k: f"fomc-{k}-{tag}" for k in ("aapl", "tsla", "again", "frozen", "after")}

    def submit(
        key: str, strategy: str, instrument: str, quantity: str, urgency: str, **extra: str
    ) -> None:
        r.xadd(
            INTENT_STREAM,
            {
                **extra,
                "signal_id": sid[key],
                "strategy": strategy,
                "instrument": instrument,
                "side": "BUY",
                "quantity": quantity,
                "urgency": urgency,
                "time_in_force": "DAY",
            },
        )

    def bracket_exits_working() -> set[str]:
        """The AAPL bracket's exits working at the venue once its entry filled."""
        children = child_refs(engine, sid["aapl"])
        entry_filled = any(c.state == "FILLED" for c in children)
        refs = {str(c.client_order_id) for c in children if c.state != "FILLED"}
        live = working(venue(port)[1]) & refs if entry_filled else set()
        return live if len(live) == 2 else set()

    def status(key: str) -> str | None:
        row = intent(engine, sid[key])
        return None if row is None else str(row.status)

    # The orders session's states after it first came READY (the drop lasts seconds: a poll
    # started late could miss it).
    drops: list[str] = []
    watching = threading.Event()
    watching.set()

    def watch() -> None:
        while watching.is_set():
            state = r.hget("ib:bridge:state", "client1")
            if state != "READY":
                drops.append(str(state))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, name="drop-watch", daemon=True)
    try:
        with fomc_stack(drill_db, redis_url, tmp_path) as (port, log_path):

            def log_tail() -> str:
                return log_path.read_text(errors="replace")[-4000:]

            try:
                # Both connections: intake's headroom gate needs client 2's account summary.
                poll(lambda: both_ready(r), 90, 0.2, "clients 1 and 2 READY")
                watcher.start()
                # The desk's cap for the day: a loss the statement's gap will go beyond.
                env = process_env(EPM_REDIS_URL=redis_url, EPM_DATABASE_URL=drill_db)
                done = epm(
                    env, "limits", "set", "strategies.Momentum_EQ.max_intraday_drawdown",
                    CAP, "--reason", "FOMC: desk cap", "--actor", "drill",
                )  # fmt: skip
                assert done.returncode == 0, done.stdout + done.stderr
                # Before the statement: Momentum_EQ buys AAPL as a bracket (a 5 % trailing stop
                # and a far profit target rest at the venue), Gamma_Rebalance a little TSLA (its
                # contract cached and its quotes subscribed, so the pause is seen).
                submit("aapl", "Momentum_EQ", "AAPL", "1000", "High", params=BRACKET)
                submit("tsla", "Gamma_Rebalance", "TSLA", "10", "Immediate")
                exits = poll(
                    lambda: status("tsla") == "COMPLETED" and bracket_exits_working(),
                    60,
                    0.3,
                    "AAPL bought with its exits resting, TSLA bought",
                )
            except AssertionError:
                rows = _rows(engine, "SELECT signal_id, status, reject_reason FROM intents")
                raise AssertionError(f"{rows}\n{log_tail()}") from None
            now, _orders = venue(port)
            statement = now.astimezone(ET).replace(hour=14, minute=0, second=0, microsecond=0)
            assert now < statement, f"too slow: the long was built at {now}, after the statement"

            # 1. The gap down breaches the cap: the risk monitor halts Momentum_EQ.
            def halted() -> Any:
                rows = _rows(
                    engine,
                    "SELECT state, reason FROM strategy_states WHERE scope = 'Momentum_EQ'",
                )
                return rows and rows[0].state == "HALTED" and rows[0]

            state = poll(halted, 150, 0.2, "Momentum_EQ HALTED by the risk monitor")
            now, orders = venue(port)
            assert now >= statement, f"halted before the statement, at {now}: {state.reason}"
            assert "drawdown" in str(state.reason).lower(), state.reason
            (event,) = _rows(
                engine,
                "SELECT code, severity, message FROM risk_events WHERE kind = 'STATE_CHANGED'",
            )
            assert (event.code, event.severity) == ("DRAWDOWN_LIMIT", "critical")
            audits = _rows(
                engine,
                "SELECT actor, action, details FROM audit_log "
                "WHERE target = 'risk_state:Momentum_EQ'",
            )
            assert [(a.actor, a.action) for a in audits] == [
                ("rule:post_trade", "risk_state_halted")
            ]
            # The halt winds entries down and leaves a bracket's protective exits working
            # (docs/risk.md, trading states): the AAPL stop and target still rest at the venue,
            # and no entry of the strategy is left working there.
            assert exits <= working(orders)
            assert working(orders) & refs_of(engine, "Momentum_EQ") == exits
            at_halt = refs_of(engine, "Momentum_EQ")
            submit("again", "Momentum_EQ", "AAPL", "10", "High")
            poll(lambda: status("again") == "REJECTED", 30, 0.2, "the new intent refused")
            assert intent(engine, sid["again"]).reject_reason == "STRATEGY_HALTED"

            # 2. TSLA's pause (tick 49) freezes it for everyone.
            halt_key = f"epm:halt:instrument:{TSLA}"
            poll(lambda: r.exists(halt_key), 30, 0.2, "TSLA's halt published by the bridge")
            submit("frozen", "Gamma_Rebalance", "TSLA", "10", "Immediate")
            poll(lambda: status("frozen") == "REJECTED", 30, 0.2, "the TSLA intent refused")
            assert intent(engine, sid["frozen"]).reject_reason == "INSTRUMENT_HALTED"

            # 3. The gateway drops everyone at 14:01 for ten seconds: shorter than the
            # disconnect limit (30 s), so the bridge reconnects and nobody is halted.
            poll(lambda: drops, 120, 0.1, "the drop")
            poll(lambda: both_ready(r), 60, 0.2, "clients 1 and 2 READY again")
            assert _rows(engine, "SELECT * FROM strategy_states WHERE scope = 'global'") == [] or (
                _rows(engine, "SELECT state FROM strategy_states WHERE scope = 'global'")[0].state
                == "ACTIVE"
            )
            assert (
                _rows(engine, "SELECT * FROM risk_events WHERE code = 'LASTING_DISCONNECT'") == []
            )

            # 4. The kill switch: every working order cancelled at the venue, nothing after.
            before_kill = working(venue(port)[1])
            assert exits <= before_kill
            killed = epm(
                {**env, "EPM_IB_PORT": str(port)},
                "kill-switch", "--reason", "FOMC drill", "--actor", "drill",
            )  # fmt: skip
            assert killed.returncode == 0, killed.stdout + killed.stderr
            _now, after_kill = venue(port)
            assert working(after_kill) == set()
            submit("after", "Gamma_Rebalance", "AMZN", "10", "Immediate")

            def refused_by_the_bridge() -> bool:
                return any(
                    f.get("reason") == BridgeRejectReason.HALTED_GLOBAL
                    for _id, f in r.xrange(REJECT_STREAM)
                )

            poll(refused_by_the_bridge, 60, 0.3, "the placement after the kill switch refused")
            _now, final = venue(port)
            assert set(final) == set(after_kill), "an order reached the venue after the kill"
            # Nothing of the halted strategy reached the venue after its halt.
            assert {ref for ref in final if ref in refs_of(engine, "Momentum_EQ")} <= at_halt
    finally:
        watching.clear()
        if watcher.is_alive():
            watcher.join(5)
        engine.dispose()
        r.flushdb()
        r.close()
