"""`epm runbook depth-failure [--con-id N]`: the market-data lines that ask for depth (L2), whether
depth arrives (`models.runbook.assess_depth`: none yet, an IB error on the line, or stale), then
resubscribe each failed line: its requesters unsubscribe (the bridge cancels the depth request)
and subscribe again with the same options (a fresh reqMktDepth), so nobody loses the line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from models.runbook import DepthLine, assess_depth
from services.runbooks.run import Run, RunbookBridge, audit


def _line(raw: dict[str, object]) -> DepthLine:
    ts = raw.get("ts")
    updated = None
    if isinstance(ts, str) and ts:
        try:
            updated = datetime.fromisoformat(ts)
        except ValueError:
            updated = None
    requesters = raw.get("requesters")
    error = raw.get("error")
    return DepthLine(
        con_id=int(str(raw["con_id"])),
        requesters=sorted(str(x) for x in requesters) if isinstance(requesters, list | set) else [],
        depth=bool(raw.get("depth")),
        updated_at=updated,
        error=str(error) if error else None,
    )


def _resubscribe(bridge: RunbookBridge, con_id: int) -> Callable[[], str]:
    return lambda: "queued as " + ", ".join(bridge.resubscribe(con_id))


def depth_failure(
    engine: Engine,
    bridge: RunbookBridge,
    *,
    con_id: int | None,
    act: bool,
    actor: str,
    now: datetime,
    say: Callable[[str], None],
) -> Run:
    """Run the depth-failure runbook over every depth line, or only `con_id`'s."""
    run = Run("depth_failure", f"con_id:{con_id}" if con_id is not None else "depth", act, say)
    run.step("check", "market-data subscriptions asking for depth (md:subscribed, md:subs:opts)")
    lines = [_line(x) for x in bridge.depth_lines()]
    if con_id is not None:
        lines = [x for x in lines if x.con_id == con_id]
    if not lines:
        run.step("found", "no subscription asks for depth" + (f" on {con_id}" if con_id else ""))
        audit(engine, run, actor, now)
        return run
    for line in lines:
        seen = line.updated_at.isoformat() if line.updated_at else "never"
        run.step(
            "found",
            f"{line.con_id}: requesters {', '.join(line.requesters) or 'none'}; depth "
            f"{'present' if line.depth else 'absent'}; updated {seen}; "
            f"error {line.error or 'none'}",
        )
    run.step("check", "farms (ib:bridge:farms)")
    broken = sorted(k for k, v in bridge.farms().items() if v == "broken")
    run.step("found", f"broken: {', '.join(broken)}" if broken else "none broken")
    failed = assess_depth(lines, now)
    if not failed:
        run.step("decide", "depth arrives on every line; nothing to do")
    for failed_id, why in failed:
        run.step("decide", f"{failed_id}: {why}: resubscribe")
        run.action(f"resubscribe depth on {failed_id}", _resubscribe(bridge, failed_id))
    if failed:
        if broken:
            run.step("next", "a farm is broken: depth returns when IB reports it OK (code 2104)")
        run.step("next", "rerun this runbook in a minute to see depth arrive")
    audit(engine, run, actor, now, extra=[f"{c}: {w}" for c, w in failed])
    return run
