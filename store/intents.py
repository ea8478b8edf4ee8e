"""Repository functions for the `intents` table (schema in `store/schema.py`); no decisions.

What intake decides (admit, refuse, duplicate) is `models.admission`; `services.intake` reads
through these functions, hands the facts to the model and writes its decision back. Callers pass
a `Connection` inside a transaction they own (`store.db.write_transaction`), so the concurrency
guard's lock, count and insert happen in one transaction. Inserts use
`INSERT ... ON CONFLICT (signal_id) DO NOTHING` and report a lost race as `None` instead of
raising, which is how a signal submitted concurrently by several workers ends up as one row.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from models.admission import StoredSubmission
from models.intent import ACTIVE_STATUSES, Intent, IntentStatus
from models.rejects import Reject, RejectReason
from store.schema import intents

_MAX_TEXT_COLUMN = 200
_MAX_JSON_DEPTH = 32
_JSON_SAFE_INT = 2**53


@dataclass(frozen=True, slots=True)
class IntentRow:
    """One stored intent (or refused submission with a usable signal_id)."""

    id: int
    signal_id: str
    strategy: str | None
    instrument: str | None
    side: str | None
    quantity: Decimal | None
    status: str
    reject_reason: str | None
    reject_message: str | None
    payload: Any
    received_at: datetime
    updated_at: datetime


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL and UTF-8 cannot hold lone surrogates (from JSON "\ud800").
    cleaned = value.replace("\x00", "\\u0000")
    return cleaned.encode("utf-8", "backslashreplace").decode("utf-8")


def json_safe(value: object, _depth: int = 0) -> Any:
    """A JSON-storable copy of arbitrary submitted data, for auditing refused payloads.

    Exact numbers stay exact: integers that JSON readers keep exact stay numbers, every other
    number (Decimal, float, huge int, NaN) becomes its text. Strings lose what PostgreSQL JSONB
    cannot store (NUL, lone surrogates) via escapes, and nesting is cut off at a fixed depth.
    """
    if _depth > _MAX_JSON_DEPTH:
        return "<nested too deep>"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < _JSON_SAFE_INT else str(value)
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value() and abs(value) < _JSON_SAFE_INT:
            return int(value)
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < _JSON_SAFE_INT:
            return int(value)
        return repr(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Mapping):
        return {_text(str(k)): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, _depth + 1) for v in value]
    return _text(repr(value))[:_MAX_TEXT_COLUMN]


def _column_text(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    return _text(value)[:_MAX_TEXT_COLUMN] if isinstance(value, str) else None


def _insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(intents)
    return sqlite.insert(intents)


def _insert_once(conn: Connection, values: dict[str, Any]) -> int | None:
    statement = (
        _insert(conn)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[intents.c.signal_id])
        .returning(intents.c.id)
    )
    return conn.execute(statement).scalar_one_or_none()


def strategy_lock_key(strategy: str) -> int:
    """A stable signed 64-bit PostgreSQL advisory-lock key for one strategy's guard."""
    digest = hashlib.blake2b(f"epm.intake.guard:{strategy}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_strategy(conn: Connection, strategy: str) -> None:
    """Serialize the concurrency guard of `strategy` until the transaction ends.

    PostgreSQL: a transaction-scoped advisory lock per strategy (other strategies proceed).
    SQLite: nothing to do here; `write_transaction` already holds the database write lock
    (`BEGIN IMMEDIATE`), which serializes every writer.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(strategy_lock_key(strategy))))


def count_active(conn: Connection, strategy: str) -> int:
    """How many intents of `strategy` are VALIDATED or WORKING."""
    statement = (
        sa.select(sa.func.count())
        .select_from(intents)
        .where(intents.c.strategy == strategy)
        .where(intents.c.status.in_([s.value for s in ACTIVE_STATUSES]))
    )
    return int(conn.execute(statement).scalar_one())


def admitted_since(
    conn: Connection, *, strategy: str, instrument: str, side: str, since: datetime
) -> list[tuple[str, datetime]]:
    """(signal_id, received_at) of the strategy's intents for this instrument and side received
    since `since` that were not refused: what a near-duplicate is compared with."""
    statement = (
        sa.select(intents.c.signal_id, intents.c.received_at)
        .where(intents.c.strategy == strategy)
        .where(intents.c.instrument == instrument[:_MAX_TEXT_COLUMN])
        .where(intents.c.side == side)
        .where(intents.c.received_at >= since)
        .where(intents.c.status != IntentStatus.REJECTED.value)
        .order_by(intents.c.received_at.desc())
        .limit(20)
    )
    return [(row.signal_id, row.received_at) for row in conn.execute(statement)]


def _row(mapping: Any) -> IntentRow:
    return IntentRow(
        id=mapping["id"],
        signal_id=mapping["signal_id"],
        strategy=mapping["strategy"],
        instrument=mapping["instrument"],
        side=mapping["side"],
        quantity=mapping["quantity"],
        status=mapping["status"],
        reject_reason=mapping["reject_reason"],
        reject_message=mapping["reject_message"],
        payload=mapping["payload"],
        received_at=mapping["received_at"],
        updated_at=mapping["updated_at"],
    )


def get_by_signal_id(conn: Connection, signal_id: str) -> IntentRow | None:
    """The row stored for `signal_id`, if any."""
    found = (
        conn.execute(sa.select(intents).where(intents.c.signal_id == signal_id)).mappings().first()
    )
    return None if found is None else _row(found)


def find_submission(conn: Connection, signal_id: str) -> StoredSubmission | None:
    """What `models.admission.decide` needs to know about the row stored for `signal_id`."""
    row = get_by_signal_id(conn, signal_id)
    if row is None:
        return None
    return StoredSubmission(
        id=row.id,
        signal_id=row.signal_id,
        status=row.status,
        reject_reason=None if row.reject_reason is None else RejectReason(row.reject_reason),
        reject_message=row.reject_message,
        payload=row.payload,
        received_at=row.received_at,
    )


def list_intents(conn: Connection, *, limit: int = 100) -> list[IntentRow]:
    """The newest `limit` rows, oldest first."""
    statement = sa.select(intents).order_by(intents.c.id.desc()).limit(limit)
    rows = [_row(m) for m in conn.execute(statement).mappings()]
    return list(reversed(rows))


def _intent_columns(intent: Intent) -> dict[str, Any]:
    return {
        "strategy": intent.strategy,
        "side": intent.side.value,
        "quantity": intent.quantity,
        "urgency": intent.urgency.value,
        "time_in_force": intent.time_in_force.value,
        "good_till": intent.good_till,
        "max_slippage_bps": intent.max_slippage_bps,
        "target_price": intent.target_price,
        "expiry_policy": None if intent.expiry_policy is None else intent.expiry_policy.value,
        "risk_tags": [t.value for t in intent.risk_tags],
    }


def insert_validated(
    conn: Connection, intent: Intent, *, instrument_text: str, now: datetime
) -> int | None:
    """Store an admitted intent as VALIDATED; None when `signal_id` already has a row."""
    return _insert_once(
        conn,
        {
            "signal_id": intent.signal_id,
            "instrument": _text(instrument_text)[:_MAX_TEXT_COLUMN],
            **_intent_columns(intent),
            "payload": intent.to_payload(),
            "status": IntentStatus.VALIDATED.value,
            "received_at": now,
            "updated_at": now,
        },
    )


def insert_rejected(
    conn: Connection,
    reject: Reject,
    submitted: Mapping[str, object],
    *,
    now: datetime,
    intent: Intent | None = None,
) -> int | None:
    """Record a refused submission that named a usable signal_id; None when it already has a row.

    `payload` keeps what was submitted (made JSON-safe) so a resubmission can be compared with
    it; the typed columns hold the admitted values when the intent itself was valid (a guard
    reject), else the submitted text where it was text.
    """
    if intent is not None:
        columns = _intent_columns(intent)
    else:
        columns = {
            key: _column_text(submitted, key)
            for key in ("strategy", "side", "urgency", "time_in_force", "expiry_policy")
        }
    return _insert_once(
        conn,
        {
            "signal_id": reject.signal_id,
            "instrument": _column_text(submitted, "instrument"),
            **columns,
            "payload": json_safe(submitted),
            "status": IntentStatus.REJECTED.value,
            "reject_reason": reject.reason.value,
            "reject_message": _text(reject.message),
            "received_at": now,
            "updated_at": now,
        },
    )
