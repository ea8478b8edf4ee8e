"""Initial ledger schema: intents, orders, order events, fills, positions, P&L, risk, audit.

Types are spelled out here rather than imported from `store.types`, so this revision keeps
creating the same DDL whatever later code does: exact money is NUMERIC on PostgreSQL and TEXT
on SQLite (see store/types.py), timestamps are TIMESTAMP WITH TIME ZONE (text in UTC on SQLite).

Revision ID: 0001
Revises:
Create Date: 2026-11-26 03:29:00.313107
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric().with_variant(sa.Text(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_T = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("details", JSON_T, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_ts"), ["ts"], unique=False)

    op.create_table(
        "commissions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=False),
        sa.Column("commission", MONEY, nullable=False),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("realized_pnl", MONEY, nullable=True),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commissions")),
        sa.UniqueConstraint("execution_id", name=op.f("uq_commissions_execution_id")),
    )
    op.create_table(
        "contracts",
        sa.Column("con_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("sec_type", sa.Text(), nullable=False),
        sa.Column("expiry", sa.Text(), nullable=True),
        sa.Column("strike", MONEY, nullable=True),
        sa.Column("right", sa.Text(), nullable=True),
        sa.Column("multiplier", MONEY, nullable=True),
        sa.Column("exchange", sa.Text(), nullable=True),
        sa.Column("primary_exchange", sa.Text(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("local_symbol", sa.Text(), nullable=True),
        sa.Column("trading_class", sa.Text(), nullable=True),
        sa.Column("min_tick", MONEY, nullable=True),
        sa.Column("trading_hours", sa.Text(), nullable=True),
        sa.Column("liquid_hours", sa.Text(), nullable=True),
        sa.Column("time_zone_id", sa.Text(), nullable=True),
        sa.Column("details", JSON_T, nullable=True),
        sa.Column("fetched_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("con_id", name=op.f("pk_contracts")),
    )
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contracts_local_symbol"), ["local_symbol"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_contracts_symbol_sec_type"), ["symbol", "sec_type"], unique=False
        )

    op.create_table(
        "financing_charges",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("charge_key", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("con_id", sa.BigInteger(), nullable=True),
        sa.Column("strategy_id", sa.Text(), nullable=True),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("as_of", TS, nullable=False),
        sa.Column("details", JSON_T, nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_financing_charges")),
        sa.UniqueConstraint("charge_key", name=op.f("uq_financing_charges_charge_key")),
    )
    op.create_table(
        "intents",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("signal_id", sa.Text(), nullable=False),
        sa.Column("strategy", sa.Text(), nullable=True),
        sa.Column("instrument", sa.Text(), nullable=True),
        sa.Column("con_id", sa.BigInteger(), nullable=True),
        sa.Column("side", sa.Text(), nullable=True),
        sa.Column("quantity", MONEY, nullable=True),
        sa.Column("urgency", sa.Text(), nullable=True),
        sa.Column("time_in_force", sa.Text(), nullable=True),
        sa.Column("good_till", TS, nullable=True),
        sa.Column("max_slippage_bps", MONEY, nullable=True),
        sa.Column("target_price", MONEY, nullable=True),
        sa.Column("expiry_policy", sa.Text(), nullable=True),
        sa.Column("risk_tags", JSON_T, nullable=True),
        sa.Column("payload", JSON_T, nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("reject_message", sa.Text(), nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intents")),
        sa.UniqueConstraint("signal_id", name=op.f("uq_intents_signal_id")),
    )
    with op.batch_alter_table("intents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_intents_strategy_status"), ["strategy", "status"], unique=False
        )

    op.create_table(
        "pnl_snapshots",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("scope_key", sa.Text(), nullable=False),
        sa.Column("con_id", sa.BigInteger(), nullable=True),
        sa.Column("strategy_id", sa.Text(), nullable=True),
        sa.Column("quantity", MONEY, nullable=True),
        sa.Column("realized_pl", MONEY, nullable=False),
        sa.Column("unrealized_pl", MONEY, nullable=False),
        sa.Column("fees", MONEY, nullable=False),
        sa.Column("net_pl", MONEY, nullable=False),
        sa.Column("mark_price", MONEY, nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("ts", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pnl_snapshots")),
        sa.UniqueConstraint(
            "scope", "scope_key", "ts", name=op.f("uq_pnl_snapshots_scope_scope_key_ts")
        ),
    )
    op.create_table(
        "positions_current",
        sa.Column("con_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("strategy_id", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=True),
        sa.Column("account", sa.Text(), nullable=True),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("avg_price", MONEY, nullable=True),
        sa.Column("multiplier", MONEY, nullable=True),
        sa.Column("realized_pl", MONEY, nullable=False),
        sa.Column("unrealized_pl", MONEY, nullable=True),
        sa.Column("commissions", MONEY, nullable=False),
        sa.Column("risk_tags", JSON_T, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("con_id", "strategy_id", name=op.f("pk_positions_current")),
    )
    op.create_table(
        "positions_history",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("con_id", sa.BigInteger(), nullable=False),
        sa.Column("strategy_id", sa.Text(), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("avg_price", MONEY, nullable=True),
        sa.Column("realized_pl", MONEY, nullable=False),
        sa.Column("unrealized_pl", MONEY, nullable=True),
        sa.Column("commissions", MONEY, nullable=False),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions_history")),
    )
    with op.batch_alter_table("positions_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_positions_history_con_id_strategy_id_recorded_at"),
            ["con_id", "strategy_id", "recorded_at"],
            unique=False,
        )

    op.create_table(
        "risk_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("scope_key", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("details", JSON_T, nullable=True),
        sa.Column("ts_event", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_events")),
    )
    with op.batch_alter_table("risk_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_risk_events_kind_ts_event"), ["kind", "ts_event"], unique=False
        )

    op.create_table(
        "execution_orders",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("ib_order_id", sa.BigInteger(), nullable=True),
        sa.Column("perm_id", sa.BigInteger(), nullable=True),
        sa.Column("intent_id", sa.BigInteger(), nullable=True),
        sa.Column("parent_order_id", sa.BigInteger(), nullable=True),
        sa.Column("parent_link", sa.Text(), nullable=True),
        sa.Column("strategy", sa.Text(), nullable=True),
        sa.Column("con_id", sa.BigInteger(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=True),
        sa.Column("sec_type", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("order_type", sa.Text(), nullable=True),
        sa.Column("limit_price", MONEY, nullable=True),
        sa.Column("aux_price", MONEY, nullable=True),
        sa.Column("tif", sa.Text(), nullable=True),
        sa.Column("account", sa.Text(), nullable=True),
        sa.Column("exchange", sa.Text(), nullable=True),
        sa.Column("due_at", TS, nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("filled_qty", MONEY, nullable=False),
        sa.Column("avg_fill_price", MONEY, nullable=True),
        sa.Column("last_ib_status", sa.Text(), nullable=True),
        sa.Column("reject_code", sa.Integer(), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("details", JSON_T, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["intent_id"], ["intents.id"], name=op.f("fk_execution_orders_intent_id_intents")
        ),
        sa.ForeignKeyConstraint(
            ["parent_order_id"],
            ["execution_orders.id"],
            name=op.f("fk_execution_orders_parent_order_id_execution_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_orders")),
        sa.UniqueConstraint(
            "client_id", "ib_order_id", name=op.f("uq_execution_orders_client_id_ib_order_id")
        ),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_execution_orders_client_order_id")),
        sa.UniqueConstraint("perm_id", name=op.f("uq_execution_orders_perm_id")),
    )
    with op.batch_alter_table("execution_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_execution_orders_due_at"), ["due_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_execution_orders_intent_id"), ["intent_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_execution_orders_parent_order_id"), ["parent_order_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_execution_orders_state"), ["state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_execution_orders_strategy_state"), ["strategy", "state"], unique=False
        )

    op.create_table(
        "execution_metrics",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("intent_id", sa.BigInteger(), nullable=True),
        sa.Column("strategy", sa.Text(), nullable=True),
        sa.Column("con_id", sa.BigInteger(), nullable=True),
        sa.Column("side", sa.Text(), nullable=True),
        sa.Column("filled_qty", MONEY, nullable=True),
        sa.Column("arrival_price", MONEY, nullable=True),
        sa.Column("target_price", MONEY, nullable=True),
        sa.Column("avg_fill_price", MONEY, nullable=True),
        sa.Column("implementation_shortfall_bps", MONEY, nullable=True),
        sa.Column("slippage_bps", MONEY, nullable=True),
        sa.Column("fees", MONEY, nullable=True),
        sa.Column("details", JSON_T, nullable=True),
        sa.Column("computed_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["intent_id"], ["intents.id"], name=op.f("fk_execution_metrics_intent_id_intents")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["execution_orders.id"],
            name=op.f("fk_execution_metrics_order_id_execution_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_metrics")),
    )
    with op.batch_alter_table("execution_metrics", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_execution_metrics_intent_id"), ["intent_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_execution_metrics_order_id"), ["order_id"], unique=False
        )

    op.create_table(
        "fills",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=False),
        sa.Column("exec_base", sa.Text(), nullable=False),
        sa.Column("exec_seq", sa.Integer(), nullable=False),
        sa.Column("superseded_by", sa.Text(), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("order_ref", sa.Text(), nullable=True),
        sa.Column("ib_order_id", sa.BigInteger(), nullable=True),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("perm_id", sa.BigInteger(), nullable=True),
        sa.Column("con_id", sa.BigInteger(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=True),
        sa.Column("sec_type", sa.Text(), nullable=True),
        sa.Column("strategy", sa.Text(), nullable=True),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("shares", MONEY, nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("multiplier", MONEY, nullable=True),
        sa.Column("cum_qty", MONEY, nullable=True),
        sa.Column("avg_price", MONEY, nullable=True),
        sa.Column("exchange", sa.Text(), nullable=True),
        sa.Column("account", sa.Text(), nullable=True),
        sa.Column("executed_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["execution_orders.id"], name=op.f("fk_fills_order_id_execution_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("execution_id", name=op.f("uq_fills_execution_id")),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fills_con_id_strategy"), ["con_id", "strategy"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_fills_exec_base"), ["exec_base"], unique=False)
        batch_op.create_index(batch_op.f("ix_fills_executed_at"), ["executed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_fills_order_id"), ["order_id"], unique=False)

    op.create_table(
        "order_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("ib_status", sa.Text(), nullable=True),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=True),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("payload", JSON_T, nullable=True),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("ts_event", TS, nullable=True),
        sa.Column("ts_init", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["execution_orders.id"],
            name=op.f("fk_order_events_order_id_execution_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_order_events_dedupe_key")),
    )
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_order_events_order_id_id"), ["order_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_events_order_id_id"))

    op.drop_table("order_events")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fills_order_id"))
        batch_op.drop_index(batch_op.f("ix_fills_executed_at"))
        batch_op.drop_index(batch_op.f("ix_fills_exec_base"))
        batch_op.drop_index(batch_op.f("ix_fills_con_id_strategy"))

    op.drop_table("fills")
    with op.batch_alter_table("execution_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_execution_metrics_order_id"))
        batch_op.drop_index(batch_op.f("ix_execution_metrics_intent_id"))

    op.drop_table("execution_metrics")
    with op.batch_alter_table("execution_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_execution_orders_strategy_state"))
        batch_op.drop_index(batch_op.f("ix_execution_orders_state"))
        batch_op.drop_index(batch_op.f("ix_execution_orders_parent_order_id"))
        batch_op.drop_index(batch_op.f("ix_execution_orders_intent_id"))
        batch_op.drop_index(batch_op.f("ix_execution_orders_due_at"))

    op.drop_table("execution_orders")
    with op.batch_alter_table("risk_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_events_kind_ts_event"))

    op.drop_table("risk_events")
    with op.batch_alter_table("positions_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_positions_history_con_id_strategy_id_recorded_at"))

    op.drop_table("positions_history")
    op.drop_table("positions_current")
    op.drop_table("pnl_snapshots")
    with op.batch_alter_table("intents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_intents_strategy_status"))

    op.drop_table("intents")
    op.drop_table("financing_charges")
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contracts_symbol_sec_type"))
        batch_op.drop_index(batch_op.f("ix_contracts_local_symbol"))

    op.drop_table("contracts")
    op.drop_table("commissions")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_ts"))

    op.drop_table("audit_log")
