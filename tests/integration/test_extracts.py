"""The extracts (`services.extracts`, `epm export`) on real stores: what a report reads of the
day — orders, fills, positions, P&L by strategy and signal — exact to the last digit in CSV and
Parquet alike, the same bytes for the same ledger (on either dialect), a day's filter that keeps
other days out, and the command as an operator runs it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy.engine import Engine

from services.books.views import GroupBy, pnl_view
from services.extracts import ExtractError, write_extracts, write_extracts_from
from services.ledger import process_callback
from store.db import make_engine, write_transaction
from store.migrate import upgrade
from store.orders import create_order
from store.schema import financing_charges, intents

T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # 10:00 ET on Thursday 3 December
SPY, OPT = 756733, 900001


def intent_order(
    engine: Engine, coid: str, strategy: str, signal: str, con_id: int, action: str, qty: str
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
                "quantity": Decimal(qty),
                "state": "FILLED",
            },
            T0,
        )


def execute(
    engine: Engine,
    n: int,
    coid: str,
    con_id: int,
    side: str,
    shares: str,
    price: str,
    fee: str,
    *,
    at: datetime,
    sec_type: str = "STK",
    mult: str | None = None,
) -> str:
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
        "time": at.isoformat(),
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


def session(engine: Engine) -> None:
    """Two signals in one stock position (one closes part of the other's lot, FIFO), a short
    option, sub-penny prices, a fee with four decimals, a fill of the day before, financing."""
    intent_order(engine, "a", "Momentum_EQ", "sig-a", SPY, "BUY", "100")
    intent_order(engine, "b", "Momentum_EQ", "sig-b", SPY, "SELL", "40")
    intent_order(engine, "c", "Vol_Short", "sig-c", OPT, "SELL", "2")
    execute(engine, 1, "a", SPY, "BOT", "60", "10.0125", "0.3511", at=T0 - timedelta(days=1))
    execute(engine, 2, "a", SPY, "BOT", "40", "10.02", "0.35", at=T0 + timedelta(minutes=1))
    execute(engine, 3, "b", SPY, "SLD", "40", "10.5", "0.35", at=T0 + timedelta(minutes=2))
    execute(
        engine,
        4,
        "c",
        OPT,
        "SLD",
        "2",
        "1.20",
        "1.30",
        at=T0 + timedelta(minutes=3),
        sec_type="OPT",
        mult="100",
    )
    with write_transaction(engine) as conn:
        conn.execute(
            financing_charges.insert().values(
                charge_key="borrow:SPY:2026-12-03",
                kind="borrow",
                con_id=SPY,
                strategy_id="Momentum_EQ",
                amount=Decimal("0.07"),
                currency="USD",
                as_of=T0,
                recorded_at=T0,
            )
        )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_extracts_hold_every_figure_exactly_in_csv_and_parquet(
    engine: Engine, tmp_path: Path
) -> None:
    session(engine)
    url = engine.url.render_as_string(hide_password=False)
    paths = write_extracts(url, tmp_path / "out")
    assert [p.name for p in paths] == [
        "orders.csv",
        "orders.parquet",
        "fills.csv",
        "fills.parquet",
        "positions.csv",
        "positions.parquet",
        "pnl.csv",
        "pnl.parquet",
    ]
    by_name = {p.name: p for p in paths}
    fills = read_csv(by_name["fills.csv"])
    assert [(f["side"], f["shares"], f["price"], f["commission"]) for f in fills] == [
        ("BUY", "60", "10.0125", "0.3511"),
        ("BUY", "40", "10.02", "0.35"),
        ("SELL", "40", "10.50", "0.35"),
        ("SELL", "2", "1.20", "1.30"),
    ]
    assert [f["signal_id"] for f in fills] == ["sig-a", "sig-a", "sig-b", "sig-c"]
    assert fills[0]["executed_at"] == (T0 - timedelta(days=1)).isoformat()
    # Parquet holds the same rows, decimals as the same exact strings, ints as int64.
    table = pq.read_table(by_name["fills.parquet"])
    assert table.schema.field("price").type == "string"
    assert table.schema.field("con_id").type == "int64"
    as_text = [
        {
            k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in row.items()
        }
        for row in table.to_pylist()
    ]
    assert as_text == fills
    for name in ("orders", "positions", "pnl"):
        rows = pq.read_table(by_name[f"{name}.parquet"]).to_pylist()
        assert len(rows) == len(read_csv(by_name[f"{name}.csv"])) > 0
    positions = {(p["conid"], p["strategy"]): p for p in read_csv(by_name["positions.csv"])}
    spy = positions[(str(SPY), "Momentum_EQ")]
    # Average cost of 60 @ 10.0125 and 40 @ 10.02 is 10.0155; 40 sold at 10.50 realize 19.38.
    assert (spy["quantity"], spy["avg_cost"], spy["realized"], spy["fees"], spy["financing"]) == (
        "60",
        "10.0155",
        "19.38",
        "1.0511",
        "0.07",
    )
    # P&L by strategy and signal equals what `epm pnl --by signal` shows, row for row.
    pnl = read_csv(by_name["pnl.csv"])
    with engine.connect() as conn:
        view = pnl_view(conn, GroupBy.SIGNAL)
    assert sorted(
        (p["strategy"], p["signal_id"], p["realized_pl"], p["fees"], p["net_pl"]) for p in pnl
    ) == sorted((v["strategy"], v["signal_id"], v["realized"], v["fees"], v["net"]) for v in view)
    # FIFO: sig-b's sale closed sig-a's lot, so sig-a holds the realized gain.
    sig_a = next(p for p in pnl if p["signal_id"] == "sig-a")
    assert (sig_a["realized_pl"], sig_a["fees"]) == ("19.38", "0.7011")


def test_the_same_ledger_gives_the_same_bytes_on_both_dialects(
    sqlite_url: str, pg_url: str, tmp_path: Path
) -> None:
    from tests.integration.conftest import wipe

    outputs: list[dict[str, bytes]] = []
    for i, url in enumerate((sqlite_url, pg_url, sqlite_url)):
        upgrade(url)
        eng = make_engine(url)
        wipe(eng)
        session(eng)
        paths = write_extracts(url, tmp_path / f"run-{i}")
        outputs.append({p.name: p.read_bytes() for p in paths})
        wipe(eng)
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_day_keeps_the_other_days_fills_and_orders_out(engine: Engine, tmp_path: Path) -> None:
    session(engine)
    with engine.connect() as conn:
        paths = write_extracts_from(conn, tmp_path, day=date(2026, 12, 3), formats=("csv",))
        before = write_extracts_from(conn, tmp_path, day=date(2026, 12, 2), formats=("csv",))
    assert [p.name for p in paths] == [
        "orders-2026-12-03.csv",
        "fills-2026-12-03.csv",
        "positions-2026-12-03.csv",
        "pnl-2026-12-03.csv",
    ]
    assert [f["execution_id"][-11:] for f in read_csv(paths[1])] == [
        "00000002.01.01"[-11:],
        "00000003.01.01"[-11:],
        "00000004.01.01"[-11:],
    ]
    assert len(read_csv(before[1])) == 1
    # The orders were created on the 3rd: none on the 2nd.
    assert len(read_csv(paths[0])) == 3 and read_csv(before[0]) == []
    with pytest.raises(ExtractError, match="formats"), engine.connect() as conn:
        write_extracts_from(conn, tmp_path, formats=("xlsx",))


def test_epm_export_as_an_operator_runs_it(sqlite_url: str, tmp_path: Path) -> None:
    upgrade(sqlite_url)
    session(make_engine(sqlite_url))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EPM_")},
        "EPM_DATABASE_URL": sqlite_url,
        "EPM_DATA_DIR": str(tmp_path / "cli-data"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "epm", "export", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = run("--day", "2026-12-03", "--format", "parquet")
    assert done.returncode == 0, done.stderr[-2000:]
    printed = [Path(line) for line in done.stdout.split()]
    assert [p.name for p in printed] == [
        "orders-2026-12-03.parquet",
        "fills-2026-12-03.parquet",
        "positions-2026-12-03.parquet",
        "pnl-2026-12-03.parquet",
    ]
    assert all(p.parent == tmp_path / "cli-data" / "extracts" and p.exists() for p in printed)
    bad = run("--day", "3 Dec")
    assert bad.returncode == 2 and "--day must be a date" in bad.stderr
    bad_format = run("--format", "xlsx")
    assert bad_format.returncode == 2 and "formats must be among" in bad_format.stderr
