"""Redis stream names epm reads and writes, and the reject publisher.

Names are part of the operator interface (blueprint §4.1, §4.2): producers `XADD` intents to
`signals.exec.intent` and read refusals from `signals.exec.reject`. A reject entry has flat
string fields `signal_id` ("" when the payload had none usable), `reason` (a stable
`RejectReason` code), `message` (for humans) and `ts` (ISO-8601 UTC of the decision).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import redis

from models.rejects import Reject

INTENT_STREAM = "signals.exec.intent"
REJECT_STREAM = "signals.exec.reject"
# The relay's consumer group on INTENT_STREAM; every relay process is one consumer in it.
RELAY_GROUP = "epm-relay"
# Streams are trimmed approximately so a flood of garbage cannot grow Redis without bound; this
# keeps days of normal traffic for consumers that fall behind.
REJECT_STREAM_MAXLEN = 100_000
_MAX_MESSAGE_CHARS = 1_000


def reject_fields(reject: Reject, *, ts: datetime) -> dict[str, str]:
    """The flat stream fields of one reject entry (`field` only when one is named)."""
    fields = {
        "signal_id": reject.signal_id,
        "reason": reject.reason.value,
        "message": reject.message[:_MAX_MESSAGE_CHARS],
        "ts": ts.astimezone(UTC).isoformat(),
    }
    if reject.field:
        fields["field"] = reject.field
    return fields


def publish_reject(client: redis.Redis, reject: Reject, *, ts: datetime) -> str:
    """Append one reject entry to `signals.exec.reject`; returns the entry id."""
    entry_id = client.xadd(
        REJECT_STREAM,
        reject_fields(reject, ts=ts),  # type: ignore[arg-type]
        maxlen=REJECT_STREAM_MAXLEN,
        approximate=True,
    )
    return str(entry_id)


def read_rejects(client: redis.Redis, *, count: int = 1000) -> list[dict[str, str]]:
    """The newest `count` reject entries, oldest first (for `epm demo` and operators)."""
    entries = cast(list[tuple[str, dict[str, str]]], client.xrevrange(REJECT_STREAM, count=count))
    return [dict(fields) for _entry_id, fields in reversed(entries)]
