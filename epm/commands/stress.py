"""`epm stress --intents N --over SECONDS`: load the running system through its real queues.

Needs the system up (the Procfile, or `epm demo`'s processes): it only sends intents where
signal producers do and reads the ledger. Prints accepted, refused by reason, latency
percentiles and the bridge's largest send backlog, and saves the whole account (one line per
intent) as JSON. Exit 0 only when every intent sent is accounted for, exactly once.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import typer

from epm.cli import app


def _ms(value: object) -> str:
    return "-" if value is None else f"{float(str(value)):.1f}"


@app.command("stress")
def stress_command(
    intents: int = typer.Option(500, "--intents", min=1, help="How many intents to send."),
    over: float = typer.Option(60.0, "--over", min=0.0, help="Seconds to spread them over."),
    seed: int = typer.Option(1, "--seed", help="The mix's seed (same seed, same intents)."),
    wait: float = typer.Option(
        120.0, "--wait", min=0.0, help="Seconds after the last send to wait for outcomes."
    ),
    until_ended: bool = typer.Option(
        True,
        "--until-ended/--until-decided",
        help="Wait for accepted intents to end (default), or only for intake's decision.",
    ),
    out: Path | None = typer.Option(  # noqa: B008
        None, "--out", help="Where to save the JSON account (default: under the data dir)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Send N intents over SECONDS through the real queues and account for every one."""
    import redis

    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from models.stress import to_json
    from services.stress import run_stress

    settings = get_settings()
    run = uuid.uuid4().hex[:8]
    say = (lambda _m: None) if as_json else (lambda m: typer.echo(f"epm stress: {m}"))
    try:
        result = run_stress(
            redis_client=get_redis(settings),
            database_url=settings.resolved_database_url(),
            count=intents,
            over_s=over,
            seed=seed,
            run=run,
            wait_s=wait,
            until_ended=until_ended,
            progress=say,
        )
    except redis.RedisError as e:
        typer.echo(f"epm stress: Redis unreachable ({type(e).__name__}: {e})", err=True)
        raise typer.Exit(3) from e
    path = result.save(out or settings.data_dir / "stress" / f"stress-{run}.json")
    summary = {"run": run, "saved": str(path), **to_json(result.report)}
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        r = result.report
        typer.echo(f"run {run}: sent {r.sent}, accepted {r.accepted}, refused {r.rejected}")
        for reason, n in r.rejected_by_reason.items():
            typer.echo(f"  refused {reason}: {n}")
        for status, n in r.by_status.items():
            typer.echo(f"  status {status}: {n}")
        typer.echo("| latency | n | p50 ms | p95 ms | p99 ms | max ms |")
        typer.echo("|---|---|---|---|---|---|")
        for label, lat in (("send → decided", r.decided), ("send → first fill", r.first_fill)):
            typer.echo(
                f"| {label} | {lat.n} | {_ms(lat.p50_ms)} | {_ms(lat.p95_ms)} | "
                f"{_ms(lat.p99_ms)} | {_ms(lat.max_ms)} |"
            )
        typer.echo(f"largest bridge send backlog (pacing): {r.max_backlog}")
        if r.still_working:
            typer.echo(f"still working when the wait ended: {r.still_working}")
        if r.unaccounted:
            typer.echo(f"UNACCOUNTED ({len(r.unaccounted)}): {', '.join(r.unaccounted[:20])}")
        if r.duplicated:
            typer.echo(f"DUPLICATED ({len(r.duplicated)}): {', '.join(r.duplicated[:20])}")
        typer.echo(f"saved: {path}")
    if not result.report.all_accounted:
        raise typer.Exit(1)
