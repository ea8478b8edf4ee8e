"""The limits in force: the limits file (EPM_LIMITS_FILE, or the shipped default) with the
operators' database overrides merged over it, and the audited commands that change them.

The file is read and validated once per process (it does not change under a running process;
start-up refuses a bad one, see `epm.commands.limits.require_valid_limits`). Overrides are read
on every call that is given the ledger, so an `epm limits set` takes effect on the next intent or
child order without a restart; the table is a short history, read in one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from epm.limits import load_limits
from epm.settings import get_settings
from models.limits import Limits, LimitsInvalid, limit_path_parts, with_overrides
from store import limit_overrides as repo
from store.audit import insert_audit
from store.db import write_transaction
from store.limit_overrides import OverrideRow

__all__ = [
    "LimitsView",
    "NotOverridden",
    "current_limits",
    "file_limits",
    "limits_view",
    "set_override",
    "unset_override",
]


@lru_cache(maxsize=4)
def _load(path: Path | None) -> Limits:
    return load_limits(path)


def file_limits() -> Limits:
    """The configured limits file, validated (`LimitsInvalid` with every problem otherwise)."""
    return _load(get_settings().limits_file)


def _merged(conn: Connection) -> Limits:
    overrides = {p: r.value for p, r in repo.in_force(conn).items() if r.value is not None}
    return with_overrides(file_limits(), overrides)


def current_limits(ledger: Connection | Engine | None = None) -> Limits:
    """The limits in force: the file's, with the ledger's overrides when a ledger is given
    (a connection inside the caller's transaction, or an engine)."""
    if ledger is None:
        return file_limits()
    if isinstance(ledger, Connection):
        return _merged(ledger)
    with ledger.connect() as conn:
        return _merged(conn)


class NotOverridden(LimitsInvalid):
    """`epm limits unset` of a path that has no override in force."""


def _check_value(path: str, value: str) -> None:
    if value.strip() == "":
        raise LimitsInvalid(f"{path}: the value is empty")


def set_override(
    engine: Engine, *, path: str, value: str, actor: str, reason: str, now: datetime
) -> Limits:
    """Override one field, validated against the limits model with every override in force;
    the override row and its audit row commit together, or nothing is written."""
    limit_path_parts(path)
    _check_value(path, value)
    value = value.strip()
    with write_transaction(engine) as conn:
        in_force = repo.in_force(conn)
        merged = {p: r.value for p, r in in_force.items() if r.value is not None}
        merged[path] = value
        effective = with_overrides(file_limits(), merged)
        previous = in_force.get(path)
        repo.insert_override(conn, path=path, value=value, actor=actor, reason=reason, set_at=now)
        insert_audit(
            conn,
            ts=now,
            actor=actor,
            action="limits_set",
            target=f"limit:{path}",
            details={
                "path": path,
                "value": value,
                "previous_override": None if previous is None else previous.value,
                "reason": reason,
            },
        )
    return effective


def unset_override(engine: Engine, *, path: str, actor: str, reason: str, now: datetime) -> Limits:
    """Remove the override on `path` (the file's value applies again), audited."""
    limit_path_parts(path)
    with write_transaction(engine) as conn:
        in_force = repo.in_force(conn)
        previous = in_force.pop(path, None)
        if previous is None:
            raise NotOverridden(f"{path}: no override in force to unset")
        effective = with_overrides(
            file_limits(), {p: r.value for p, r in in_force.items() if r.value is not None}
        )
        repo.insert_override(conn, path=path, value=None, actor=actor, reason=reason, set_at=now)
        insert_audit(
            conn,
            ts=now,
            actor=actor,
            action="limits_unset",
            target=f"limit:{path}",
            details={"path": path, "previous_override": previous.value, "reason": reason},
        )
    return effective


@dataclass(frozen=True, slots=True)
class LimitsView:
    """What `epm limits show` prints: the file, the overrides in force, the effective limits."""

    source: str
    file: Limits
    overrides: dict[str, OverrideRow]
    effective: Limits


def limits_view(engine: Engine | None) -> LimitsView:
    """The three layers; with no ledger, the file alone."""
    path = get_settings().limits_file
    source = str(path) if path is not None else "epm/limits/default.toml (shipped)"
    base = file_limits()
    if engine is None:
        return LimitsView(source, base, {}, base)
    with engine.connect() as conn:
        overrides = repo.in_force(conn)
    effective = with_overrides(
        base, {p: r.value for p, r in overrides.items() if r.value is not None}
    )
    return LimitsView(source, base, overrides, effective)
