"""Where a replay's market events come from (the shell side of `epm replay`, `docs/replay.md`):
a user's CSV or Parquet file of quotes, trades or bars, or a simulator scenario (`tws_sim`
YAML) stepped in this process on its own clock — a recorded simulator session is its scenario,
seed and day, which reproduce it exactly (`--record` keeps one as Parquet).
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from epm.calendar import ET
from models.replay.events import (
    DataError,
    Kind,
    MarketEvent,
    event_from_row,
    in_time_order,
    kind_of,
)

DATA_SUFFIXES = (".csv", ".parquet")
SCENARIO_SUFFIXES = (".yaml", ".yml")


@dataclass
class Source:
    events: list[MarketEvent]
    contracts: list[dict[str, Any]]


def stock_contract(
    symbol: str, con_id: int | None = None, min_tick: str = "0.01"
) -> dict[str, Any]:
    """A stock's contract terms as the ledger's cache keeps them; a symbol without a con_id in
    the data gets a stable one from its name (CRC-32, above IB's range of real stock ids)."""
    ident = con_id if con_id is not None else 2_000_000_000 + zlib.crc32(symbol.encode()) % 10**8
    return {
        "con_id": ident,
        "symbol": symbol,
        "sec_type": "STK",
        "exchange": "SMART",
        "currency": "USD",
        "min_tick": min_tick,
        "multiplier": "1",
    }


def _rows(path: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
    if path.suffix == ".csv":
        handle = path.open(newline="")
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), iter(reader)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return list(table.column_names), iter(table.to_pylist())


def load_data(path: Path) -> Source:
    """A CSV or Parquet file of market data as time-ordered events with their contracts."""
    columns, rows = _rows(path)
    kind = kind_of(columns)
    events: list[MarketEvent] = []
    con_ids: dict[str, int | None] = {}
    for n, row in enumerate(rows, start=2 if path.suffix == ".csv" else 1):
        event = event_from_row(row, kind, n)
        events.append(event)
        raw = row.get("con_id")
        if event.symbol not in con_ids or con_ids[event.symbol] is None:
            try:
                con_ids[event.symbol] = int(raw) if raw not in (None, "") else None
            except (TypeError, ValueError):
                raise DataError(f"row {n}: con_id is not an integer: {raw!r}") from None
    if not events:
        raise DataError(f"{path} holds no rows")
    contracts = [stock_contract(s, con_ids[s]) for s in sorted(con_ids)]
    return Source(in_time_order(events), contracts)


def simulate(
    scenario_path: Path | None, *, day: date, seed: int, seconds: int, symbols: int = 10
) -> Source:
    """`seconds` of 1 s quotes of the scenario's first `symbols` stocks from 09:30 ET on `day`,
    stepped through the simulator's market in this process (no server, no socket)."""
    from tws_sim.market import Catalog, Market, Scenario

    scenario = Scenario.load(scenario_path) if scenario_path is not None else Scenario.default()
    catalog = Catalog.build(day, scenario)
    start = datetime.combine(day, time(9, 30), tzinfo=ET)
    market = Market(catalog, scenario, seed, start)
    stocks = [i for i in catalog.underlyings() if str(i.sec_type) in ("STK", "SecType.STK")]
    stocks = sorted(stocks, key=lambda i: i.con_id)[:symbols]
    for inst in stocks:
        market.watch(inst.con_id)
    events: list[MarketEvent] = []
    volumes: dict[int, Decimal] = {}
    for s in range(1, seconds + 1):
        now = start + timedelta(seconds=s)
        market.advance(now)
        for inst in stocks:
            q = market.quote(inst.con_id)
            before = volumes.get(inst.con_id)
            volumes[inst.con_id] = q.volume
            events.append(
                MarketEvent(
                    ts=now.astimezone(UTC),
                    symbol=inst.symbol,
                    kind=Kind.QUOTE,
                    bid=q.bid,
                    ask=q.ask,
                    bid_size=q.bid_size,
                    ask_size=q.ask_size,
                    last=q.last,
                    volume=None if before is None else max(q.volume - before, Decimal(0)),
                    halted=int(q.halted) != 0,
                )
            )
    contracts = [stock_contract(i.symbol, i.con_id, format(i.min_tick, "f")) for i in stocks]
    return Source(events, contracts)


def record(source: Source, path: Path) -> Path:
    """Keep a source's quotes as a Parquet (or CSV) file `epm replay` reads back exactly."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    con_of = {c["symbol"]: c["con_id"] for c in source.contracts}
    names = (
        "ts",
        "symbol",
        "con_id",
        "bid",
        "ask",
        "bid_size",
        "ask_size",
        "last",
        "volume",
        "halted",
    )

    def cell(event: MarketEvent, name: str) -> str:
        if name == "ts":
            return event.ts.isoformat()
        if name == "symbol":
            return event.symbol
        if name == "con_id":
            return str(con_of[event.symbol])
        if name == "halted":
            return "1" if event.halted else "0"
        value = getattr(event, name)
        return "" if value is None else format(value, "f")

    columns = {n: [cell(e, n) for e in source.events] for n in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(names)
            writer.writerows(zip(*columns.values(), strict=True))
    else:
        pq.write_table(pa.table(columns), path, compression="zstd")
    return path
