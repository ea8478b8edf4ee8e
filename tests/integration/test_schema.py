"""The migration chain on PostgreSQL and SQLite: upgrade from empty, no drift, exact round trips."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from store import schema
from store.db import dispose_engines, make_engine, write_transaction
from store.migrate import current, downgrade, head_revision, upgrade
from store.types import MoneyValueError, NaiveDatetimeError
from tests.services import postgres_database


@pytest.fixture(scope="module")
def schema_pg_url() -> Iterator[str]:
    """A PostgreSQL database of this module's own: its tests migrate it up and down."""
    with postgres_database() as url:
        yield url
    dispose_engines()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """An empty database on each dialect, migrated to head; PostgreSQL is emptied and migrated
    back down afterwards, which exercises every downgrade."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("schema_pg_url")
    upgrade(url)
    _wipe(url)
    yield url
    if request.param == "postgresql":
        _wipe(url)
        downgrade(url, "base")
    dispose_engines()


def _wipe(url: str) -> None:
    with write_transaction(make_engine(url)) as conn:
        for table in reversed(schema.metadata.sorted_tables):
            conn.execute(table.delete())


def _now() -> datetime:
    return datetime(2026, 11, 26, 14, 30, 0, 123456, tzinfo=UTC)


def _intent_row(signal_id: str, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "signal_id": signal_id,
        "strategy": "Momentum_EQ",
        "instrument": "AAPL",
        "side": "BUY",
        "quantity": Decimal("0.1234567891"),
        "urgency": "Normal",
        "time_in_force": "DAY",
        "risk_tags": ["earnings"],
        "payload": {"signal_id": signal_id, "quantity": Decimal("10.50")},
        "status": "VALIDATED",
        "received_at": _now(),
        "updated_at": _now(),
    }
    row.update(overrides)
    return row


def test_migrations_upgrade_from_empty_reaches_head(db_url: str) -> None:
    assert current(db_url) == head_revision()
    tables = set(sa.inspect(make_engine(db_url)).get_table_names())
    assert set(schema.metadata.tables) <= tables


def test_migrated_schema_matches_metadata_no_autogenerate_diff(db_url: str) -> None:
    with make_engine(db_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, schema.metadata)
    assert diff == []


def test_upgrade_twice_is_a_noop(db_url: str) -> None:
    upgrade(db_url)
    assert current(db_url) == head_revision()


def test_concurrent_upgrades_run_the_chain_once(sqlite_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(sqlite_url)
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current(sqlite_url) == head_revision()
    dispose_engines()


def test_money_round_trip_keeps_every_digit(db_url: str) -> None:
    engine = make_engine(db_url)
    values = [Decimal("0.1234567891"), Decimal("123456789012.0000000001"), Decimal("1.50")]
    with write_transaction(engine) as conn:
        for i, value in enumerate(values):
            conn.execute(schema.intents.insert().values(_intent_row(f"s{i}", quantity=value)))
    with engine.connect() as conn:
        got = conn.execute(sa.select(schema.intents.c.quantity).order_by(schema.intents.c.id))
        stored = [row.quantity for row in got]
    assert stored == values
    assert all(type(v) is Decimal for v in stored)
    # The scale survives too, on both dialects: replay output is byte-identical.
    assert [str(v) for v in stored] == [str(v) for v in values]


def test_json_column_stores_decimal_as_string(db_url: str) -> None:
    engine = make_engine(db_url)
    with write_transaction(engine) as conn:
        conn.execute(schema.intents.insert().values(_intent_row("json")))
    with engine.connect() as conn:
        payload = conn.execute(sa.select(schema.intents.c.payload)).scalar_one()
    assert payload == {"signal_id": "json", "quantity": "10.50"}


@pytest.mark.parametrize("bad", [1.5, float("nan"), Decimal("NaN"), Decimal("Infinity"), "abc"])
def test_money_rejects_float_and_non_finite(db_url: str, bad: object) -> None:
    engine = make_engine(db_url)
    with pytest.raises(sa.exc.StatementError) as info, write_transaction(engine) as conn:
        conn.execute(schema.intents.insert().values(_intent_row("bad", quantity=bad)))
    assert isinstance(info.value.orig, MoneyValueError)


def test_aware_timestamps_round_trip_as_utc(db_url: str) -> None:
    engine = make_engine(db_url)
    eastern = timezone(timedelta(hours=-5))
    received = datetime(2026, 11, 26, 9, 30, 0, 1, tzinfo=eastern)
    with write_transaction(engine) as conn:
        conn.execute(
            schema.intents.insert().values(
                _intent_row("ts", received_at=received, good_till=_now())
            )
        )
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema.intents)).one()
    assert row.received_at == received
    assert row.received_at.utcoffset() == timedelta(0)
    assert row.received_at.hour == 14
    assert row.good_till == _now()


def test_timestamps_compare_in_sql_by_instant(db_url: str) -> None:
    engine = make_engine(db_url)
    base = _now()
    with write_transaction(engine) as conn:
        for i in range(3):
            conn.execute(
                schema.intents.insert().values(
                    _intent_row(f"t{i}", received_at=base + timedelta(seconds=i))
                )
            )
    # The bound parameter is in another zone; SQLite compares text, so it must be normalized.
    cutoff = (base + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=9)))
    with engine.connect() as conn:
        ids = conn.execute(
            sa.select(schema.intents.c.signal_id).where(schema.intents.c.received_at >= cutoff)
        ).scalars()
        assert sorted(ids) == ["t1", "t2"]


def test_naive_timestamp_is_rejected(db_url: str) -> None:
    engine = make_engine(db_url)
    with pytest.raises(sa.exc.StatementError) as info, write_transaction(engine) as conn:
        conn.execute(
            schema.intents.insert().values(_intent_row("naive", received_at=datetime(2026, 1, 1)))
        )
    assert isinstance(info.value.orig, NaiveDatetimeError)


def test_signal_id_unique_rejects_second_intent(db_url: str) -> None:
    engine = make_engine(db_url)
    with write_transaction(engine) as conn:
        conn.execute(schema.intents.insert().values(_intent_row("dup")))
    with pytest.raises(sa.exc.IntegrityError), write_transaction(engine) as conn:
        conn.execute(schema.intents.insert().values(_intent_row("dup")))


def _order_row(client_order_id: str, ib_order_id: int | None, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "client_order_id": client_order_id,
        "client_id": 1,
        "ib_order_id": ib_order_id,
        "action": "BUY",
        "quantity": Decimal("100"),
        "state": "PLACED",
        "filled_qty": Decimal("0"),
        "created_at": _now(),
        "updated_at": _now(),
        "version": 1,
    }
    row.update(kw)
    return row


def test_orders_unique_per_client_id_and_ib_order_id(db_url: str) -> None:
    engine = make_engine(db_url)
    with write_transaction(engine) as conn:
        conn.execute(schema.execution_orders.insert().values(_order_row("a", 7)))
        # Same IB id under another client id is a different order.
        conn.execute(schema.execution_orders.insert().values(_order_row("b", 7, client_id=2)))
        # Orders without an IB id yet (scheduled slices) do not collide.
        conn.execute(schema.execution_orders.insert().values(_order_row("c", None)))
        conn.execute(schema.execution_orders.insert().values(_order_row("d", None)))
    with pytest.raises(sa.exc.IntegrityError), write_transaction(engine) as conn:
        conn.execute(schema.execution_orders.insert().values(_order_row("e", 7)))


def test_fill_execution_id_unique(db_url: str) -> None:
    engine = make_engine(db_url)
    with write_transaction(engine) as conn:
        order_id = conn.execute(
            schema.execution_orders.insert().values(_order_row("f", 9))
        ).inserted_primary_key[0]
    fill = {
        "execution_id": "0000e0d5.6581b1f5.01.01",
        "exec_base": "0000e0d5.6581b1f5.01",
        "exec_seq": 1,
        "order_id": order_id,
        "side": "BUY",
        "shares": Decimal("100"),
        "price": Decimal("187.1234"),
        "executed_at": _now(),
        "received_at": _now(),
    }
    with write_transaction(engine) as conn:
        conn.execute(schema.fills.insert().values(fill))
    with pytest.raises(sa.exc.IntegrityError), write_transaction(engine) as conn:
        conn.execute(schema.fills.insert().values(fill))


def test_foreign_keys_enforced(db_url: str) -> None:
    engine = make_engine(db_url)
    with pytest.raises(sa.exc.IntegrityError), write_transaction(engine) as conn:
        conn.execute(schema.execution_orders.insert().values(_order_row("g", 1, intent_id=999)))


def test_sqlite_write_transaction_takes_the_write_lock_up_front(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with write_transaction(engine):
        other = sa.create_engine(sqlite_url, connect_args={"timeout": 0.05})
        try:
            # A second writer cannot even begin while the first holds BEGIN IMMEDIATE.
            with pytest.raises(sa.exc.OperationalError, match="locked"), other.connect() as c:
                c.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            other.dispose()
    dispose_engines()


def test_sqlite_engine_uses_wal(sqlite_url: str) -> None:
    with make_engine(sqlite_url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    dispose_engines()


def test_make_engine_is_cached_per_url(sqlite_url: str) -> None:
    assert make_engine(sqlite_url) is make_engine(sqlite_url)
    dispose_engines()


def test_cli_db_upgrade_and_current(sqlite_url: str) -> None:
    from epm.cli import _load_commands, app

    _load_commands()
    runner = CliRunner()
    before = runner.invoke(app, ["db", "current", "--url", sqlite_url])
    assert before.exit_code == 1
    assert "empty" in before.output
    result = runner.invoke(app, ["db", "upgrade", "--url", sqlite_url])
    assert result.exit_code == 0, result.output
    assert head_revision() in result.output
    after = runner.invoke(app, ["db", "current", "--url", sqlite_url])
    assert after.exit_code == 0
    assert "up to date" in after.output
    dispose_engines()


def test_epm_db_upgrade_runs_outside_the_checkout_on_the_embedded_default(
    tmp_path: Path,
) -> None:
    # A real `epm` process started elsewhere: finds the packaged scripts and the default ledger.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
    env["EPM_DATA_DIR"] = str(tmp_path / "data")
    epm = [sys.executable, "-m", "epm", "db"]
    upgraded = subprocess.run(
        [*epm, "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    status = subprocess.run(
        [*epm, "current"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert status.returncode == 0, status.stderr[-2000:]
    assert f"{head_revision()} (up to date)" in status.stdout
    assert (tmp_path / "data" / "ledger.db").is_file()
