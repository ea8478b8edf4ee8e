"""Post-trade monitoring (issue 13 item 4): the books against the strategies' limits, on beat.

Load every strategy's positions and P&L from the books (`services.books.views.position_lines`:
the ledger's quantity, average cost, realized P&L and fees, unrealized from the stored mark) →
`models.strategy_state.post_trade_causes` per strategy → the strictest cause applied by
`services.risk.states.rule_change`. Running it again on the same books changes nothing (a rule
only tightens, and a state already as strict is left), so a doubled or late tick is harmless,
and a fill is seen by the first tick after its commit whichever worker recorded it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import redis
from sqlalchemy.engine import Connection, Engine

from models.fills import ZERO
from models.limits import Limits
from models.pnl import aggregate, by_strategy
from models.strategy_state import Cause, StrategyFacts, post_trade_causes, strictest
from services.books.views import position_lines
from services.orders.venue import Venue
from services.risk.states import Applied, rule_change
from store.session_baselines import strategy_net_before

__all__ = ["RULE_ACTOR", "monitor", "standing_causes", "strategy_facts"]

RULE_ACTOR = "rule:post_trade"


def strategy_facts(conn: Connection, since: datetime | None = None) -> list[StrategyFacts]:
    """Each strategy in the books: signed position per instrument and net P&L (None while
    unmarked), since `since` when given: less the net of its newest snapshot before then."""
    baseline = {} if since is None else strategy_net_before(conn, since)
    lines, _rows = position_lines(conn)
    positions: dict[str, dict[str, Decimal]] = {}
    for line in lines:
        held = positions.setdefault(line.strategy, {})
        key = line.symbol or str(line.con_id)
        held[key] = held.get(key, Decimal(0)) + line.quantity
    out: list[StrategyFacts] = []
    for total in aggregate(lines, by_strategy):
        pnl = None if total.unrealized is None else total.net - baseline.get(total.key, ZERO)
        out.append(StrategyFacts(total.key, positions.get(total.key, {}), pnl))
    return out


def standing_causes(conn: Connection, limits: Limits, since: datetime | None = None) -> list[Cause]:
    """Every post-trade cause the books show now (what a resume is checked against); the
    drawdown counted from `since` (the trading day's start, see `tasks.risk`)."""
    causes: list[Cause] = []
    for facts in strategy_facts(conn, since):
        causes += post_trade_causes(facts, limits)
    return causes


def monitor(
    engine: Engine,
    venue: Venue,
    limits: Limits,
    now: datetime,
    halts: redis.Redis | None = None,
    since: datetime | None = None,
) -> list[Applied]:
    """One post-trade pass: each strategy tightened to its strictest standing cause (`halts`:
    the Redis the bridge reads its halt keys from, see `services.risk.states`)."""
    with engine.connect() as conn:
        causes = standing_causes(conn, limits, since)
    by_scope: dict[str, list[Cause]] = {}
    for cause in causes:
        by_scope.setdefault(cause.scope, []).append(cause)
    applied: list[Applied] = []
    for scope_causes in by_scope.values():
        worst = strictest(scope_causes)
        if worst is not None:
            done = rule_change(engine, venue, worst, actor=RULE_ACTOR, now=now, halts=halts)
            if done.changed:
                applied.append(done)
    return applied
