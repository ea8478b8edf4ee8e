"""Test harness: the simulator in a thread, the bridge in-process or as a real process."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from celery import Celery

from epm.settings import Settings
from ibgateway_bridge import client_api
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.runtime import Bridge, BridgeConfig
from tws_sim.server.app import SimServerThread

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
SPY_CON = 756733
SPY_SPEC = cmds.ContractSpec(con_id=SPY_CON, symbol="SPY")


def poll(
    condition: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "condition"
) -> T:
    """Return the first truthy value of `condition()`, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def celery_for(redis_url: str) -> Celery:
    """A Celery app publishing to the test's Redis, with epm's routes (no celeryconfig import)."""
    app = Celery("bridge-tests", broker=redis_url)
    app.conf.task_routes = {"tasks.ledger.*": {"queue": "ledger"}, "tasks.pnl.*": {"queue": "pnl"}}
    app.conf.task_serializer = "json"
    return app


def ledger_messages(r: redis.Redis, task: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(task name, payload) of every callback waiting on the `ledger` queue (no worker running).

    A `record_batch` message is expanded into its items, named by the task each kind stands for.
    """
    out = []
    # kombu LPUSHes and workers BRPOP: the oldest message is at the right end.
    for raw in reversed(r.lrange("ledger", 0, -1)):
        msg = json.loads(raw)
        name = msg["headers"]["task"]
        arg = json.loads(base64.b64decode(msg["body"]))[0][0]
        items = (
            [(f"tasks.ledger.record_{i['kind']}", i["payload"]) for i in arg]
            if name == "tasks.ledger.record_batch"
            else [(name, arg)]
        )
        out.extend((n, p) for n, p in items if task is None or n == task)
    return out


def enqueue_many(r: redis.Redis, orders: list[tuple[int, cmds.OrderSpec]]) -> None:
    """XADD SPY placements (client order id `c-{id}`) in one round trip, as a burst arrives."""
    pipe = r.pipeline(transaction=False)
    for oid, spec in orders:
        cmd = cmds.PlaceOrder(
            order_id=oid, client_order_id=f"c-{oid}", contract=SPY_SPEC, order=spec
        )
        pipe.xadd(cmds.COMMAND_STREAM, cmds.encode_command(cmd, datetime.now(UTC)))
    pipe.execute()


def enqueue_new(r: redis.Redis, count: int, spec: cmds.OrderSpec) -> list[int]:
    """Allocate `count` fresh order ids and queue one `spec` placement under each."""
    ids = [client_api.allocate_order_id(r) for _ in range(count)]
    enqueue_many(r, [(oid, spec) for oid in ids])
    return ids


def sent_markers(r: redis.Redis) -> int:
    """How many orders client 1 has marked sent (`ib:sent:1:*` = `sent:…`)."""
    return sum(1 for k in r.scan_iter("ib:sent:1:*", count=1000) if r.get(k).startswith("sent:"))


def kill9_mid_burst(
    r: redis.Redis,
    redis_url: str,
    port: int,
    log_path: Path,
    action: Literal["BUY", "SELL"],
    kill_after: int,
) -> list[int]:
    """Queue 200 market orders to a bridge process and kill -9 it once `kill_after` are sent.

    Returns the order ids once the dead bridge's lease has expired, i.e. when a supervisor's
    restart would be let in.
    """
    # A short lease (renewed every ttl/3) so the restart is let in sooner than the default 5 s.
    first = BridgeProcess(redis_url, port, log_path, EPM_BRIDGE_LEASE_TTL_MS="2000").start()
    try:
        wait_ready(r)
        spec = cmds.OrderSpec(action=action, quantity=Decimal(1), order_type="MKT")
        ids = enqueue_new(r, 200, spec)
        poll(lambda: sent_markers(r) >= kill_after, 30, what=f"{kill_after} orders sent")
        first.signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.stop()
    assert sent_markers(r) < 200
    poll(lambda: r.get("ib:bridge:lease") is None, 15, what="dead bridge's lease expiry")
    return ids


def enqueue_ladder(r: redis.Redis, sim: SimServerThread, levels: int = 10) -> None:
    """Rest a BUY and a SELL per tick level around the SPY quote; wait until the venue has them."""
    quote = sim.call(lambda s: s.market.quote(SPY_CON))
    tick = Decimal("0.01")
    orders = []
    for k in range(levels):
        buy = cmds.OrderSpec(action="BUY", quantity=Decimal(1), lmt_price=quote.bid - k * tick)
        orders.append((client_api.allocate_order_id(r), buy))
        sell = cmds.OrderSpec(action="SELL", quantity=Decimal(1), lmt_price=quote.ask + k * tick)
        orders.append((client_api.allocate_order_id(r), sell))
    enqueue_many(r, orders)
    poll(lambda: len(sim_orders(sim)) == 2 * levels, 20, what=f"{2 * levels} orders at the sim")


def gateway_outage_with_fills(
    r: redis.Redis, sim: SimServerThread, refuse_s: int = 600
) -> set[str]:
    """Drop every connection and refuse reconnects while the (stepped) market fills resting
    orders; then let the bridge back in and wait until it is READY. Returns the exec ids made
    while it was away."""
    before = sim_exec_ids(sim)
    sim.call(lambda s: s.drop_all(refuse_s))
    poll(lambda: r.hget("ib:bridge:state", "client1") != "READY", 10, what="bridge sees drop")
    advanced = 0
    while advanced < refuse_s - 20 and not sim_exec_ids(sim) - before:
        sim.advance(10)
        advanced += 10
    during = sim_exec_ids(sim) - before
    assert during, "the market never reached a resting order during the outage"
    assert r.hget("ib:bridge:state", "client1") != "READY"
    sim.advance(refuse_s - advanced + 1)
    wait_ready(r, 30)
    return during


def ledger_message_count(r: redis.Redis) -> int:
    return int(r.llen("ledger"))


@contextmanager
def sim_thread(**kwargs: Any) -> Iterator[SimServerThread]:
    sim = SimServerThread(**kwargs)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def sim_orders(sim: SimServerThread, client_id: int = 1) -> dict[int, Any]:
    """order_id → snapshot of every order (working or done) the venue knows for `client_id`."""

    def collect(server: Any) -> dict[int, Any]:
        venue = server.venue
        snaps = venue.open_orders(client_id) + [
            o for o in venue.completed_orders() if o.request.client_id == client_id
        ]
        return {s.request.order_id: s for s in snaps}

    return sim.call(collect)


def sim_status(sim: SimServerThread, order_id: int, client_id: int = 1) -> str | None:
    """The venue's IB status string for one order ("Submitted", "Cancelled", …)."""
    snap = sim_orders(sim, client_id).get(order_id)
    if snap is None:
        return None
    return str(getattr(snap.status, "value", snap.status))


def sim_exec_ids(sim: SimServerThread) -> set[str]:
    return sim.call(lambda s: {e.exec_id for e, _c in s.venue.executions(None)})


def settings_for(redis_url: str, port: int, **overrides: Any) -> Settings:
    return Settings(redis_url=redis_url, ib_port=port, **overrides)


@contextmanager
def bridge_in_process(
    redis_url: str,
    port: int,
    config: BridgeConfig | None = None,
    broker_url: str | None = None,
    **settings: Any,
) -> Iterator[Bridge]:
    """A started `Bridge` in this process; `broker_url` routes only its Celery publishing."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    bridge = Bridge(
        settings_for(redis_url, port, **settings),
        client,
        celery_for(broker_url or redis_url),
        config or BridgeConfig(send_extra_tasks=False, reconnect_base_s=0.1, reconnect_cap_s=1.0),
    )
    bridge.start()
    try:
        yield bridge
    finally:
        bridge.stop()


def _stopped(pid: int) -> bool:
    """Whether `pid` is in the stopped state (Linux /proc; elsewhere assume it is)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


class BridgeProcess:
    """`python -m ibgateway_bridge` as a child process; stopped by its PID."""

    def __init__(self, redis_url: str, port: int, log_path: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "EPM_REDIS_URL": redis_url,
            "EPM_IB_PORT": str(port),
            "EPM_DATA_DIR": str(log_path.parent / "epm-data"),
            "EPM_BRIDGE_SEND_EXTRA_TASKS": "false",
            "EPM_BRIDGE_RECONNECT_BASE_S": "0.1",
            "EPM_BRIDGE_RECONNECT_CAP_S": "1.0",
            "PYTHONPATH": str(REPO),
            **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ibgateway_bridge"],
                cwd=REPO,
                env=self.env,
                stdout=log_file,
                stderr=log_file,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        """Send `sig`; for SIGSTOP, return only once the process is stopped (the kernel stops it
        asynchronously: a bridge still running for a moment could take a command queued next)."""
        os.kill(self.pid, sig)
        if sig == signal.SIGSTOP:
            poll(lambda: _stopped(self.pid) or None, 5, interval=0.001, what="the bridge stopped")

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with _suppress():
            os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _suppress() -> contextlib.AbstractContextManager[None]:
    return contextlib.suppress(ProcessLookupError)


def wait_ready(r: redis.Redis, timeout: float = 30.0, client_id: int = 1) -> None:
    poll(
        lambda: r.hget("ib:bridge:state", f"client{client_id}") == "READY",
        timeout,
        what=f"bridge client {client_id} READY",
    )


class TcpProxy:
    """A 127.0.0.1 forwarder to a real server that a test can cut and restore.

    Cutting shuts every forwarded connection and refuses new ones (accepted, then closed at once),
    which is what a client sees when its broker restarts or the network blips; the real server and
    everyone else using it carry on untouched.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        # Seconds each server → client chunk is held back (network latency); settable any time.
        self.reply_delay_s = 0.0
        # While set, client → server bytes are taken and dropped (a path that swallows what the
        # client's kernel accepted, before the connection resets).
        self.swallow_upstream = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 6379)

    def url_via(self, url: str) -> str:
        """`url` with its host and port replaced by this proxy's (path, i.e. the db, kept)."""
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))

    def cut(self) -> None:
        self._open.clear()
        self._close_all()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stopped.set()
        self._open.clear()
        self._thread.join(timeout=5)
        self._listener.close()
        self._close_all()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _close_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._conns.extend((client, upstream))
            threading.Thread(
                target=_pump, args=(client, upstream, None, self._swallowing), daemon=True
            ).start()
            threading.Thread(
                target=_pump, args=(upstream, client, self._reply_delay), daemon=True
            ).start()

    def _reply_delay(self) -> float:
        return self.reply_delay_s

    def _swallowing(self) -> bool:
        return self.swallow_upstream


def _pump(
    src: socket.socket,
    dst: socket.socket,
    delay: Callable[[], float] | None = None,
    swallow: Callable[[], bool] | None = None,
) -> None:
    """Copy bytes one way until either side closes (holding each chunk back `delay()` seconds,
    in order, to model latency; dropping it while `swallow()`); then close both ways."""
    try:
        while data := src.recv(65536):
            if swallow is not None and swallow():
                continue
            if delay is not None and (hold := delay()) > 0:
                time.sleep(hold)
            dst.sendall(data)
    except OSError:
        pass
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
