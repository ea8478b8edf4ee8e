"""Use case: net the book's greeks per underlying and publish them (blueprint §8.4,
`docs/books.md`); and the read the risk engine makes of them (`read_net`).

One read of the positions (`store.netting`) and of the options' `md:{conid}` hashes → one core
call (`models.netting.net_by_underlying`) → one Redis pipeline: `risk:net:{underlying}` per
underlying held, with its `ts`; an underlying no longer held loses its hash (the index set
`risk:net:underlyings` says which were written). Nothing is stored in the database: the figures
are a function of positions and live greeks, recomputed every minute.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import redis
from sqlalchemy.engine import Engine

from models.netting import (
    OPTION_TYPES,
    Greeks,
    UnderlyingNet,
    greeks_from_fields,
    net_by_underlying,
)
from models.recon import decimal_text
from store import netting as netting_repo

NET_KEY = "risk:net:{underlying}"
NET_INDEX = "risk:net:underlyings"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _greeks(client: redis.Redis, con_ids: list[int]) -> dict[int, Greeks]:
    pipe = client.pipeline(transaction=False)
    for con_id in con_ids:
        pipe.hgetall(f"md:{con_id}")
    out: dict[int, Greeks] = {}
    for con_id, raw in zip(con_ids, pipe.execute(), strict=True):
        if raw:
            out[con_id] = greeks_from_fields({_text(k): _text(v) for k, v in raw.items()})
    return out


def _fields(net: UnderlyingNet, now: datetime) -> dict[Any, str]:
    return {
        "underlying": net.underlying,
        "net_delta": decimal_text(net.net_delta),
        "net_gamma": decimal_text(net.net_gamma),
        "net_vega": decimal_text(net.net_vega),
        "net_theta": decimal_text(net.net_theta),
        "positions": str(net.positions),
        "complete": "1" if net.complete else "0",
        "missing_greeks": json.dumps(net.missing_greeks),
        "stale_greeks": json.dumps(net.stale_greeks),
        "delta_by_strategy": json.dumps(
            {k: decimal_text(v) for k, v in sorted(net.by_strategy.items())}
        ),
        "ts": now.isoformat(),
    }


def net_tick(engine: Engine, client: redis.Redis, now: datetime) -> dict[str, Any]:
    """Compute and publish the netting of every underlying held; returns what it wrote."""
    with engine.connect() as conn:
        held = netting_repo.held_positions(conn)
    options = sorted({p.con_id for p in held if p.sec_type in OPTION_TYPES})
    nets = net_by_underlying(held, _greeks(client, options), now)
    previous = {_text(u) for u in client.smembers(NET_INDEX)}
    pipe = client.pipeline(transaction=True)
    for underlying, net in nets.items():
        key = NET_KEY.format(underlying=underlying)
        pipe.delete(key)
        pipe.hset(key, mapping=_fields(net, now))
        pipe.sadd(NET_INDEX, underlying)
    for gone in sorted(previous - set(nets)):
        pipe.delete(NET_KEY.format(underlying=gone))
        pipe.srem(NET_INDEX, gone)
    pipe.execute()
    return {
        "underlyings": sorted(nets),
        "incomplete": sorted(u for u, n in nets.items() if not n.complete),
        "removed": sorted(previous - set(nets)),
    }


@dataclass(frozen=True, slots=True)
class NetReading:
    """One underlying's published netting, as the risk engine reads it."""

    underlying: str
    net_delta: Decimal
    net_gamma: Decimal
    net_vega: Decimal
    net_theta: Decimal
    positions: int
    missing_greeks: tuple[str, ...]
    stale_greeks: tuple[str, ...]
    ts: datetime

    @property
    def complete(self) -> bool:
        return not self.missing_greeks and not self.stale_greeks

    def age(self, now: datetime) -> float:
        return (now - self.ts).total_seconds()


def _parse(underlying: str, fields: Mapping[str, str]) -> NetReading | None:
    try:
        ts = datetime.fromisoformat(fields["ts"])
        return NetReading(
            underlying=underlying,
            net_delta=Decimal(fields["net_delta"]),
            net_gamma=Decimal(fields["net_gamma"]),
            net_vega=Decimal(fields["net_vega"]),
            net_theta=Decimal(fields["net_theta"]),
            positions=int(fields["positions"]),
            missing_greeks=tuple(json.loads(fields.get("missing_greeks", "[]"))),
            stale_greeks=tuple(json.loads(fields.get("stale_greeks", "[]"))),
            ts=ts,
        )
    except (KeyError, ValueError, InvalidOperation, TypeError):
        return None


def read_net(client: redis.Redis, underlying: str) -> NetReading | None:
    """The last published netting of `underlying` (None when none or unreadable: no position
    in it at the last tick, or the tick has not run). Callers judge freshness by `ts`."""
    raw = client.hgetall(NET_KEY.format(underlying=underlying))
    if not raw:
        return None
    return _parse(underlying, {_text(k): _text(v) for k, v in raw.items()})


def read_all_nets(client: redis.Redis) -> dict[str, NetReading]:
    """Every underlying's last published netting."""
    out: dict[str, NetReading] = {}
    for member in sorted(_text(u) for u in client.smembers(NET_INDEX)):
        reading = read_net(client, member)
        if reading is not None:
            out[member] = reading
    return out
