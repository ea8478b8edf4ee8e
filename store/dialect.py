"""The one dialect difference the repositories meet: INSERT ... ON CONFLICT.

PostgreSQL and SQLite both support it, through different SQLAlchemy constructs.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def upsert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT for `conn`'s dialect that takes `on_conflict_do_nothing` / `_do_update`."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
