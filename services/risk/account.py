"""The account's headroom as the risk connection (client 2) reports it, for the pre-trade gates.

The bridge keeps the account summary (reqAccountSummary on client 2) in `ib:account:{account}`
and its connections' states and heartbeat in `ib:bridge:state`. The summary is pushed by IB as
it changes, so its figures are current while client 2 is READY and the bridge's heartbeat is
recent; otherwise the facts say why they cannot be used and the gate refuses (fails closed).

`EPM_HEADROOM_CHECK` decides when the gate runs: `required` always (no bridge: refused),
`off` never, `auto` (default) whenever a bridge with a risk connection is running, i.e. the
bridge's state names a `client{N}` for the account client id. A deployment with no risk
connection at all (intake on its own, replay) has no account to check.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import cast

import redis

from models.risk import AccountFacts

__all__ = ["ACCOUNT_KEY", "BRIDGE_STATE_KEY", "account_facts"]

# The bridge's keys (ibgateway_bridge.outbox.ACCOUNT_KEY, runtime.STATE_KEY).
ACCOUNT_KEY = "ib:account:{account}"
BRIDGE_STATE_KEY = "ib:bridge:state"
HEARTBEAT_MAX_AGE = timedelta(seconds=10)


def _decimal(value: str | None) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _summary(redis_client: redis.Redis, account: str | None) -> dict[str, str] | None:
    if account:
        found = cast(dict[str, str], redis_client.hgetall(ACCOUNT_KEY.format(account=account)))
        return found or None
    keys = sorted(
        str(k) for k in redis_client.scan_iter(match=ACCOUNT_KEY.format(account="*"), count=100)
    )
    for key in keys:  # one account per gateway login; the first that has figures
        found = cast(dict[str, str], redis_client.hgetall(key))
        if found.get("NetLiquidation"):
            return found
    return None


def account_facts(
    redis_client: redis.Redis,
    *,
    now: datetime,
    mode: str = "auto",
    client_id: int = 2,
    account: str | None = None,
) -> AccountFacts | None:
    """The headroom facts, or None when the gate is not to run (see the module doc)."""
    if mode == "off":
        return None
    state = cast(dict[str, str], redis_client.hgetall(BRIDGE_STATE_KEY))
    field = f"client{client_id}"
    if mode == "auto" and field not in state:
        return None
    connection = state.get(field)
    if connection != "READY":
        return AccountFacts(
            live=False, why=f"the risk connection (client {client_id}) is {connection or 'absent'}"
        )
    heartbeat = state.get("heartbeat")
    try:
        beat = datetime.fromisoformat(heartbeat) if heartbeat else None
    except ValueError:
        beat = None
    if beat is None or now - beat > HEARTBEAT_MAX_AGE:
        age = "never" if beat is None else f"{(now - beat).total_seconds():.0f} s ago"
        return AccountFacts(live=False, why=f"the bridge's last heartbeat was {age}")
    summary = _summary(redis_client, account)
    if summary is None:
        return AccountFacts(live=False, why="no account summary received from client 2")
    return AccountFacts(
        live=True,
        net_liquidation=_decimal(summary.get("NetLiquidation")),
        excess_liquidity=_decimal(summary.get("ExcessLiquidity")),
        available_funds=_decimal(summary.get("AvailableFunds")),
    )
