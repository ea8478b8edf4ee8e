"""The ledger schema: SQLAlchemy Core tables that the Alembic chain in `migrations/` creates.

Uniqueness here is what makes writes idempotent: intents on `signal_id`, orders on
`client_order_id`, on `(client_id, ib_order_id)` and on `perm_id`, fills on `execution_id`,
commissions on `execution_id`, order events and dead letters on `dedupe_key`. Money is `Money`
(exact NUMERIC / TEXT on SQLite), timestamps are `UtcDateTime` (aware UTC). Any change here
needs a new migration in `migrations/versions/`; a test compares the migrated database with this
metadata.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from store.types import Money, UtcDateTime

# Constraint names are deterministic so migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# BIGINT primary keys autoincrement on PostgreSQL; SQLite only autoincrements INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# JSONB on PostgreSQL (indexable, compact); SQLite's JSON is text.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# Key used in positions_current when a fill cannot be attributed to a strategy (e.g. an order
# placed in TWS by hand); a primary key column cannot be NULL.
UNATTRIBUTED_STRATEGY = "UNATTRIBUTED"


def _fk(name: str, target: str, *, nullable: bool) -> sa.Column[Any]:
    """A BIGINT reference to `target` ("table.id"); a fresh Column per table (SQLAlchemy)."""
    return sa.Column(name, sa.BigInteger(), sa.ForeignKey(target), nullable=nullable)


def _contract_ref() -> list[sa.Column[Any]]:
    """Which contract an order or fill is in, as far as its callback said (all nullable)."""
    return [
        sa.Column("con_id", sa.BigInteger(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=True),
        sa.Column("sec_type", sa.Text(), nullable=True),
    ]


def _position_figures(*, with_multiplier: bool) -> list[sa.Column[Any]]:
    """A position's size, average cost and P&L: the current row and each history row alike."""
    multiplier: list[sa.Column[Any]] = (
        [sa.Column("multiplier", Money(), nullable=True)] if with_multiplier else []
    )
    return [
        sa.Column("quantity", Money(), nullable=False),
        sa.Column("avg_price", Money(), nullable=True),
        *multiplier,
        sa.Column("realized_pl", Money(), nullable=False),
        sa.Column("unrealized_pl", Money(), nullable=True),
        sa.Column("commissions", Money(), nullable=False),
    ]


intents = sa.Table(
    "intents",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("signal_id", sa.Text(), nullable=False, unique=True),
    sa.Column("strategy", sa.Text()),
    sa.Column("instrument", sa.Text()),
    sa.Column("con_id", sa.BigInteger(), nullable=True),
    sa.Column("side", sa.Text()),
    sa.Column("quantity", Money()),
    sa.Column("urgency", sa.Text()),
    sa.Column("time_in_force", sa.Text()),
    sa.Column("good_till", UtcDateTime(), nullable=True),
    sa.Column("max_slippage_bps", Money(), nullable=True),
    sa.Column("target_price", Money(), nullable=True),
    sa.Column("expiry_policy", sa.Text(), nullable=True),
    sa.Column("risk_tags", Json),
    sa.Column("payload", Json),
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column("reject_reason", sa.Text(), nullable=True),
    sa.Column("reject_message", sa.Text(), nullable=True),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Index(None, "strategy", "status"),
)

