"""IB-shaped execution ids and perm ids.

IB's execIds look like ``0000e0d5.6581b1f5.01.01``: a per-session prefix, a per-execution counter in
hex (it starts near the epoch seconds of the session, which is why real ids look time-like), then
``.01.01``. A correction re-issues the same base with the next last suffix (``.01`` -> ``.02``),
so a client can tell "replaces" from "adds". Everything here is deterministic: the prefix
comes from the account, the session date and the venue's *incarnation*, the counter from the
first execution's time. IB never issues an execId or a permId twice; a simulator restarted without
its state must not either (a ledger that outlives it would drop the new executions as duplicates
and merge orders by permId), so each venue instance gets its own incarnation: the wall-clock
milliseconds at its start, unless a test pins it to replay identical ids.
"""

from __future__ import annotations

import zlib
from datetime import datetime


def session_prefix(account: str, session_day: str, incarnation: int = 0) -> str:
    """Return the 8-hex-digit per-session prefix (stable for the same account, day and
    incarnation)."""
    key = f"{account}|{session_day}" + (f"|{incarnation}" if incarnation else "")
    return f"{zlib.crc32(key.encode()) & 0xFFFFFFFF:08x}"


class ExecIdGenerator:
    """Hand out execIds; the state (prefix, counter) is persisted so a restart reuses no id."""

    __slots__ = ("counter", "incarnation", "prefix")

    def __init__(self, prefix: str = "", counter: int = 0, incarnation: int = 0) -> None:
        self.prefix = prefix
        self.counter = counter
        self.incarnation = incarnation

    def next_id(self, account: str, now: datetime) -> str:
        """Return a fresh execId for an execution happening at simulated time `now`."""
        if not self.prefix:
            self.prefix = session_prefix(account, now.date().isoformat(), self.incarnation)
        if self.counter == 0:
            self.counter = int(now.timestamp())
        else:
            self.counter += 1
        return f"{self.prefix}.{self.counter & 0xFFFFFFFF:08x}.01.01"


def corrected_id(exec_id: str) -> str:
    """Return the id a correction of `exec_id` carries: same base, last suffix + 1."""
    base, _, suffix = exec_id.rpartition(".")
    if not base or not suffix.isdigit():
        raise ValueError(f"not an IB-shaped execId: {exec_id!r}")
    return f"{base}.{int(suffix) + 1:02d}"


class PermIds:
    """Unique, increasing perm ids across clients and restarts (IB's permId is account-wide).

    Incarnations are wall-clock milliseconds, so each later instance starts a thousand ids per
    millisecond above the one before: ahead of anything an earlier instance could have issued.
    """

    __slots__ = ("last",)

    BASE = 1_400_000_000

    def __init__(self, last: int = BASE) -> None:
        self.last = last

    @classmethod
    def for_incarnation(cls, incarnation: int) -> PermIds:
        return cls(cls.BASE + incarnation * 1000)

    def next_id(self) -> int:
        self.last += 1
        return self.last
