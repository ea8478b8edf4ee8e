"""The books: position state and marks, reconciliation runs.

`positions_current` gains its §8 state (OPEN, PARTIAL, HEDGED, CLOSING, CLOSED), the live mark its
`unrealized_pl` was computed from (`mark_price`, `marked_at`) and the strategy's context. Every
reconciliation run (executions every 5 minutes, positions at the end of the day) writes one
`recon_runs` row with what it compared, recovered and flagged.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
MONEY = sa.Numeric().with_variant(sa.Text(), "sqlite")
JSON_T = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("positions_current", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("mark_price", MONEY, nullable=True))
        batch_op.add_column(sa.Column("marked_at", TS, nullable=True))
        batch_op.add_column(sa.Column("strategy_context", JSON_T, nullable=True))
    op.create_table(
        "recon_runs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("checked", sa.Integer(), nullable=False),
        sa.Column("recovered", sa.Integer(), nullable=False),
        sa.Column("flagged", sa.Integer(), nullable=False),
        sa.Column("differences", JSON_T, nullable=True),
        sa.Column("details", JSON_T, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_runs")),
    )
    with op.batch_alter_table("recon_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recon_runs_kind_started_at"), ["kind", "started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("recon_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recon_runs_kind_started_at"))
    op.drop_table("recon_runs")
    with op.batch_alter_table("positions_current", schema=None) as batch_op:
        batch_op.drop_column("strategy_context")
        batch_op.drop_column("marked_at")
        batch_op.drop_column("mark_price")
        batch_op.drop_column("state")
