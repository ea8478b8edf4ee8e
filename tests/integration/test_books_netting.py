"""Netting on real stores (SQLite and PostgreSQL, real Redis): the minute tick nets the ledger's
positions with the options' live greeks into `risk:net:{underlying}`, names positions without
greeks, drops an underlying no longer held; `read_net` is what the risk engine reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
from sqlalchemy.engine import Engine

from epm.settings import get_settings
from services.books.netting import read_all_nets, read_net
from tasks.app import Stores
from tasks.pnl import run_netting
from tests.integration.test_books_expiry import contract, execute, option_contract

D = Decimal
SPY, QQQ = 756733, 320227571
C450, P460 = 900450, 900460
NOW = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def greeks(r: redis.Redis, con_id: int, delta: str, gamma: str, vega: str, theta: str) -> None:
    r.hset(
        f"md:{con_id}",
        mapping={
            "model_delta": delta,
            "model_gamma": gamma,
            "model_vega": vega,
            "model_theta": theta,
            "ts": (NOW - timedelta(seconds=3)).isoformat(),
        },
    )


def test_netting_per_underlying_published_and_read_by_risk(engine: Engine, r: redis.Redis) -> None:
    contract(engine, SPY, "STK")
    option_contract(engine, C450, "C", "450", "20261218")
    option_contract(engine, P460, "P", "460", "20261218")
    execute(engine, "Momo", SPY, "SELL", "150", "455", "1.00")
    execute(engine, "Momo", C450, "BUY", "3", "7.10", "1.95")
    execute(engine, "Hedge", P460, "SELL", "2", "6.40", "1.30")
    greeks(r, C450, "0.55", "0.021", "0.18", "-0.09")
    greeks(r, P460, "-0.30", "0.015", "0.12", "-0.05")

    out = run_netting(Stores(get_settings(), engine, r, NOW))
    assert out == {"underlyings": ["SPY"], "incomplete": [], "removed": []}
    raw = r.hgetall("risk:net:SPY")
    assert raw["net_delta"] == "75" and raw["ts"] == NOW.isoformat()
    assert json.loads(raw["delta_by_strategy"]) == {"Hedge": "60", "Momo": "15"}
    net = read_net(r, "SPY")
    assert net is not None and net.complete and net.positions == 3
    assert (net.net_delta, net.net_gamma, net.net_vega, net.net_theta) == (
        D(75),
        D("3.3"),
        D(30),
        D(-17),
    )

    # An option whose greeks are gone: named, and its delta not in the sum.
    r.delete(f"md:{P460}")
    out = run_netting(Stores(get_settings(), engine, r, NOW + timedelta(minutes=1)))
    assert out["incomplete"] == ["SPY"]
    net = read_net(r, "SPY")
    assert net is not None and not net.complete
    assert net.missing_greeks == (f"{P460}:Hedge",) and net.net_delta == D(15)

    # Everything in SPY closed: its hash goes; QQQ appears.
    contract(engine, QQQ, "STK", symbol="QQQ")
    execute(engine, "Momo", SPY, "BUY", "150", "454", "1.00")
    execute(engine, "Momo", C450, "SELL", "3", "7.30", "1.95")
    execute(engine, "Hedge", P460, "BUY", "2", "6.00", "1.30")
    execute(engine, "Momo", QQQ, "BUY", "10", "500", "1.00")
    out = run_netting(Stores(get_settings(), engine, r, NOW + timedelta(minutes=2)))
    assert out == {"underlyings": ["QQQ"], "incomplete": [], "removed": ["SPY"]}
    assert read_net(r, "SPY") is None and not r.exists("risk:net:SPY")
    assert list(read_all_nets(r)) == ["QQQ"] and read_all_nets(r)["QQQ"].net_delta == D(10)
