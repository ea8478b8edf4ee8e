"""Run the Alembic chain programmatically (`epm db upgrade`, tests, the demo's first start).

The scripts live in the installed `migrations` package, so this works from a wheel as well as
from a checkout. Upgrades are serialized: PostgreSQL takes a transaction-scoped advisory lock and
SQLite a `BEGIN IMMEDIATE` write lock, so several processes starting at once (workers, beat, the
bridge) can all call `upgrade` and the chain still runs exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations
from store.db import make_engine, write_transaction

# Arbitrary constant that names epm's migration lock among PostgreSQL advisory locks.
_PG_MIGRATION_LOCK = 0x65706D_0001


def migrations_dir() -> Path:
    """The directory holding env.py, alembic.ini and versions/ (inside the installed package).

    Read from the package's `__path__`, not `__file__`: an editable install made before the
    package had its `__init__.py` imports it as a namespace package, which has no `__file__`.
    """
    for entry in migrations.__path__:
        candidate = Path(entry)
        if (candidate / "env.py").is_file():
            return candidate.resolve()
    raise RuntimeError(f"no env.py in the migrations package ({list(migrations.__path__)})")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic `Config` pointed at the packaged scripts (and at `url` when given)."""
    directory = migrations_dir()
    config = Config(str(directory / "alembic.ini"))
    config.set_main_option("script_location", str(directory))
    if url is not None:
        # ConfigParser interpolation: a literal "%" (URL-encoded passwords) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision of the chain shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the migration chain has no revisions")
    return head


@contextmanager
def _migrating(url: str) -> Iterator[Config]:
    """An Alembic config bound to one write transaction on `url`, which commits at exit.

    On PostgreSQL a transaction-scoped advisory lock makes concurrent migrators (several
    workers starting at once) run one after the other; SQLite's BEGIN IMMEDIATE does that there.
    """
    engine = make_engine(url)
    config = alembic_config(url)
    with write_transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        config.attributes["connection"] = conn
        yield config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migration chain to `url` up to `revision`; a no-op when already there."""
    with _migrating(url) as config:
        command.upgrade(config, revision)


def downgrade(url: str, revision: str) -> None:
    """Revert the chain on `url` down to `revision` ("base" empties the schema)."""
    with _migrating(url) as config:
        command.downgrade(config, revision)


def current(url: str) -> str | None:
    """The revision `url` is at, or None for a database the chain has never touched."""
    with make_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
