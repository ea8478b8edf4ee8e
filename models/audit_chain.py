"""The audit log's hash chain, pure: canonical form of a row, its hash, and the walk that checks it.

Each chained row stores `prev_hash` (the previous chained row's `row_hash`, or `GENESIS` for the
first) and `row_hash = sha256(prev_hash + canonical(row))`. Editing a row changes its canonical
form, so its own hash no longer matches; deleting or inserting a row leaves a `prev_hash` that
does not name the row before it. Rows written before the chain existed carry no hashes: they are
counted as "unchained", not called tampering, as long as they all come before the first chained
row (a hashless row after it is an insertion).

The canonical form is JSON with sorted keys and no whitespace, `Decimal` as its string, times as
ISO-8601 UTC with microseconds; `details` must already be in the form the JSON column stores (see
`json_safe`), so what is hashed at write time is exactly what verification reads back.

The chain proves the rows agree with each other, not that the newest rows are still there: whoever
can rewrite the table can also drop its tail or rebuild every hash after an edit. Verification
returns the head hash so an operator (or another system) can note it, and given a noted hash
(`expect`) it fails when no row has it any more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "GENESIS",
    "AuditEntry",
    "ChainBreak",
    "ChainReport",
    "canonical",
    "json_safe",
    "row_hash",
    "verify_chain",
]

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One `audit_log` row as stored (hashes None on rows from before the chain)."""

    id: int
    ts: datetime
    actor: str
    action: str
    target: str | None
    details: Mapping[str, Any] | None
    prev_hash: str | None
    row_hash: str | None


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot go into an audit row")


def json_safe(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`details` as the JSON column gives it back (Decimal and datetimes as strings).

    A float is refused: it would hash one text and read back another after a round trip.
    """
    if details is None:
        return None
    text = json.dumps(dict(details), default=_default, sort_keys=True, separators=(",", ":"))
    decoded: dict[str, Any] = json.loads(text, parse_float=_no_float)
    return decoded


def _no_float(text: str) -> object:
    raise ValueError(f"audit details hold a float ({text}); pass a Decimal or a string")


def _ts(ts: datetime) -> str:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"audit timestamp {ts.isoformat()} has no time zone")
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(
    *,
    ts: datetime,
    actor: str,
    action: str,
    target: str | None,
    details: Mapping[str, Any] | None,
) -> str:
    """The text that is hashed for a row: sorted-key JSON of its content (not its id)."""
    doc = {
        "action": action,
        "actor": actor,
        "details": json_safe(details),
        "target": target,
        "ts": _ts(ts),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(prev_hash: str, canonical_text: str) -> str:
    """sha256 hex of the previous hash followed by this row's canonical text."""
    return hashlib.sha256((prev_hash + canonical_text).encode("utf-8")).hexdigest()


def _entry_hash(entry: AuditEntry, prev: str) -> str:
    text = canonical(
        ts=entry.ts,
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        details=entry.details,
    )
    return row_hash(prev, text)


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first row where the chain does not hold, and why (one sentence for the operator)."""

    row_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What a walk over the log found: counts, the head hash, the first break if any."""

    unchained: int
    chained: int
    head_hash: str | None
    head_id: int | None
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify_chain(entries: Iterable[AuditEntry], expect: str | None = None) -> ChainReport:
    """Walk rows in id order; stop at the first one that breaks the chain.

    `expect` is a head hash noted earlier (`epm audit verify --expect HASH`): the chain must
    still hold a row with it, or rows were dropped from the tail since.
    """
    unchained = 0
    chained = 0
    prev: str | None = None
    prev_id: int | None = None
    expected_seen = expect is None

    def report(broken: ChainBreak | None) -> ChainReport:
        return ChainReport(unchained, chained, prev, prev_id, broken)

    for entry in entries:
        if entry.row_hash is None or entry.prev_hash is None:
            if prev is None and entry.row_hash is None and entry.prev_hash is None:
                unchained += 1
                continue
            if prev is None:
                why = "has only one of prev_hash/row_hash (edited?)"
            else:
                why = (
                    "has no hash although the chain began before it "
                    f"(inserted after row {prev_id}?)"
                )
            return report(ChainBreak(entry.id, f"row {entry.id} {why}"))
        expected_prev = GENESIS if prev is None else prev
        if entry.prev_hash != expected_prev:
            if prev is None:
                why = (
                    f"row {entry.id} is the first chained row but its prev_hash is not the "
                    "genesis hash: the rows before it were deleted"
                )
            else:
                why = (
                    f"row {entry.id}: prev_hash does not match the hash of row {prev_id}, the row "
                    "before it: a row was deleted or inserted between them"
                )
            return report(ChainBreak(entry.id, why))
        try:
            actual = _entry_hash(entry, entry.prev_hash)
        except (TypeError, ValueError) as e:
            return report(ChainBreak(entry.id, f"row {entry.id} cannot be hashed: {e}"))
        if actual != entry.row_hash:
            return report(
                ChainBreak(
                    entry.id,
                    f"row {entry.id}: content does not match its row_hash (modified after it "
                    "was written)",
                )
            )
        chained += 1
        prev = entry.row_hash
        prev_id = entry.id
        expected_seen = expected_seen or entry.row_hash == expect
    if not expected_seen:
        return report(
            ChainBreak(
                prev_id or 0,
                f"no row has the expected hash {expect}: rows were deleted from the end of the "
                f"log since it was noted (the chain now ends at row {prev_id})",
            )
        )
    return report(None)
