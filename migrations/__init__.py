"""The Alembic migration chain of the ledger; `store.migrate` runs it for `epm db upgrade`."""
