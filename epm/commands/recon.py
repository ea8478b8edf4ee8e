"""`epm recon [--kind executions|positions] [--json] [--timeout S]`: reconcile with the venue now.

Runs what beat runs (`tasks.recon.run_executions` / `run_positions`, `docs/recon.md`) in this
process, through the bridge (it must be running), writes the `recon_runs` row and prints the
result: both kinds unless `--kind` names one. Exit code: 0 ok or warning, 1 critical
differences, 2 the venue did not answer (a failed run), 3 epm's own stores unreachable.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any

import typer

from epm.cli import app


class Kind(StrEnum):
    EXECUTIONS = "executions"
    POSITIONS = "positions"


def _exit_code(statuses: list[str]) -> int:
    if "failed" in statuses:
        return 2
    if "critical" in statuses:
        return 1
    return 0


def _print(result: dict[str, Any]) -> None:
    typer.echo(
        f"{result['kind']}: {result['status']} (run {result['run_id']}): "
        f"checked {result['checked']}, recovered {result['recovered']}, "
        f"flagged {result['flagged']}"
    )
    reason = (result.get("details") or {}).get("reason")
    if reason:
        typer.echo(f"  venue did not answer: {reason}")
    for diff in result["differences"][:50]:
        kind = diff.get("type")
        if kind == "position":
            typer.echo(
                f"  {diff['severity']}: {diff.get('symbol') or diff['con_id']} "
                f"(con_id {diff['con_id']}) venue {diff['venue']} ledger {diff['ledger']} "
                f"difference {diff['difference']}"
            )
        elif kind == "unknown_fill":
            typer.echo(
                f"  unknown to the venue: {diff['exec_id']} {diff['side']} {diff['shares']} "
                f"con_id {diff['con_id']} ({diff.get('strategy')}, {diff.get('order_ref')})"
            )
        else:
            typer.echo(f"  {kind}: {json.dumps(diff, default=str)}")
    if len(result["differences"]) > 50:
        typer.echo(f"  … and {len(result['differences']) - 50} more (--json lists all)")
    recovered = (result.get("details") or {}).get("recovered_exec_ids") or []
    if recovered:
        typer.echo(f"  recovered: {', '.join(recovered[:20])}{' …' if len(recovered) > 20 else ''}")


@app.command("recon")
def recon_command(
    kind: str | None = typer.Option(
        None, "--kind", help="executions or positions only (default: both)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.1, help="Seconds to wait for the venue (EPM_RECON_TIMEOUT_S, 30)."
    ),
) -> None:
    """Reconcile with the venue now: executions (missing ones recovered) and/or positions."""
    import redis
    import sqlalchemy as sa

    from tasks.app import Stores
    from tasks.recon import run_executions, run_positions

    if kind is not None and kind not in set(Kind):
        typer.echo(f"epm recon: --kind must be executions or positions, not {kind!r}", err=True)
        raise typer.Exit(2)
    kinds = [Kind(kind)] if kind is not None else [Kind.EXECUTIONS, Kind.POSITIONS]
    results: list[dict[str, Any]] = []
    try:
        stores = Stores.open()
        for each in kinds:
            if each is Kind.EXECUTIONS:
                results.append(run_executions(stores, timeout).as_dict())
            else:
                results.append(run_positions(stores, "on_demand", timeout).as_dict())
    except redis.RedisError as e:
        typer.echo(f"epm recon: Redis unreachable ({type(e).__name__}: {e})", err=True)
        raise typer.Exit(3) from e
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm recon: the ledger database cannot be used ({type(e).__name__}); "
            "is it migrated (`epm db upgrade`)?",
            err=True,
        )
        raise typer.Exit(3) from e
    if as_json:
        json.dump(results, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        for result in results:
            _print(result)
    code = _exit_code([str(r["status"]) for r in results])
    if code:
        raise typer.Exit(code)
