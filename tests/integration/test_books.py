"""The books on real stores (SQLite and PostgreSQL, real Redis): the mark tick writes only its own
columns of `positions_current` and never over a newer ledger write, publishes the dashboard
hashes, snapshots, flags IB differences once; the operator views and their exact money."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from epm.settings import get_settings
from services.books.views import GroupBy, pnl_view, positions_view
from services.ledger import process_callback
from store import books
from store.db import write_transaction
from store.orders import create_order
from store.schema import financing_charges, intents, pnl_snapshots, positions_current, risk_events
from tasks.app import Stores
from tasks.pnl import run_mark

D = Decimal
T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
SPY, OPT = 756733, 900001


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def stores(engine: Engine, r: redis.Redis, now: datetime) -> Stores:
    return Stores(settings=get_settings(), engine=engine, redis=r, now=now)


def intent_order(
    engine: Engine,
    coid: str,
    strategy: str,
    signal: str,
    con_id: int,
    action: str,
    qty: str,
    state: str = "PLACED",
) -> None:
    with write_transaction(engine) as conn:
        intent_id = conn.execute(
            intents.insert().values(
                signal_id=signal,
                strategy=strategy,
                status="EXECUTING",
                received_at=T0,
                updated_at=T0,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        create_order(
            conn,
            {
                "client_order_id": coid,
                "client_id": 1,
                "strategy": strategy,
                "intent_id": intent_id,
                "con_id": con_id,
                "action": action,
                "quantity": D(qty),
                "state": state,
            },
            T0,
        )


_seq = iter(range(1, 10_000))


def execute(
    engine: Engine,
    coid: str,
    con_id: int,
    side: str,
    shares: str,
    price: str,
    fee: str,
    sec_type: str = "STK",
    mult: str | None = None,
    at: int = 0,
) -> str:
    n = next(_seq)
    exec_id = f"0000e0d5.{n:08x}.01.01"
    payload: dict[str, Any] = {
        "exec_id": exec_id,
        "order_id": 100 + n,
        "client_id": 1,
        "perm_id": 9000 + n,
        "order_ref": coid,
        "con_id": con_id,
        "symbol": "SPY",
        "sec_type": sec_type,
        "side": side,
        "shares": shares,
        "price": price,
        "account": "DU1",
        "time": (T0 + timedelta(seconds=at or n)).isoformat(),
        "received_at": T0.isoformat(),
    }
    if mult is not None:
        payload["multiplier"] = mult
    process_callback("execution", payload, engine=engine, redis_client=None, now=T0)
    process_callback(
        "commission",
        {"exec_id": exec_id, "commission": fee, "currency": "USD", "received_at": T0.isoformat()},
        engine=engine,
        redis_client=None,
        now=T0,
    )
    return exec_id


def quote(r: redis.Redis, con_id: int, bid: str, ask: str, at: datetime) -> None:
    r.hset(f"md:{con_id}", mapping={"bid": bid, "ask": ask, "last": bid, "ts": at.isoformat()})


def row(engine: Engine, con_id: int, strategy: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(positions_current).where(
                positions_current.c.con_id == con_id, positions_current.c.strategy_id == strategy
            )
        ).one()


def test_mark_tick_marks_long_and_short_publishes_and_leaves_the_ledger_alone(
    engine: Engine, r: redis.Redis
) -> None:
    intent_order(engine, "c-1", "Momentum_EQ", "sig-1", SPY, "BUY", "100", state="FILLED")
    intent_order(engine, "c-2", "Vol_Short", "sig-2", OPT, "SELL", "2", state="FILLED")
    execute(engine, "c-1", SPY, "BOT", "100", "10.00", "1.00")
    execute(engine, "c-2", OPT, "SLD", "2", "1.20", "1.30", sec_type="OPT", mult="100")
    before = row(engine, SPY, "Momentum_EQ")
    now = T0 + timedelta(minutes=1)
    quote(r, SPY, "10.49", "10.51", now - timedelta(seconds=1))
    quote(r, OPT, "0.95", "1.05", now - timedelta(seconds=2))
    outcome = run_mark(stores(engine, r, now))
    assert outcome["marked"] == 2 and outcome["skipped_for_ledger"] == 0
    spy = row(engine, SPY, "Momentum_EQ")
    assert (spy.unrealized_pl, spy.mark_price, spy.state) == (D("50.00"), D("10.50"), "OPEN")
    assert spy.marked_at == now - timedelta(seconds=1)
    assert spy.risk_tags == []
    # The ledger's figures and version are untouched.
    assert (spy.version, spy.quantity, spy.avg_price, spy.realized_pl, spy.commissions) == (
        before.version,
        before.quantity,
        before.avg_price,
        before.realized_pl,
        before.commissions,
    )
    opt = row(engine, OPT, "Vol_Short")
    assert (opt.quantity, opt.unrealized_pl, opt.risk_tags) == (
        D(-2),
        D("40.00"),
        ["option", "short"],
    )
    position = r.hgetall(f"pl:position:{SPY}")
    assert (position["quantity"], position["unrealized"], position["net"]) == (
        "100",
        "50.00",
        "49.00",
    )
    strategy = r.hgetall("pl:strategy:Vol_Short")
    assert (strategy["realized"], strategy["unrealized"], strategy["fees"], strategy["net"]) == (
        "0.00",
        "40.00",
        "1.30",
        "38.70",
    )
    with engine.connect() as conn:
        snaps = conn.execute(
            sa.select(pnl_snapshots.c.scope, pnl_snapshots.c.scope_key, pnl_snapshots.c.net_pl)
        ).all()
    assert sorted((s.scope, s.scope_key, s.net_pl) for s in snaps) == [
        ("position", f"{SPY}:Momentum_EQ", D("49.00")),
        ("position", f"{OPT}:Vol_Short", D("38.70")),
        ("strategy", "Momentum_EQ", D("49.00")),
        ("strategy", "Vol_Short", D("38.70")),
    ]
    # The same tick again (a redelivered task) adds no second snapshot of the same time.
    run_mark(stores(engine, r, now))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(pnl_snapshots)).scalar() == 4


def test_a_stale_mark_is_not_used_the_last_fresh_one_stays_tagged(
    engine: Engine, r: redis.Redis
) -> None:
    intent_order(engine, "c-1", "Momentum_EQ", "sig-1", SPY, "BUY", "100", state="FILLED")
    execute(engine, "c-1", SPY, "BOT", "100", "10.00", "1.00")
    # Never marked, and the only quote is two minutes old: unrealized unknown, not zero.
    quote(r, SPY, "11.00", "11.00", T0)
    run_mark(stores(engine, r, T0 + timedelta(minutes=2)))
    spy = row(engine, SPY, "Momentum_EQ")
    assert (spy.unrealized_pl, spy.mark_price, spy.risk_tags) == (None, None, ["no_mark"])
    [view] = positions_view(engine.connect())
    assert (view["unrealized"], view["net"]) == (None, "-1.00")
    # A fresh quote marks it; then the quote goes stale: that mark stays, flagged.
    quote(r, SPY, "10.20", "10.20", T0 + timedelta(minutes=3))
    run_mark(stores(engine, r, T0 + timedelta(minutes=3, seconds=1)))
    run_mark(stores(engine, r, T0 + timedelta(minutes=10)))
    spy = row(engine, SPY, "Momentum_EQ")
    assert (spy.unrealized_pl, spy.mark_price, spy.risk_tags) == (
        D("20.00"),
        D("10.20"),
        ["stale_mark"],
    )
    assert spy.marked_at == T0 + timedelta(minutes=3)


def test_marks_never_overwrite_a_newer_ledger_write(engine: Engine, r: redis.Redis) -> None:
    intent_order(engine, "c-1", "Momentum_EQ", "sig-1", SPY, "BUY", "300")
    execute(engine, "c-1", SPY, "BOT", "100", "10.00", "1.00")
    seen = row(engine, SPY, "Momentum_EQ")
    execute(engine, "c-1", SPY, "BOT", "100", "12.00", "1.00")  # the ledger moves on
    with write_transaction(engine) as conn:
        assert not books.save_marks(
            conn, SPY, "Momentum_EQ", seen.version, {"unrealized_pl": D("50"), "state": "OPEN"}
        )
        with pytest.raises(ValueError, match="quantity"):
            books.save_marks(conn, SPY, "Momentum_EQ", seen.version + 1, {"quantity": D(1)})
    latest = row(engine, SPY, "Momentum_EQ").version
    now = T0 + timedelta(minutes=1)
    quote(r, SPY, "11.50", "11.50", now)
    run_mark(stores(engine, r, now))
    spy = row(engine, SPY, "Momentum_EQ")
    # Marked on the current 200 @ 11; still PARTIAL: the 300-share order is not all filled.
    assert (spy.unrealized_pl, spy.state, spy.version) == (D("100.00"), "PARTIAL", latest)


def test_state_follows_live_orders_and_hedges(engine: Engine, r: redis.Redis) -> None:
    intent_order(engine, "c-1", "Hedge", "sig-1", SPY, "BUY", "100", state="FILLED")
    intent_order(engine, "c-2", "Hedge", "sig-2", SPY, "SELL", "100")  # exit working
    intent_order(engine, "c-3", "Other", "sig-3", SPY, "BUY", "10", state="FILLED")
    execute(engine, "c-1", SPY, "BOT", "100", "10.00", "1.00")
    execute(engine, "c-3", SPY, "BOT", "10", "10.00", "1.00")
    now = T0 + timedelta(minutes=1)
    quote(r, SPY, "10", "10", now)
    run_mark(stores(engine, r, now))
    assert row(engine, SPY, "Hedge").state == "CLOSING"
    assert row(engine, SPY, "Other").state == "OPEN"
    execute(engine, "c-2", SPY, "SLD", "100", "10.10", "1.00")
    run_mark(stores(engine, r, now))
    assert row(engine, SPY, "Hedge").state == "CLOSED"


def test_differences_with_ib_over_ten_dollars_are_flagged_once_and_resolved(
    engine: Engine, r: redis.Redis
) -> None:
    intent_order(engine, "c-1", "Momentum_EQ", "sig-1", SPY, "BUY", "100", state="FILLED")
    execute(engine, "c-1", SPY, "BOT", "100", "10.00", "1.00")
    now = T0 + timedelta(minutes=1)
    quote(r, SPY, "10.50", "10.50", now)
    r.hset(f"ib:pnl:DU1:{SPY}", mapping={"unrealized": "35.00", "ts": now.isoformat()})
    for _ in range(2):
        assert run_mark(stores(engine, r, now))["ib_flagged"] == [SPY]
    with engine.connect() as conn:
        events = conn.execute(sa.select(risk_events)).all()
    assert [(e.kind, e.scope_key, e.details["difference"], e.resolved_at) for e in events] == [
        ("pnl_ib_mismatch", str(SPY), "15.00", None)
    ]
    r.hset(f"ib:pnl:DU1:{SPY}", mapping={"unrealized": "49.00", "ts": now.isoformat()})
    assert run_mark(stores(engine, r, now))["ib_flagged"] == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(risk_events.c.resolved_at)).scalar() == now


def test_views_per_position_strategy_and_signal(engine: Engine, r: redis.Redis) -> None:
    intent_order(engine, "a", "S1", "sig-a", SPY, "BUY", "100", state="FILLED")
    intent_order(engine, "b", "S1", "sig-b", SPY, "BUY", "100", state="FILLED")
    intent_order(engine, "x", "S1", "sig-x", SPY, "SELL", "150", state="FILLED")
    execute(engine, "a", SPY, "BOT", "100", "10.00", "1.00", at=1)
    execute(engine, "b", SPY, "BOT", "100", "12.00", "1.00", at=2)
    execute(engine, "x", SPY, "SLD", "150", "13.00", "1.50", at=3)
    with write_transaction(engine) as conn:
        conn.execute(
            financing_charges.insert().values(
                charge_key="borrow:1",
                kind="borrow",
                con_id=SPY,
                strategy_id="S1",
                amount=D("0.25"),
                currency="USD",
                as_of=T0,
                recorded_at=T0,
            )
        )
    now = T0 + timedelta(minutes=1)
    quote(r, SPY, "14.00", "14.00", now)
    run_mark(stores(engine, r, now))
    with engine.connect() as conn:
        [pos] = positions_view(conn)
        [strategy] = pnl_view(conn, GroupBy.STRATEGY)
        signals = {s["signal_id"]: s for s in pnl_view(conn, GroupBy.SIGNAL)}
    assert {
        k: pos[k]
        for k in (
            "conid",
            "strategy",
            "quantity",
            "avg_cost",
            "realized",
            "unrealized",
            "fees",
            "net",
        )
    } == {
        "conid": SPY,
        "strategy": "S1",
        "quantity": "50",
        "avg_cost": "11.00",
        "realized": "300.00",
        "unrealized": "150.00",
        "fees": "3.50",
        "net": "446.25",
    }
    assert (strategy["realized"], strategy["net"]) == ("300.00", "446.25")
    assert {
        k: (v["realized"], v["unrealized"], v["fees"], v["net"]) for k, v in signals.items()
    } == {
        "sig-a": ("200.00", "0.00", "1.00", "199.00"),
        "sig-b": ("100.00", "150.00", "1.00", "248.75"),
        "sig-x": ("0.00", "0.00", "1.50", "-1.50"),
    }


def test_sums_of_money_stay_exact(engine: Engine) -> None:
    """Totals a float sum would get wrong (0.1 + 0.2, a cent beside 2**53): SQLite keeps money
    as text, so a SUM() there would go through floats; the views add in Decimal."""
    with write_transaction(engine) as conn:
        for con_id, realized in ((1, "0.10"), (2, "0.20"), (3, "9007199254740993.01"), (4, "0.01")):
            conn.execute(
                positions_current.insert().values(
                    con_id=con_id,
                    strategy_id="S",
                    quantity=D(0),
                    realized_pl=D(realized),
                    commissions=D("0.10"),
                    updated_at=T0,
                    version=1,
                )
            )
    with engine.connect() as conn:
        [total] = pnl_view(conn, GroupBy.STRATEGY)
    assert total["realized"] == "9007199254740993.32"
    assert total["fees"] == "0.40"
    assert total["net"] == "9007199254740992.92"


def test_epm_positions_and_pnl_json_as_an_operator_runs_them(
    sqlite_url: str, tmp_path: Any
) -> None:
    import json
    import os
    import subprocess
    import sys

    from store.db import make_engine
    from store.migrate import upgrade

    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    intent_order(engine, "a", "S1", "sig-a", SPY, "BUY", "100", state="FILLED")
    execute(engine, "a", SPY, "BOT", "100", "10.00", "1.00")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_DATABASE_URL": sqlite_url,
        "EPM_DATA_DIR": str(tmp_path / "cli-data"),
    }

    def run(*args: str) -> Any:
        proc = subprocess.run(
            [sys.executable, "-m", "epm", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    [pos] = run("positions", "--json")
    assert {
        k: pos[k]
        for k in (
            "conid",
            "strategy",
            "quantity",
            "avg_cost",
            "realized",
            "unrealized",
            "fees",
            "net",
        )
    } == {
        "conid": SPY,
        "strategy": "S1",
        "quantity": "100",
        "avg_cost": "10.00",
        "realized": "0.00",
        "unrealized": None,
        "fees": "1.00",
        "net": "-1.00",
    }
    [strategy] = run("pnl", "--by", "strategy", "--json")
    assert (strategy["strategy"], strategy["net"], strategy["unmarked"]) == ("S1", "-1.00", 1)
    [signal] = run("pnl", "--by", "signal", "--json")
    assert (signal["signal_id"], signal["fees"]) == ("sig-a", "1.00")
    bad = subprocess.run(
        [sys.executable, "-m", "epm", "pnl", "--by", "day"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--by must be" in bad.stderr
