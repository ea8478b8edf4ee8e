"""`SimServer`: the TCP server, the client-id registry and the driver loop in one object.

Usable three ways:
- in-process on a running event loop: `server = SimServer(stepped=True); await server.start();
  server.port; await server.advance(5); await server.stop()`;
- from synchronous code (tests, drills): `with SimServerThread(stepped=True) as sim: sim.port;
  sim.advance(5)` runs the same object on a private event loop in a thread;
- as a process: `epm sim --port N` (see `tws_sim.server.process` for a helper that starts it and
  reads the chosen port).

The market and the venue are plain objects owned by this server; every socket callback and the
driver loop run on one event loop thread, so no locking is needed anywhere in the simulator.

This module is the top of the server package: it builds the sessions, the subscription registry,
the handlers and the driver and hands each itself, and each of those sees it only through a
small protocol of what it uses (`SessionHost`, `HandlerHost`, `DriverHost`), so none of them
imports this module and the package has no import cycle (a test pins it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from tws_sim.engine import Venue
from tws_sim.market import Catalog, Market, Scenario, SimClock
from tws_sim.market.clock import et_datetime, next_session, parse_hhmm
from tws_sim.protocol import framing
from tws_sim.server import out
from tws_sim.server.driver import Driver
from tws_sim.server.faults import PACING_LIMIT, FaultSchedule, server_actions
from tws_sim.server.handlers import Handlers
from tws_sim.server.session import Phase, Session
from tws_sim.server.subscriptions import Subscriptions

log = logging.getLogger("tws_sim.server")

ET = ZoneInfo("America/New_York")
DEFAULT_ACCOUNT = "DU1234567"
T = TypeVar("T")

# Farm notices TWS sends every client after it logs on (error messages with reqId -1).
FARM_OK = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
MD_FARM_BROKEN = (2103, "Market data farm connection is broken:usfarm")
MD_FARM_OK = FARM_OK[0]
CONNECTIVITY_LOST = (1100, "Connectivity between IB and Trader Workstation has been lost.")
CONNECTIVITY_RESTORED = (
    1102,
    "Connectivity between IB and Trader Workstation has been restored - data maintained.",
)


def resolve_start(scenario: Scenario, start: datetime | str | None, wall_now: datetime) -> datetime:
    """The simulated start instant (aware UTC).

    `start` may be an aware datetime (used as is), an ET wall time "HH:MM[:SS]" (on the
    scenario's session date, else today's ET date, moved to the next XNYS session unless the
    scenario is always open), or None (the scenario's own start time on that day, else `wall_now`).
    """
    if isinstance(start, datetime):
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        return start.astimezone(UTC)
    at = parse_hhmm(start) if isinstance(start, str) else scenario.start
    if at is None:
        return wall_now.astimezone(UTC)
    day: date = scenario.session_date or wall_now.astimezone(ET).date()
    if not scenario.always_open:
        day = next_session(day)
    return et_datetime(day, at)


class SimServer:
    """The simulated TWS: sockets, sessions, market, venue and faults on one event loop."""

    # Built by start() (`_build`), once the scenario, seed and start instant are resolved: the
    # venue parts and the server parts that need them. They do not exist before start().
    scenario: Scenario
    clock: SimClock
    catalog: Catalog
    market: Market
    venue: Venue
    subs: Subscriptions
    handlers: Handlers
    driver: Driver

    def __init__(
        self,
        *,
        scenario: Scenario | Path | str | None = None,
        seed: int | None = None,
        start: datetime | str | None = None,
        speed: float = 1.0,
        stepped: bool = False,
        exec_log: Path | None = None,
        state_dir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        account: str = DEFAULT_ACCOUNT,
        pacing_limit: int | None = PACING_LIMIT,
        tick_s: float = 0.05,
        incarnation: int | None = None,
    ) -> None:
        if isinstance(start, datetime) and start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.scenario_arg = scenario
        self.seed_arg = seed
        self.start_arg = start
        self.seed = 0
        self.start_at = datetime.now(UTC)
        self.speed = speed
        self.stepped = stepped
        self.exec_log = Path(exec_log) if exec_log else None
        self.state_dir = Path(state_dir) if state_dir else None
        self.host = host
        self.requested_port = port
        self.account = account
        self.pacing_limit = pacing_limit
        self.tick_s = tick_s
        # Exec ids and perm ids never repeat across instances (tws_sim.engine.execids): the
        # wall-clock milliseconds at creation, unless a caller pins it to replay identical ids.
        self.incarnation = incarnation if incarnation is not None else time.time_ns() // 1_000_000

        self.sessions: set[Session] = set()
        self.clients: dict[int, Session] = {}
        self.refuse_until: datetime | None = None
        self.md_farm_ok = True
        self.connectivity_ok = True
        self.duplicate_status = False
        self.dropped_clients: set[int] = set()
        self.started = False

        self._port = 0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._driver_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._reopen_task: asyncio.Task[None] | None = None
        self._built = False  # whether start() has built the parts below
        self.faults = FaultSchedule()

    # ---------------------------------------------------------------------------------------------
    # life cycle

    def _build(self) -> None:
        """The scenario, seed, start instant and every part built from them (see the class)."""
        arg = self.scenario_arg
        if arg is None:
            self.scenario = Scenario.default()
        elif isinstance(arg, Path):
            self.scenario = Scenario.load(arg)
        elif isinstance(arg, str):
            self.scenario = Scenario.named(arg)
        else:
            self.scenario = arg
        self.seed = self.seed_arg if self.seed_arg is not None else int(self.scenario.seed)
        self.start_at = resolve_start(self.scenario, self.start_arg, datetime.now(UTC))
        if self.stepped:
            self.clock = SimClock.stepped(self.start_at)
        else:
            self.clock = SimClock(self.start_at, self.speed)
        session_date = self.start_at.astimezone(ET).date()
        self.catalog = Catalog.build(session_date, self.scenario)
        self.market = Market(self.catalog, self.scenario, self.seed, self.start_at)
        self.venue = Venue(
            self.catalog,
            self.market,
            self.scenario,
            account=self.account,
            state_dir=self.state_dir,
            exec_log=self.exec_log,
            incarnation=self.incarnation,
        )
        self.faults = FaultSchedule(server_actions(self.scenario.faults, self.start_at))
        self.subs = Subscriptions(self.market)
        self.handlers = Handlers(self)
        self.driver = Driver(self)
        self._built = True

    async def start(self) -> int:
        """Build the venue, listen on host:port (0 = OS-chosen) and start the driver; → port."""
        if self.started:
            return self._port
        self._loop = asyncio.get_running_loop()
        self._build()
        await self._listen(self.requested_port)
        self.started = True
        if not self.stepped:
            self._driver_task = asyncio.create_task(self._drive(), name="tws_sim.driver")
        log.info(
            "tws_sim listening on %s:%d (v%d..%d)",
            self.host,
            self._port,
            framing.MIN_SERVER_VERSION,
            framing.MAX_SERVER_VERSION,
        )
        return self._port

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Session(self), self.host, port, reuse_address=True
        )
        sock = self._server.sockets[0]
        self._port = sock.getsockname()[1]

    @property
    def port(self) -> int:
        return self._port

    def now(self) -> datetime:
        """The simulated time."""
        return self.clock.now()

    async def advance(self, seconds: float) -> None:
        """Stepped mode: move the simulated clock and run the driver through it.

        Steps in at most one-second slices so that faults, delayed commissions and periodic
        pushes that fall inside a long advance happen at their own simulated time.
        """
        if not self.stepped:
            raise RuntimeError("advance() is only for a stepped clock (SimServer(stepped=True))")
        remaining = float(seconds)
        while remaining > 1e-9:
            step = min(1.0, remaining)
            self.clock.advance(step)
            remaining -= step
            self.driver.step(self.clock.now())
        await self._settle()

    async def _settle(self) -> None:
        """Let what a step started finish (a re-opened listener is bound before we return)."""
        await asyncio.sleep(0)
        task = self._reopen_task
        if task is not None and not task.done():
            await task

    async def pump(self) -> None:
        """Run one driver step at the current simulated time (stepped mode, no time passes)."""
        self.driver.step(self.clock.now())
        await self._settle()

    async def _drive(self) -> None:
        """Real-time / accelerated mode: step the driver every `tick_s` of wall time."""
        while not self._stopping:
            try:
                self.driver.step(self.clock.now())
            except Exception:
                log.exception("driver step failed")
            await asyncio.sleep(self.tick_s)

    async def stop(self) -> None:
        """Close every session and the listening socket, stop the driver, flush the venue."""
        self._stopping = True
        if self._driver_task is not None:
            self._driver_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver_task
            self._driver_task = None
        if self._reopen_task is not None:
            self._reopen_task.cancel()
            self._reopen_task = None
        for session in list(self.sessions):
            session.close("server stopping")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._built:
            self.venue.close()
        self.started = False

    # ---------------------------------------------------------------------------------------------
    # sessions and the client-id registry

    def connection_time(self) -> str:
        """The handshake's connection time (simulated). The codec reads zone-less request
        times (execution filters) as UTC, so the sim's "TWS local time" is UTC throughout."""
        return framing.connection_time(self.now())

    def on_connection(self, session: Session) -> None:
        if self.refuse_until is not None:
            # Normally unreachable (the listener is closed while refusing); a racing accept is
            # dropped the way a gateway that is going down drops it.
            session.abort("gateway refusing connections")
            return
        self.sessions.add(session)

    def register(self, session: Session, client_id: int) -> bool:
        """Claim `client_id` for `session`; False when a live session already holds it."""
        holder = self.clients.get(client_id)
        if holder is not None and holder is not session and holder.phase is not Phase.CLOSED:
            return False
        self.clients[client_id] = session
        session.connected_at = self.now()
        return True

    def on_ready(self, session: Session) -> None:
        """startApi accepted: nextValidId, managedAccounts and the farm notices."""
        cid = session.client_id
        assert cid is not None
        v = session.version
        session.send(out.next_valid_id(self.venue.next_order_id(cid), v))
        session.send(out.managed_accounts(self.account, v))
        notices = list(FARM_OK)
        if not self.md_farm_ok:
            notices[0] = MD_FARM_BROKEN
        for code, text in notices:
            session.send_error(-1, code, text)
        if not self.connectivity_ok:
            session.send_error(-1, *CONNECTIVITY_LOST)
        elif cid in self.dropped_clients:
            # A client that lost its session to a simulated gateway drop hears that connectivity
            # is back (1102) when it logs on again: its cue to resync (reqExecutions etc.).
            self.dropped_clients.discard(cid)
            session.send_error(-1, *CONNECTIVITY_RESTORED)

    def on_disconnect(self, session: Session) -> None:
        self.sessions.discard(session)
        cid = session.client_id
        if cid is not None and self.clients.get(cid) is session:
            del self.clients[cid]
        if self._built:
            self.subs.drop_session(session)

    def dispatch(self, session: Session, fields: list[str]) -> None:
        self.handlers.handle(session, fields)

    def ready_sessions(self) -> list[Session]:
        return [s for s in self.clients.values() if s.phase is Phase.READY]

    # ---------------------------------------------------------------------------------------------
    # faults

    def broadcast_error(self, code: int, text: str) -> None:
        for session in self.ready_sessions():
            session.send_error(-1, code, text)

    def set_md_farm(self, ok: bool) -> None:
        if ok == self.md_farm_ok:
            return
        self.md_farm_ok = ok
        self.broadcast_error(*(MD_FARM_OK if ok else MD_FARM_BROKEN))

    def set_connectivity(self, ok: bool) -> None:
        if ok == self.connectivity_ok:
            return
        self.connectivity_ok = ok
        self.broadcast_error(*(CONNECTIVITY_RESTORED if ok else CONNECTIVITY_LOST))

    def drop_all(self, refuse_s: float) -> None:
        """Simulate a gateway going away: every socket is closed (no goodbye message: a gateway
        that restarts or dies does not say 1100 first; 1100/1102 with the socket kept is
        `set_connectivity`), and connects are refused for `refuse_s` simulated seconds (the
        listening socket is closed, so connects get ECONNREFUSED). The venue keeps running:
        fills made meanwhile are recovered with reqExecutions after reconnecting, and a client
        id that was dropped hears 1102 when it logs on again."""
        for session in list(self.sessions):
            if session.ready and session.client_id is not None:
                self.dropped_clients.add(session.client_id)
            session.close("gateway dropped connections")
        if refuse_s <= 0:
            return
        self.refuse_until = self.now() + timedelta(seconds=refuse_s)
        if self._server is not None:
            self._server.close()
            self._server = None

    def reopen(self) -> None:
        """End a refusal window: listen again on the same port."""
        self.refuse_until = None
        if self._server is None and not self._stopping and self._loop is not None:
            self._reopen_task = self._loop.create_task(self._listen(self._port))


class SimServerThread:
    """A `SimServer` on its own event loop in a daemon thread, for synchronous callers.

    `with SimServerThread(stepped=True) as sim:` starts it; `sim.port`, `sim.advance(seconds)`,
    `sim.call(fn)` (run `fn(server)` on the loop thread and return its result) and `sim.stop()`.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.server = SimServer(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="tws_sim", daemon=True)
        self._ready: Future[int] = Future()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def boot() -> None:
            try:
                port = await self.server.start()
            except BaseException as e:
                self._ready.set_exception(e)
                return
            self._ready.set_result(port)

        self._loop.create_task(boot())
        self._loop.run_forever()
        self._loop.close()

    def start(self, timeout: float = 30.0) -> int:
        self._thread.start()
        return self._ready.result(timeout)

    @property
    def port(self) -> int:
        return self.server.port

    def run(self, coro_fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
        """Run a coroutine function on the server's loop and wait for its result."""
        fut = asyncio.run_coroutine_threadsafe(_call(coro_fn), self._loop)
        return fut.result(timeout)

    def call(self, fn: Callable[[SimServer], T], timeout: float = 60.0) -> T:
        """Run `fn(server)` on the loop thread (the only thread that may touch the server)."""

        async def go() -> T:
            return fn(self.server)

        return self.run(go, timeout)

    def advance(self, seconds: float, timeout: float = 120.0) -> None:
        self.run(lambda: self.server.advance(seconds), timeout)

    def now(self) -> datetime:
        return self.call(lambda s: s.now())

    def stop(self, timeout: float = 30.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.run(self.server.stop, timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> SimServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _call(coro_fn: Callable[[], Awaitable[T]]) -> T:
    return await coro_fn()
