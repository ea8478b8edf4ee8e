"""Persistence: SQLAlchemy tables, repositories and the Alembic migration chain."""
