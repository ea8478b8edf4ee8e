"""Load what the alert conditions look at: active urgent intents, recent slippage, the last
positions reconciliation, and the bridge's published connection state."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import redis
from sqlalchemy.engine import Engine

from models.alerts import (
    URGENT_LEVELS,
    AlertFacts,
    BridgeFacts,
    PositionGap,
    SlippageResult,
    UrgentIntent,
)
from store import ops_facts

# Written by the bridge (`ibgateway_bridge.config.STATE_KEY`, `commands.ALERT_STREAM`); spelled
# here so services do not import the bridge.
BRIDGE_STATE_KEY = "ib:bridge:state"
BRIDGE_ALERT_STREAM = "epm:alerts"
ID_IN_USE_KIND = "client_id_in_use"
# How far back in `epm:alerts` to look for the bridge's 326 reports.
_ALERT_SCAN = 500


def _time(raw: object) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def bridge_facts(client: redis.Redis) -> BridgeFacts | None:
    """The bridge's state hash read back; None when no bridge ever ran against this Redis."""
    state: Mapping[str, str] = client.hgetall(BRIDGE_STATE_KEY)  # type: ignore[assignment]
    if not state:
        return None
    sessions: dict[int, str] = {}
    for name, value in state.items():
        suffix = name.removeprefix("client")
        if name.startswith("client") and suffix.isdigit():
            sessions[int(suffix)] = value
    started, stopped = _time(state.get("started_at")), _time(state.get("stopped_at"))
    taken: dict[int, datetime] = {}
    entries: list[tuple[str, dict[str, str]]] = client.xrevrange(  # type: ignore[assignment]
        BRIDGE_ALERT_STREAM, count=_ALERT_SCAN
    )
    for _id, fields in entries:
        if fields.get("kind") != ID_IN_USE_KIND:
            continue
        at, raw_id = _time(fields.get("at")), fields.get("client_id", "")
        if at is None or not raw_id.isdigit() or (started is not None and at < started):
            continue
        taken.setdefault(int(raw_id), at)
    return BridgeFacts(
        sessions=sessions,
        heartbeat_at=_time(state.get("heartbeat")),
        stopped=stopped is not None and (started is None or stopped >= started),
        id_in_use_at=taken,
    )


def load_facts(
    engine: Engine, client: redis.Redis, now: datetime, slippage_window_s: float
) -> AlertFacts:
    with engine.connect() as conn:
        urgent = [
            UrgentIntent(r.signal_id, r.strategy, r.urgency, r.received_at)
            for r in ops_facts.active_intents(conn, URGENT_LEVELS)
        ]
        since = now - timedelta(seconds=slippage_window_s)
        slippage = [
            SlippageResult(r.signal_id, r.strategy, r.slippage_bps, r.limit_bps)
            for r in ops_facts.intent_slippage_since(conn, since)
        ]
        gaps = [
            PositionGap(g.con_id, g.symbol, g.venue, g.ledger)
            for g in ops_facts.latest_position_gaps(conn)
        ]
    return AlertFacts(urgent=urgent, slippage=slippage, gaps=gaps, bridge=bridge_facts(client))
