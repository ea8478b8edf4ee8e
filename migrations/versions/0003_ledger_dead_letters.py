"""Ledger dead letters: callbacks no retry can record, kept with their payload for replay.

A callback that fails for a deterministic reason (an IntegrityError that is not a concurrent
creation, an unexpected exception) after its bounded retries is parked in `ledger_dead_letters`
(`tasks/ledger.py`); `epm ledger dead-letters` lists them and `epm ledger replay` re-runs the
stored payload through the ledger and marks the letter resolved.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSON_T = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_dead_letters",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column("payload", JSON_T, nullable=False),
        sa.Column("task_name", sa.Text(), nullable=True),
        sa.Column("task_id", sa.Text(), nullable=True),
        sa.Column("error_code", sa.Text(), nullable=False),
        sa.Column("error_class", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", TS, nullable=False),
        sa.Column("last_failed_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_dead_letters")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_ledger_dead_letters_dedupe_key")),
    )
    with op.batch_alter_table("ledger_dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_dead_letters_resolved_at"), ["resolved_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_dead_letters_resolved_at"))
    op.drop_table("ledger_dead_letters")
