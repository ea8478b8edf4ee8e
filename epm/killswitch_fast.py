"""`epm kill-switch` on a lean path: the venue is told to cancel before the heavy imports load.

The full CLI costs ~0.4 s before any command runs (Typer, every command module, pydantic,
SQLAlchemy), which is most of a one-second kill switch. `epm.cli.main` hands `epm kill-switch`
(but not `--help`) to `main` here before importing any of that. The emergency steps run in the
same order as `ibgateway_bridge.killswitch.kill_switch`: global halt set in Redis (with bare
redis-py), then our own IB connection as the kill client id sends `reqGlobalCancel` (bare ibapi
`EClient`, confirmed read by a `reqCurrentTime` answer); only then does it import the bridge's
kill-switch module for the purge of queued orders, the Redis audit entry, the alert and the
ledger's audit copy (SQLAlchemy). The audit is written by this same process after the cancels, so
it is deferred, never dropped: the process exits only once it is written.

Settings are read from the same `EPM_*` environment variables `epm.settings.Settings` reads; when
no `EPM_REDIS_URL` is set (the embedded Redis), the full settings and `epm.redis_conn` load first,
as that server may have to be started.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

# Kept equal to `ibgateway_bridge.commands.HALT_GLOBAL_KEY` (a test pins it): importing that
# module costs pydantic, which this path defers until the cancel is out.
HALT_GLOBAL_KEY = "epm:halt:global"


@dataclass(frozen=True, slots=True)
class _Options:
    reason: str
    actor: str
    timeout: float


def _parse(argv: list[str]) -> _Options | str:
    """Options, or the message of a usage error."""
    parser = argparse.ArgumentParser(prog="epm kill-switch", add_help=False, exit_on_error=False)
    parser.add_argument("--reason", default="manual")
    parser.add_argument("--actor", default=None)
    parser.add_argument("--timeout", type=float, default=5.0)
    try:
        ns, extra = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:
        return str(e)
    if extra:
        return f"unexpected argument(s): {' '.join(extra)}"
    actor = ns.actor or os.environ.get("USER") or "operator"
    return _Options(reason=ns.reason, actor=actor, timeout=ns.timeout)


@dataclass(frozen=True, slots=True)
class _Env:
    redis_url: str | None
    ib_host: str
    ib_port: int
    client_id_kill: int
    client_id_orders: int


def _env() -> _Env:
    e = os.environ
    return _Env(
        redis_url=e.get("EPM_REDIS_URL") or None,
        ib_host=e.get("EPM_IB_HOST", "127.0.0.1"),
        ib_port=int(e.get("EPM_IB_PORT", "4002")),
        client_id_kill=int(e.get("EPM_IB_CLIENT_ID_KILL", "99")),
        client_id_orders=int(e.get("EPM_IB_CLIENT_ID_ORDERS", "1")),
    )


def _redis(env: _Env) -> redis.Redis:
    if env.redis_url is None:
        from epm.redis_conn import get_redis

        return get_redis()
    import redis as redis_mod

    return redis_mod.Redis.from_url(
        env.redis_url, decode_responses=True, socket_timeout=10.0, socket_connect_timeout=5.0
    )


def _cancel_extra(method: Any) -> list[Any]:
    """The extra argument `reqGlobalCancel` takes in this ibapi (see `ibobjects._cancel_extra`)."""
    params = list(inspect.signature(method).parameters)
    if not params:
        return []
    if params[-1] == "orderCancel":
        from ibapi.order_cancel import OrderCancel

        return [OrderCancel()]
    return [""]


def global_cancel(
    host: str, port: int, client_id: int, timeout_s: float
) -> tuple[bool, str | None]:
    """Connect as `client_id`, send `reqGlobalCancel`, wait until the venue has read it.

    Returns (sent, error). Bare ibapi: no pacing (two requests), no bridge wrapper.
    """
    from ibapi.client import EClient
    from ibapi.wrapper import EWrapper

    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    class _Wrapper(EWrapper):  # type: ignore[misc]
        def nextValidId(self, orderId: int) -> None:
            events.put(("next_valid_id", orderId))

        def currentTime(self, time: int) -> None:
            events.put(("current_time", time))

        def error(self, reqId: int, *args: Any) -> None:
            code = next((a for a in args if isinstance(a, int)), None)
            events.put(("error", code))

        def connectionClosed(self) -> None:
            events.put(("connection_closed", None))

    client = EClient(_Wrapper())
    try:
        client.connect(host, port, client_id)
    except OSError as e:
        return False, f"connect failed: {e!r}"
    if not client.isConnected():
        return False, f"could not connect to {host}:{port} as client {client_id}"
    decoder = threading.Thread(target=client.run, name="kill-decoder", daemon=True)
    decoder.start()
    deadline = time.monotonic() + timeout_s

    def wait_for(kind: str) -> str | None:
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, value = events.get(timeout=min(left, 0.05))
            except queue.Empty:
                continue
            if got == kind:
                return None
            if got == "error" and value == 326:
                return f"client id {client_id} in use"
            if got == "connection_closed":
                return "connection closed"
        return f"no {kind} before the timeout"

    sent = False
    error = wait_for("next_valid_id")
    if error == "no next_valid_id before the timeout":
        error = "no nextValidId before the timeout"
    if error is None:
        client.reqGlobalCancel(*_cancel_extra(client.reqGlobalCancel))
        sent = True
        # The venue answers in order: once reqCurrentTime is answered it has read the cancel.
        client.reqCurrentTime()
        if wait_for("current_time") is not None:
            error = "reqGlobalCancel sent, but the venue did not confirm it read it"
    wake_reader(client)
    client.disconnect()
    decoder.join(timeout=2)
    return sent, error


def wake_reader(client: Any) -> None:
    """Shut the socket down so ibapi's reader thread (not a daemon) leaves its blocked recv now.

    A plain close does not wake a recv blocked in another thread: the reader would sit out its
    1 s socket timeout and hold the process open that long after the work is done.
    """
    import socket

    sock = getattr(getattr(client, "conn", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def main(argv: list[str]) -> int:
    """Run the kill switch; the exit code and messages match the Typer command's."""
    started = time.monotonic()
    opts = _parse(argv)
    if isinstance(opts, str):
        print(f"epm kill-switch: {opts}", file=sys.stderr)
        return 2
    try:
        env = _env()
    except ValueError as e:
        print(f"epm kill-switch: bad EPM_* setting: {e}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    import redis as redis_mod

    client = _redis(env)
    redis_error: str | None = None
    halt = json.dumps({"actor": opts.actor, "reason": opts.reason, "at": now.isoformat()})
    try:
        client.set(HALT_GLOBAL_KEY, halt)
    except redis_mod.RedisError as e:  # an emergency does not wait for Redis
        redis_error = repr(e)
    sent, ib_error = global_cancel(env.ib_host, env.ib_port, env.client_id_kill, opts.timeout)

    # The cancel is out: now the heavy part (purge, audit to Redis and the ledger, alert).
    from epm.commands.ops import _ledger_audit, report_kill
    from epm.logging import LogConfigError, configure_logging
    from epm.settings import get_settings
    from ibgateway_bridge.killswitch import finish_kill_switch

    try:
        configure_logging()
    except LogConfigError as e:  # the cancel is out: a bad log setting must not stop the rest
        print(f"epm kill-switch: {e}; logging to stderr instead", file=sys.stderr)
        configure_logging("INFO", fmt="auto", stream=sys.stderr)
    settings = get_settings()
    report = finish_kill_switch(
        client,
        now=now,
        started=started,
        sent=sent,
        ib_error=ib_error,
        redis_error=redis_error,
        actor=opts.actor,
        reason=opts.reason,
        ledger_audit=_ledger_audit(settings),
        orders_client_id=env.client_id_orders,
    )
    return report_kill(report)
