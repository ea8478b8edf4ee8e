"""Fixtures shared by the ledger tests: one migrated ledger per dialect, emptied around a test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from store.db import dispose_engines, make_engine, write_transaction
from store.migrate import upgrade
from store.schema import metadata


def wipe(engine: Engine) -> None:
    """Delete every row (children first), keeping the migrated schema; the PostgreSQL database
    is shared by the session."""
    with write_transaction(engine) as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Engine]:
    """A migrated, empty ledger on each dialect (a module may override it with its own)."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    upgrade(url)
    eng = make_engine(url)
    wipe(eng)
    yield eng
    wipe(eng)
    dispose_engines()
