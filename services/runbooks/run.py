"""What every runbook shares: the bridge it talks to, the steps it records, its audit row."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from store.audit import insert_audit
from store.db import write_transaction


class RunbookBridge(Protocol):
    """The bridge as the runbooks see it (reads of its Redis state, commands on its stream)."""

    def state(self) -> Mapping[str, str]:
        """`ib:bridge:state`: client{id} session states, heartbeat, last order id."""

    def lease(self) -> tuple[str | None, int]:
        """The lease holder (None: no bridge) and its remaining ms."""

    def farms(self) -> Mapping[str, str]:
        """Market-data farms: name → "ok" / "broken"."""

    def sent_marker(self, client_id: int, ib_order_id: int) -> str | None:
        """The bridge's placement marker of the order ("sent:…", "pending:…"), None unsent."""

    def cancel_asked(self, client_id: int, ib_order_id: int) -> bool:
        """True once a cancel of the order was sent or decided."""

    def executions(self) -> list[dict[str, Any]]:
        """The venue's executions of its day, as IB's reqExecutions gives them without a
        filter (a snapshot through the bridge). Raises
        `services.recon.venue.VenueUnansweredError`."""

    def cancel(self, ib_order_id: int) -> str:
        """Queue a cancel; the command's stream id."""

    def resync_executions(self) -> str:
        """Queue reqExecutions whose answers go to the ledger as fills (the connect resync)."""

    def resync_positions(self) -> str:
        """Queue reqPositions (the venue's positions to `ib:positions:{account}`)."""

    def depth_lines(self) -> list[dict[str, Any]]:
        """Every con_id whose subscription asks for depth: con_id, requesters, depth (present),
        ts (last update of the cache), error (IB's code and message, if any)."""

    def resubscribe(self, con_id: int) -> list[str]:
        """Close and reopen the con_id's line with the same requesters and options."""


@dataclass(slots=True)
class Run:
    """One runbook run: its steps ("check", "found", "action", "would", "next") as printed."""

    name: str
    target: str
    act: bool
    say: Callable[[str], None]
    steps: list[tuple[str, str]] = field(default_factory=list)
    acted: list[str] = field(default_factory=list)

    def step(self, kind: str, text: str) -> None:
        self.steps.append((kind, text))
        self.say(f"{len(self.steps):>2}. [{kind}] {text}")

    def action(self, text: str, do: Callable[[], str]) -> None:
        """Do it (with `--yes`) or say it would be done."""
        if not self.act:
            self.step("would", f"{text} (dry run: --yes to do it)")
            return
        outcome = do()
        self.acted.append(text)
        self.step("action", f"{text}: {outcome}")


def audit(engine: Engine, run: Run, actor: str, at: datetime, extra: Sequence[str] = ()) -> None:
    """One audit row for the run, with every step, what it did and whether it was a dry run."""
    details = {
        "mode": "act" if run.act else "dry_run",
        "steps": json.dumps([{"kind": k, "text": t} for k, t in run.steps]),
        "acted": json.dumps(run.acted),
        **{f"note_{i}": note for i, note in enumerate(extra)},
    }
    with write_transaction(engine) as conn:
        insert_audit(
            conn,
            ts=at,
            actor=actor,
            action=f"runbook.{run.name}",
            target=run.target,
            details=details,
        )
