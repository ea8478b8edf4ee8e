"""Alembic environment: runs the chain on the connection `store.migrate` hands over.

A bare `alembic -c migrations/alembic.ini upgrade head` also works: it then connects to
EPM_DATABASE_URL, or the URL in alembic.ini. `render_as_batch=True` lets the same revisions alter
tables on SQLite (copy-and-move), which has almost no ALTER TABLE.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from store.db import make_engine
from store.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("EPM_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set EPM_DATABASE_URL")
    with make_engine(url).connect() as conn:
        _run(conn)
        conn.commit()


def _run_offline() -> None:
    url = os.environ.get("EPM_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
