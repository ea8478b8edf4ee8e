"""`epm runbook gateway-reconnect`: the bridge's lease, connections, heartbeat and farms, a probe
of the venue (an executions snapshot), then what a reconnect needs (`models.runbook
.assess_gateway`). The bridge has no reconnect command: it reconnects by itself with capped
backoff, and replays the venue's executions and open orders once connected. What an operator can
force through its command stream is that resync: executions into the ledger and positions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from models.runbook import GatewayFacts, assess_gateway
from services.recon.venue import VenueUnansweredError
from services.runbooks.run import Run, RunbookBridge, audit


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def gateway_reconnect(
    engine: Engine,
    bridge: RunbookBridge,
    *,
    act: bool,
    actor: str,
    now: datetime,
    say: Callable[[str], None],
) -> Run:
    """Run the gateway-reconnect runbook."""
    run = Run("gateway_reconnect", "bridge", act, say)
    run.step("check", "the bridge lease (ib:bridge:lease)")
    holder, ttl = bridge.lease()
    run.step("found", f"held by {holder} for {ttl} ms more" if holder else "nobody holds it")
    run.step("check", "the bridge's connections and heartbeat (ib:bridge:state)")
    state = dict(bridge.state())
    connections = {k: v for k, v in state.items() if k.startswith("client") and k[6:].isdigit()}
    heartbeat = _instant(state.get("heartbeat"))
    run.step(
        "found",
        ", ".join(f"{k} {v}" for k, v in sorted(connections.items())) or "no connection recorded",
    )
    run.step("found", f"heartbeat {heartbeat.isoformat() if heartbeat else 'none'}")
    broken = sorted(k for k, v in bridge.farms().items() if v == "broken")
    run.step("check", "market-data farms (ib:bridge:farms)")
    run.step("found", f"broken: {', '.join(broken)}" if broken else "none broken")
    answered: bool | None = None
    connected = bool(connections) and all(v == "READY" for v in connections.values())
    if holder is not None and not connected:
        run.step("check", "the venue: not asked, a session is not READY (it could not answer)")
    if holder is not None and connected:
        run.step("check", "the venue answers: a reqExecutions snapshot")
        try:
            count = len(bridge.executions())
            answered = True
            run.step("found", f"the venue answered with {count} execution(s)")
        except VenueUnansweredError as e:
            answered = False
            run.step("found", f"no answer: {e}")
    problems, action = assess_gateway(
        GatewayFacts(holder, ttl, connections, heartbeat, broken, answered), now
    )
    run.step("decide", "; ".join(problems) if problems else "the gateway path is healthy")
    if action == "start_bridge":
        run.step("next", "start the bridge (`epm bridge`, or its Procfile process); then rerun")
    elif action == "wait":
        run.step(
            "next",
            "the bridge is reconnecting by itself (capped backoff, EPM_BRIDGE_RECONNECT_CAP_S); "
            "if IB Gateway itself is down, restart it; rerun this runbook once READY",
        )
    else:
        run.action(
            "resync the venue's executions into the ledger",
            lambda: f"queued as {bridge.resync_executions()}",
        )
        run.action("resync the venue's positions", lambda: f"queued as {bridge.resync_positions()}")
    audit(engine, run, actor, now, extra=problems)
    return run
