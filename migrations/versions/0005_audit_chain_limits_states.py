"""Audit hash chain, operator limit overrides, strategy trading states.

`audit_log` rows gain `prev_hash` / `row_hash` (sha256 over the previous row's hash and this row's
canonical content) so a modified, deleted or inserted row breaks the chain (`epm audit verify`);
rows written before this revision stay unhashed and the chain starts after them.
`limit_overrides` is the append-only history of `epm limits set` (the newest row per `path` wins;
a NULL `value` removes the override). `strategy_states` holds the current ACTIVE / REDUCING /
HALTED state per strategy and for the whole desk (`scope` = "global"); each change is also an
audit row, and `version` lets a writer change a state only from the one it read.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("row_hash", sa.Text(), nullable=True))
    op.create_table(
        "limit_overrides",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_limit_overrides")),
    )
    with op.batch_alter_table("limit_overrides", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_limit_overrides_path_set_at"), ["path", "set_at"], unique=False
        )
    op.create_table(
        "strategy_states",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_strategy_states")),
    )


def downgrade() -> None:
    op.drop_table("strategy_states")
    with op.batch_alter_table("limit_overrides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_limit_overrides_path_set_at"))
    op.drop_table("limit_overrides")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("row_hash")
        batch_op.drop_column("prev_hash")
