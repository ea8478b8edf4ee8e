"""Use case: one alert evaluation. Load the facts → `models.alerts.conditions` and `evaluate`
against what was open → save the open set → publish what fired or resolved.

The open set lives in Redis (`ops:alerts:open`, ident → since/fired) so that an open condition
is published once, however many ticks or workers see it; a lock keeps two ticks (a second beat,
a redelivered task) from both publishing the same firing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy.engine import Engine

from epm.logging import get_logger
from models.alerts import Alert, Evaluation, OpenAlert, conditions, evaluate
from services.alerts.config import AlertConfig
from services.alerts.facts import load_facts

log = get_logger(__name__)

ALERT_STREAM = "ops.alerts"
OPEN_KEY = "ops:alerts:open"
# When the last evaluation ran (an operator's "is anyone watching?").
LAST_TICK_KEY = "ops:alerts:last_tick"
LOCK_KEY = "ops:alerts:lock"
_STREAM_MAXLEN = 100_000
_LOCK_MS = 30_000


@dataclass(frozen=True, slots=True)
class TickResult:
    ran: bool
    fired: tuple[str, ...] = ()
    resolved: tuple[str, ...] = ()
    open: int = 0


def _load_open(client: redis.Redis) -> dict[str, OpenAlert]:
    raw: Mapping[str, str] = client.hgetall(OPEN_KEY)  # type: ignore[assignment]
    state: dict[str, OpenAlert] = {}
    for ident, text in raw.items():
        try:
            data = json.loads(text)
            state[ident] = OpenAlert(
                since=datetime.fromisoformat(data["since"]), fired=bool(data["fired"])
            )
        except (ValueError, KeyError, TypeError):
            log.warning("alerts.open_unreadable", ident=ident)
    return state


def _entry(alert: Alert, now: datetime) -> dict[Any, Any]:
    return {
        "status": "firing",
        "alert": alert.rule.name,
        "severity": str(alert.rule.severity),
        "runbook": alert.rule.runbook,
        "key": alert.key,
        "ident": alert.ident,
        "summary": alert.summary,
        "at": now.astimezone(UTC).isoformat(),
        **dict(alert.labels),
    }


def _publish(client: redis.Redis, result: Evaluation, now: datetime) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.set(LAST_TICK_KEY, now.astimezone(UTC).isoformat())
    pipe.delete(OPEN_KEY)
    if result.state:
        pipe.hset(
            OPEN_KEY,
            mapping={
                ident: json.dumps({"since": seen.since.isoformat(), "fired": seen.fired})
                for ident, seen in result.state.items()
            },
        )
    for alert in result.fired:
        pipe.xadd(ALERT_STREAM, _entry(alert, now), maxlen=_STREAM_MAXLEN, approximate=True)
    for ident in result.resolved:
        rule = ident.split(":", 1)[0]
        fields: dict[Any, Any] = {
            "status": "resolved",
            "alert": rule,
            "ident": ident,
            "at": now.astimezone(UTC).isoformat(),
        }
        pipe.xadd(ALERT_STREAM, fields, maxlen=_STREAM_MAXLEN, approximate=True)
    pipe.execute()


def run_tick(
    engine: Engine, client: redis.Redis, now: datetime, config: AlertConfig | None = None
) -> TickResult:
    """Evaluate every §12.3 condition once; publish firings and resolutions exactly once."""
    cfg = config or AlertConfig()
    token = uuid.uuid4().hex
    if not client.set(LOCK_KEY, token, nx=True, px=_LOCK_MS):
        return TickResult(ran=False)
    try:
        facts = load_facts(engine, client, now, cfg.slippage_window_s)
        current = conditions(facts, now, cfg.thresholds())
        result = evaluate(current, _load_open(client), now)
        _publish(client, result, now)
    finally:
        if client.get(LOCK_KEY) == token:
            client.delete(LOCK_KEY)
    for alert in result.fired:
        log.warning(
            "alert.firing",
            alert=alert.rule.name,
            severity=str(alert.rule.severity),
            runbook=alert.rule.runbook,
            key=alert.key,
            summary=alert.summary,
            **dict(alert.labels),
        )
    for ident in result.resolved:
        log.info("alert.resolved", ident=ident)
    return TickResult(
        ran=True,
        fired=tuple(a.ident for a in result.fired),
        resolved=result.resolved,
        open=len(result.state),
    )
