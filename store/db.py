"""Engines for the ledger database, one per URL per process, and the write-transaction helper.

SQLite (the embedded default) is opened in WAL mode with foreign keys on and a busy timeout, and
with pysqlite's own transaction handling switched off so that epm decides how a transaction
begins: `write_transaction(engine)` starts with `BEGIN IMMEDIATE`, which takes SQLite's write
lock up front. Without it two workers can both read under a deferred `BEGIN`, then both try to
write and one fails with "database is locked" (no busy wait applies to a lock upgrade). On
PostgreSQL `write_transaction` is an ordinary READ COMMITTED transaction; row locks
(`SELECT ... FOR UPDATE`) or advisory locks serialize writers there.

JSON columns are serialized with `json_dumps`, which writes `Decimal` as a string and datetimes as
ISO-8601, so a payload holding money never turns into a float.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

# Seconds a SQLite writer waits for the lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30
_BEGIN_IMMEDIATE = "epm_begin_immediate"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_dumps(value: object) -> str:
    """Serialize a JSON column value; Decimal becomes a string, never a float."""
    return json.dumps(value, default=_json_default, separators=(",", ":"), sort_keys=True)


def _install_sqlite_hooks(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN instead of pysqlite guessing.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_BEGIN_IMMEDIATE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            json_serializer=json_dumps,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        _install_sqlite_hooks(engine)
        return engine
    return sa.create_engine(url, json_serializer=json_dumps, pool_pre_ping=True)


def make_engine(url: str) -> Engine:
    """Return this process's engine for `url`, creating it on first use.

    One engine (and so one pool) per URL per process: tasks call this on every run and must not
    open a new pool each time.
    """
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine's pool (tests, and forked worker processes)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """Run a block in one write transaction: committed on success, rolled back on error.

    SQLite: begins with `BEGIN IMMEDIATE`, so the writer holds the database write lock for the
    whole block (a serialized read-check-write, e.g. a per-strategy concurrency guard), waiting
    up to the busy timeout for another writer. PostgreSQL: a normal transaction.
    """
    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(**{_BEGIN_IMMEDIATE: True})
    with engine.begin() as conn:
        yield conn


def is_sqlite(engine: Engine | Connection) -> bool:
    """True for the embedded SQLite ledger (money is TEXT there: no SQL arithmetic on it)."""
    return engine.dialect.name == "sqlite"