execution_orders = sa.Table(
    "execution_orders",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # Ours; sent to IB as orderRef so executions map back after a restart.
    sa.Column("client_order_id", sa.Text(), nullable=False, unique=True),
    # Blueprint §3 rule 3: the client id that placed the order, recorded for audit.
    sa.Column("client_id", sa.Integer(), nullable=False),
    # NULL until an id is allocated; also NULL for manual TWS orders (IB orderId <= 0).
    sa.Column("ib_order_id", sa.BigInteger(), nullable=True),
    sa.Column("perm_id", sa.BigInteger(), nullable=True, unique=True),
    _fk("intent_id", "intents.id", nullable=True),
    # A replacement (cancel + new id, blueprint §5.3), a bracket child or a schedule slice
    # points at the order it belongs to; `parent_link` says which of these it is.
    _fk("parent_order_id", "execution_orders.id", nullable=True),
    sa.Column("parent_link", sa.Text(), nullable=True),
    sa.Column("strategy", sa.Text(), nullable=True),
    *_contract_ref(),
    # NULL only for an order first seen in a callback that does not name it (an orderStatus
    # or execution for an order placed outside epm); the openOrder fills them in.
    sa.Column("action", sa.Text(), nullable=True),
    sa.Column("quantity", Money(), nullable=True),
    sa.Column("order_type", sa.Text(), nullable=True),
    sa.Column("limit_price", Money(), nullable=True),
    sa.Column("aux_price", Money(), nullable=True),
    sa.Column("tif", sa.Text(), nullable=True),
    sa.Column("account", sa.Text(), nullable=True),
    sa.Column("exchange", sa.Text(), nullable=True),
    # When a scheduled slice becomes due (beat's scheduler tick picks rows with due_at <= now).
    sa.Column("due_at", UtcDateTime(), nullable=True),
    sa.Column("state", sa.Text(), nullable=False),
    # From the effective fills (the ledger's truth) ...
    sa.Column("filled_qty", Money(), nullable=False),
    sa.Column("avg_fill_price", Money(), nullable=True),
    # ... and the highest cumulative quantity IB reported in orderStatus/openOrder.
    sa.Column("ib_filled_qty", Money(), nullable=True),
    sa.Column("last_ib_status", sa.Text(), nullable=True),
    sa.Column("reject_code", sa.Integer(), nullable=True),
    sa.Column("reject_reason", sa.Text(), nullable=True),
    # Order details that do not need columns (bracket legs, combo legs, algo params, origin).
    sa.Column("details", Json, nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # Optimistic concurrency: writers update WHERE version = :seen and bump it.
    sa.Column("version", sa.Integer(), nullable=False),
    sa.UniqueConstraint("client_id", "ib_order_id"),
    sa.Index(None, "state"),
    sa.Index(None, "intent_id"),
    sa.Index(None, "parent_order_id"),
    sa.Index(None, "strategy", "state"),
    sa.Index(None, "due_at"),
)

order_events = sa.Table(
    "order_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _fk("order_id", "execution_orders.id", nullable=False),
    sa.Column("event_type", sa.Text(), nullable=False),
    sa.Column("ib_status", sa.Text(), nullable=True),
    sa.Column("from_state", sa.Text(), nullable=True),
    sa.Column("to_state", sa.Text(), nullable=True),
    # False: recorded but not applied (late or duplicated; the order did not move).
    sa.Column("applied", sa.Boolean(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("payload", Json, nullable=True),
    # The same callback delivered twice (task redelivery) appends one row, not two.
    sa.Column("dedupe_key", sa.Text(), nullable=True, unique=True),
    sa.Column("ts_event", UtcDateTime(), nullable=True),
    sa.Column("ts_init", UtcDateTime(), nullable=False),
    sa.Index(None, "order_id", "id"),
)

fills = sa.Table(
    "fills",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("execution_id", sa.Text(), nullable=False, unique=True),
    # execId "0000e0d5.6581b1f5.01.01": base "0000e0d5.6581b1f5.01", seq 1; a higher seq with
    # the same base is a correction that replaces the earlier fill.
    sa.Column("exec_base", sa.Text(), nullable=False),
    sa.Column("exec_seq", sa.Integer(), nullable=False),
    sa.Column("superseded_by", sa.Text(), nullable=True),
    _fk("order_id", "execution_orders.id", nullable=False),
    sa.Column("order_ref", sa.Text(), nullable=True),
    sa.Column("ib_order_id", sa.BigInteger(), nullable=True),
    sa.Column("client_id", sa.Integer(), nullable=True),
    sa.Column("perm_id", sa.BigInteger(), nullable=True),
    *_contract_ref(),
    sa.Column("strategy", sa.Text(), nullable=True),
    # BUY or SELL (IB's BOT / SLD translated).
    sa.Column("side", sa.Text(), nullable=False),
    sa.Column("shares", Money(), nullable=False),
    sa.Column("price", Money(), nullable=False),
    sa.Column("multiplier", Money(), nullable=True),
    # IB's cumQty / avgPrice as reported with this execution (the ledger recomputes its own).
    sa.Column("cum_qty", Money(), nullable=True),
    sa.Column("avg_price", Money(), nullable=True),
    sa.Column("exchange", sa.Text(), nullable=True),
    sa.Column("account", sa.Text(), nullable=True),
    sa.Column("executed_at", UtcDateTime(), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Index(None, "exec_base"),
    sa.Index(None, "order_id"),
    sa.Index(None, "con_id", "strategy"),
    sa.Index(None, "executed_at"),
)

commissions = sa.Table(
    "commissions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # No foreign key: a commissionReport may arrive before its execDetails.
    sa.Column("execution_id", sa.Text(), nullable=False, unique=True),
    sa.Column("commission", Money(), nullable=False),
    sa.Column("currency", sa.Text(), nullable=True),
    sa.Column("realized_pnl", Money(), nullable=True),
    # True while the figure is our estimate and IB's commissionReport has not arrived.
    sa.Column("estimated", sa.Boolean(), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

positions_current = sa.Table(
    "positions_current",
    metadata,
    sa.Column("con_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("strategy_id", sa.Text(), primary_key=True),
    sa.Column("symbol", sa.Text(), nullable=True),
    sa.Column("account", sa.Text(), nullable=True),
    *_position_figures(with_multiplier=True),
    sa.Column("risk_tags", Json, nullable=True),
    # OPEN, PARTIAL, HEDGED, CLOSING or CLOSED (blueprint §8); null until the books first mark it.
    sa.Column("state", sa.Text(), nullable=True),
    # The live mark `unrealized_pl` was computed from, and when that mark was taken.
    sa.Column("mark_price", Money(), nullable=True),
    sa.Column("marked_at", UtcDateTime(), nullable=True),
    # What the strategy knows of the position (entry signal, stop, target, hedge instrument...).
    sa.Column("strategy_context", Json, nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
)

positions_history = sa.Table(
    "positions_history",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("con_id", sa.BigInteger(), nullable=False),
    sa.Column("strategy_id", sa.Text(), nullable=False),
    *_position_figures(with_multiplier=False),
    # What changed it: an execution id, a commission, an EOD check, a manual adjustment.
    sa.Column("cause", sa.Text(), nullable=True),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.Index(None, "con_id", "strategy_id", "recorded_at"),
)

execution_metrics = sa.Table(
    "execution_metrics",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    _fk("order_id", "execution_orders.id", nullable=True),
    _fk("intent_id", "intents.id", nullable=True),
    sa.Column("strategy", sa.Text(), nullable=True),
    sa.Column("con_id", sa.BigInteger(), nullable=True),
    sa.Column("side", sa.Text(), nullable=True),
    sa.Column("filled_qty", Money(), nullable=True),
    sa.Column("arrival_price", Money(), nullable=True),
    sa.Column("target_price", Money(), nullable=True),
    sa.Column("avg_fill_price", Money(), nullable=True),
    sa.Column("implementation_shortfall_bps", Money(), nullable=True),
    sa.Column("slippage_bps", Money(), nullable=True),
    sa.Column("fees", Money(), nullable=True),
    sa.Column("details", Json, nullable=True),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.Index(None, "order_id"),
    sa.Index(None, "intent_id"),
)

financing_charges = sa.Table(
    "financing_charges",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # Idempotency key chosen by the writer (e.g. "interest:U123:USD:2026-11-26").
    sa.Column("charge_key", sa.Text(), nullable=False, unique=True),
    sa.Column("account", sa.Text(), nullable=True),
    sa.Column("kind", sa.Text(), nullable=False),
    sa.Column("con_id", sa.BigInteger(), nullable=True),
    sa.Column("strategy_id", sa.Text(), nullable=True),
    sa.Column("amount", Money(), nullable=False),
    sa.Column("currency", sa.Text(), nullable=False),
    sa.Column("as_of", UtcDateTime(), nullable=False),
    sa.Column("details", Json, nullable=True),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
)

pnl_snapshots = sa.Table(
    "pnl_snapshots",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # "position" (scope_key = con_id:strategy), "strategy", "account".
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("scope_key", sa.Text(), nullable=False),
    sa.Column("con_id", sa.BigInteger(), nullable=True),
    sa.Column("strategy_id", sa.Text(), nullable=True),
    sa.Column("quantity", Money(), nullable=True),
    sa.Column("realized_pl", Money(), nullable=False),
    sa.Column("unrealized_pl", Money(), nullable=False),
    sa.Column("fees", Money(), nullable=False),
    sa.Column("net_pl", Money(), nullable=False),
    sa.Column("mark_price", Money(), nullable=True),
    sa.Column("source", sa.Text(), nullable=True),
    sa.Column("ts", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("scope", "scope_key", "ts"),
)

risk_events = sa.Table(
    "risk_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.Text(), nullable=False),
    sa.Column("severity", sa.Text(), nullable=False),
    sa.Column("scope", sa.Text(), nullable=True),
    sa.Column("scope_key", sa.Text(), nullable=True),
    sa.Column("code", sa.Text(), nullable=True),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("details", Json, nullable=True),
    sa.Column("ts_event", UtcDateTime(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("resolved_at", UtcDateTime(), nullable=True),
    sa.Index(None, "kind", "ts_event"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("ts", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.Text(), nullable=False),
    sa.Column("action", sa.Text(), nullable=False),
    sa.Column("target", sa.Text(), nullable=True),
    sa.Column("details", Json, nullable=True),
    # Hash chain (migration 0005): row_hash = sha256(prev_hash + canonical row); rows written
    # before the chain existed have neither.
    sa.Column("prev_hash", sa.Text(), nullable=True),
    sa.Column("row_hash", sa.Text(), nullable=True),
    sa.Index(None, "ts"),
)

# `epm limits set` history, append-only: the newest row per `path` (e.g.
# "strategies.Momentum_EQ.max_position_qty") overrides the limits file; a NULL value removes it.
limit_overrides = sa.Table(
    "limit_overrides",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("value", sa.Text(), nullable=True),
    sa.Column("actor", sa.Text(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("set_at", UtcDateTime(), nullable=False),
    sa.Index(None, "path", "set_at"),
)

# Trading state per strategy and for the desk ("global"): ACTIVE, REDUCING (reduce-only) or
# HALTED. Every change is also an audit row; `version` increments on each change so a writer
# changes the state only from the one it read.
strategy_states = sa.Table(
    "strategy_states",
    metadata,
    sa.Column("scope", sa.Text(), primary_key=True),
    sa.Column("state", sa.Text(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("actor", sa.Text(), nullable=False),
    sa.Column("changed_at", UtcDateTime(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
)

contracts = sa.Table(
    "contracts",
    metadata,
    sa.Column("con_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("symbol", sa.Text(), nullable=False),
    sa.Column("sec_type", sa.Text(), nullable=False),
    # IB lastTradeDateOrContractMonth as given ("20251121" or "202512").
    sa.Column("expiry", sa.Text(), nullable=True),
    sa.Column("strike", Money(), nullable=True),
    sa.Column("right", sa.Text(), nullable=True),
    sa.Column("multiplier", Money(), nullable=True),
    sa.Column("exchange", sa.Text(), nullable=True),
    sa.Column("primary_exchange", sa.Text(), nullable=True),
    sa.Column("currency", sa.Text(), nullable=True),
    # For options the OCC 21-character symbol, e.g. "SPY   251121C00450000".
    sa.Column("local_symbol", sa.Text(), nullable=True),
    sa.Column("trading_class", sa.Text(), nullable=True),
    sa.Column("min_tick", Money(), nullable=True),
    sa.Column("trading_hours", sa.Text(), nullable=True),
    sa.Column("liquid_hours", sa.Text(), nullable=True),
    sa.Column("time_zone_id", sa.Text(), nullable=True),
    sa.Column("details", Json, nullable=True),
    sa.Column("fetched_at", UtcDateTime(), nullable=False),
    sa.Index(None, "symbol", "sec_type"),
    sa.Index(None, "local_symbol"),
)

# One row per reconciliation run (every 5 minutes executions, end of day positions): what was
# compared, what was recovered or flagged, and how bad the worst difference was.
recon_runs = sa.Table(
    "recon_runs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # "executions" (reqExecutions vs fills) or "positions" (reqPositions vs positions_current).
    sa.Column("kind", sa.Text(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    # "ok", "warning", "critical" or "failed" (the venue did not answer).
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column("checked", sa.Integer(), nullable=False),
    sa.Column("recovered", sa.Integer(), nullable=False),
    sa.Column("flagged", sa.Integer(), nullable=False),
    sa.Column("differences", Json, nullable=True),
    sa.Column("details", Json, nullable=True),
    sa.Index(None, "kind", "started_at"),
)

# Callbacks the ledger could not record for a reason no retry fixes (a constraint, a bug), kept
# with their original payload until an operator replays them (`epm ledger replay`). Store
# outages never land here: those retry without limit.
ledger_dead_letters = sa.Table(
    "ledger_dead_letters",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # The callback kind (`services.ledger.WRITERS` key: "execution", "commission", ...).
    sa.Column("kind", sa.Text(), nullable=False),
    # sha256 of kind and payload: the same callback failing again updates its letter.
    sa.Column("dedupe_key", sa.Text(), nullable=False, unique=True),
    sa.Column("payload", Json, nullable=False),
    sa.Column("task_name", sa.Text(), nullable=True),
    sa.Column("task_id", sa.Text(), nullable=True),
    # INTEGRITY_ERROR or UNEXPECTED_ERROR; the exception's class; its message.
    sa.Column("error_code", sa.Text(), nullable=False),
    sa.Column("error_class", sa.Text(), nullable=False),
    sa.Column("message", sa.Text(), nullable=True),
    # Tries so far: the task's (with its retries) plus each failed replay.
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("first_failed_at", UtcDateTime(), nullable=False),
    sa.Column("last_failed_at", UtcDateTime(), nullable=False),
    # Set when a replay recorded it; `resolution` says how (the ledger's outcome).
    sa.Column("resolved_at", UtcDateTime(), nullable=True),
    sa.Column("resolution", sa.Text(), nullable=True),
    sa.Index(None, "resolved_at"),
)
