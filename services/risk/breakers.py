"""Circuit breakers (issue 13 item 5): facts the bridge and reconciliation publish → a global HALT.

Read, never written, by this module: the bridge's state hash (`ib:bridge:state`: one
`client{id}` field per IB session, its heartbeat, `stopped_at`) and the newest `recon_runs` of
each kind. One thing is kept here: since when the orders session has not been READY
(`epm:risk:not_ready_since`), because the bridge publishes a state, not how long it has held.

Causes (`models.strategy_state.breaker_causes`): a session in ID_IN_USE (IB error 326: another
client holds our id), the orders session not READY (or the bridge's heartbeat stale, or the
bridge stopped) for longer than the configured limit, a reconciliation whose newest run is
critical. The instrument freeze on a tick-49 halt needs no state: the bridge keeps
`epm:halt:instrument:{conid}` and `md:{conid}.halted`; intake refuses INSTRUMENT_HALTED and
the orders path holds the child (`models.child_orders.price` on a halted snapshot).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import redis
from sqlalchemy.engine import Connection, Engine

from models.strategy_state import BreakerFacts, Cause, breaker_causes, strictest
from services.orders.venue import Venue
from services.risk.states import Applied, rule_change
from store import recon_runs

__all__ = [
    "BRIDGE_STATE_KEY",
    "HEARTBEAT_STALE",
    "NOT_READY_SINCE_KEY",
    "RULE_ACTOR",
    "breaker_facts",
    "standing_causes",
    "trip",
]

# The bridge's hash (`ibgateway_bridge.config.STATE_KEY`), pinned equal by a test.
BRIDGE_STATE_KEY = "ib:bridge:state"
NOT_READY_SINCE_KEY = "epm:risk:not_ready_since"
# The bridge writes its heartbeat every second; this much silence means it is gone or frozen.
HEARTBEAT_STALE = timedelta(seconds=5)
RULE_ACTOR = "rule:breaker"


def _ready(state: dict[str, str], orders_client_id: int, now: datetime) -> bool:
    if state.get(f"client{orders_client_id}") != "READY":
        return False
    if state.get("stopped_at"):
        return False
    try:
        beat = datetime.fromisoformat(state.get("heartbeat", ""))
    except ValueError:
        return False
    return beat.tzinfo is not None and now - beat <= HEARTBEAT_STALE


def _newest_recon(conn: Connection) -> dict[str, str]:
    newest: dict[str, str] = {}
    for run in recon_runs.latest(conn, None, 50):
        newest.setdefault(run.kind, run.status)
    return newest


def breaker_facts(
    conn: Connection,
    client: redis.Redis,
    *,
    orders_client_id: int,
    disconnect_limit: timedelta,
    now: datetime,
) -> BreakerFacts:
    """The breakers' facts now; records (or clears) when the orders session stopped being READY."""
    raw = client.hgetall(BRIDGE_STATE_KEY)
    state = {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }
    sessions = {k: v for k, v in state.items() if k.startswith("client") and k[6:].isdigit()}
    since: datetime | None = None
    if _ready(state, orders_client_id, now):
        client.delete(NOT_READY_SINCE_KEY)
    else:
        client.set(NOT_READY_SINCE_KEY, now.isoformat(), nx=True)
        stored = client.get(NOT_READY_SINCE_KEY)
        text = stored.decode() if isinstance(stored, bytes) else str(stored or now.isoformat())
        since = datetime.fromisoformat(text)
    return BreakerFacts(sessions, since, disconnect_limit, _newest_recon(conn), now)


def standing_causes(
    conn: Connection,
    client: redis.Redis,
    *,
    orders_client_id: int,
    disconnect_limit: timedelta,
    now: datetime,
) -> list[Cause]:
    """The breakers' causes now (what a global resume is checked against)."""
    facts = breaker_facts(
        conn,
        client,
        orders_client_id=orders_client_id,
        disconnect_limit=disconnect_limit,
        now=now,
    )
    return breaker_causes(facts)


def trip(
    engine: Engine,
    client: redis.Redis,
    venue: Venue,
    *,
    orders_client_id: int,
    disconnect_limit: timedelta,
    now: datetime,
) -> Applied | None:
    """One breaker pass: the desk HALTED on the first standing cause (None: none, or no change)."""
    with engine.connect() as conn:
        causes = standing_causes(
            conn,
            client,
            orders_client_id=orders_client_id,
            disconnect_limit=disconnect_limit,
            now=now,
        )
    worst = strictest(causes)
    if worst is None:
        return None
    done = rule_change(engine, venue, worst, actor=RULE_ACTOR, now=now)
    return done if done.changed else None
