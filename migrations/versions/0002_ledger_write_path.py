"""Ledger write path: IB's reported fill quantity on orders; orders first seen in a callback.

`execution_orders.ib_filled_qty` keeps the highest cumulative quantity IB reported (orderStatus,
openOrder) next to the ledger's own `filled_qty` from fills. `action` and `quantity` become
nullable: an orderStatus for an order placed outside epm names neither, and the order row is
created from it so that no callback is lost; the openOrder fills them in.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 04:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric().with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("execution_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ib_filled_qty", MONEY, nullable=True))
        batch_op.alter_column("action", existing_type=sa.Text(), nullable=True)
        batch_op.alter_column("quantity", existing_type=MONEY, nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("execution_orders", schema=None) as batch_op:
        batch_op.alter_column("quantity", existing_type=MONEY, nullable=False)
        batch_op.alter_column("action", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("ib_filled_qty")
