"""The emergency kill switch and its release: independent of the bridge and of the workers.

`kill_switch` works when the bridge is hung or frozen: it sets the global halt first (the bridge
checks it before every placement and again right before the socket write), opens its own IB
connection as client 99 and sends `reqGlobalCancel` (the venue cancels every working order of every
client), then purges queued placements and modifications: each gets a `refused` marker (so neither
the copy the bridge may already hold in memory nor any later copy of it can go out after `epm
resume`), is deleted from the command stream and gets a reject event so its owner closes the order;
then it writes an audit entry. A command whose marker shows the bridge is sending it right now is
left to the bridge, which refuses it at the socket (the halt is already set). Cancels stay queued:
they are still wanted.

`resume` lifts the halt with an audit entry. Audit entries go to the `epm:audit` stream, then to
`ledger_audit` when the caller gives one (the CLI passes `services.audit.record_audit` for the
configured ledger): the bridge never imports the ledger's store, and the kill switch never waits for
it (a failing ledger copy is logged, the halt is already in force).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import redis

from epm.killswitch_fast import wake_reader
from epm.logging import get_logger
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.connection import PacedClient
from ibgateway_bridge.ibobjects import global_cancel
from ibgateway_bridge.pacing import SlidingWindowLimiter
from ibgateway_bridge.wrapper import BridgeWrapper, Message

log = get_logger("ibgateway_bridge.killswitch")


@dataclass(frozen=True, slots=True)
class KillReport:
    """What the kill switch did; `global_cancel_sent` False means IB was not reached."""

    halted_at: datetime
    global_cancel_sent: bool
    ib_error: str | None
    purged: int
    elapsed_s: float
    # Set when Redis could not be reached: IB was still told to cancel, but the halt flag, the
    # purge and the audit entry may be missing and must be redone once Redis is back.
    redis_error: str | None = None


def _connect_and_global_cancel(
    host: str, port: int, client_id: int, timeout_s: float
) -> tuple[bool, str | None]:
    data: queue.Queue[Message] = queue.Queue()
    control: queue.Queue[Message] = queue.Queue()
    client = PacedClient(
        BridgeWrapper(client_id, data, control), SlidingWindowLimiter(45, connection="kill")
    )
    try:
        client.connect(host, port, client_id)
    except OSError as e:
        return False, f"connect failed: {e!r}"
    if not client.isConnected():
        return False, f"could not connect to {host}:{port} as client {client_id}"
    decoder = threading.Thread(target=client.run, name="kill-decoder", daemon=True)
    decoder.start()
    deadline = time.monotonic() + timeout_s
    error: str | None = None
    ready = False
    while time.monotonic() < deadline and not ready:
        try:
            msg = control.get(timeout=0.05)
        except queue.Empty:
            continue
        if msg.kind == "next_valid_id":
            ready = True
        elif msg.kind == "error" and int(msg.data["code"]) == 326:
            error = f"client id {client_id} in use"
            break
        elif msg.kind == "connection_closed":
            error = "connection closed"
            break
    sent = False
    if ready:
        sent = client.sends(lambda: global_cancel(client))
        if sent:
            # The venue answers requests in order: once reqCurrentTime is answered, it has read
            # reqGlobalCancel too, so closing now cannot lose it in a socket buffer.
            client.reqCurrentTime()
            if not _await_control(control, "current_time", deadline):
                error = "reqGlobalCancel sent, but the venue did not confirm it read it"
    elif error is None:
        error = "no nextValidId before the timeout"
    wake_reader(client)  # else ibapi's reader holds on for its 1 s recv timeout
    client.disconnect()
    decoder.join(timeout=2)
    return sent, error


def _await_control(control: queue.Queue[Message], kind: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            if control.get(timeout=0.05).kind == kind:
                return True
        except queue.Empty:
            continue
    return False


def purge_queued_orders(client: redis.Redis, now: datetime, orders_client_id: int = 1) -> int:
    """Refuse for good every queued place/modify not yet sent (marker, XDEL, reject event).

    Returns the count. The marker is written only where none exists (SET NX): `sent` stays sent,
    and `pending` belongs to the bridge's sender, whose socket-time halt check refuses it.
    """
    purged = 0
    last = "-"
    while True:
        entries = cast(
            list[tuple[str, dict[str, str]]],
            client.xrange(cmds.COMMAND_STREAM, min=last, max="+", count=1000),
        )
        if last != "-":
            entries = [e for e in entries if e[0] != last]
        if not entries:
            return purged
        for stream_id, fields in entries:
            last = stream_id
            if fields.get("type") not in (cmds.CommandType.PLACE, cmds.CommandType.MODIFY):
                continue
            parsed = cmds.parse_entry(stream_id, fields)
            command = parsed.command if isinstance(parsed, cmds.Envelope) else None
            key = cmds.sent_key(orders_client_id, command) if command is not None else None
            if key is not None:
                ref = getattr(command, "client_order_id", None)
                marker = cmds.marker_value(
                    cmds.MarkerState.REFUSED,
                    stream_id,
                    ref,
                    str(cmds.BridgeRejectReason.HALTED_GLOBAL),
                )
                if not client.set(key, marker, nx=True, ex=cmds.SENT_TTL_S):
                    continue
            if client.xdel(cmds.COMMAND_STREAM, stream_id):
                purged += 1
                cmds.publish_reject(
                    client,
                    stream_id,
                    cmds.BridgeRejectReason.HALTED_GLOBAL,
                    "purged by the kill switch",
                    command,
                    now,
                )


# (actor, action, at, details) → a copy of the audit entry in the ledger.
LedgerAudit = Callable[[str, str, datetime, dict[str, str]], None]


def record_audit(
    client: redis.Redis,
    actor: str,
    action: str,
    now: datetime,
    details: dict[str, str],
    ledger_audit: LedgerAudit | None,
) -> None:
    """Audit to the Redis stream always, and to the ledger when a writer is given."""
    cmds.audit(client, actor, action, now, **details)
    if ledger_audit is None:
        return
    try:
        ledger_audit(actor, action, now, details)
    except Exception as e:  # the halt is already in force; the ledger copy is best effort
        log.warning("audit_log_write_failed", error=repr(e))


def kill_switch(
    client: redis.Redis,
    host: str,
    port: int,
    client_id: int = 99,
    actor: str = "operator",
    reason: str = "manual",
    ledger_audit: LedgerAudit | None = None,
    timeout_s: float = 5.0,
    orders_client_id: int = 1,
) -> KillReport:
    """Halt everything now; see the module docstring for the order of steps and why."""
    started = time.monotonic()
    now = datetime.now(UTC)
    redis_error: str | None = None
    halt = json.dumps({"actor": actor, "reason": reason, "at": now.isoformat()})
    try:
        client.set(cmds.HALT_GLOBAL_KEY, halt)
    except redis.RedisError as e:
        # An emergency does not wait for Redis: IB is told to cancel regardless.
        redis_error = repr(e)
        log.error("kill_switch_halt_not_set", error=redis_error)
    sent, error = _connect_and_global_cancel(host, port, client_id, timeout_s)
    return finish_kill_switch(
        client,
        now=now,
        started=started,
        sent=sent,
        ib_error=error,
        redis_error=redis_error,
        actor=actor,
        reason=reason,
        ledger_audit=ledger_audit,
        orders_client_id=orders_client_id,
    )


def finish_kill_switch(
    client: redis.Redis,
    *,
    now: datetime,
    started: float,
    sent: bool,
    ib_error: str | None,
    redis_error: str | None,
    actor: str,
    reason: str,
    ledger_audit: LedgerAudit | None,
    orders_client_id: int = 1,
) -> KillReport:
    """The steps after the global cancel: purge queued orders, audit, alert when IB was missed.

    Split out so `epm kill-switch`'s lean path (`epm.killswitch_fast`) can send the cancel before
    this module and the ledger are even imported, then finish here in the same process.
    `started` is a `time.monotonic()` reading taken when the kill switch began.
    """
    error = ib_error
    purged = 0
    if redis_error is None:
        try:
            purged = purge_queued_orders(client, now, orders_client_id)
        except redis.RedisError as e:
            redis_error = repr(e)
    elapsed = time.monotonic() - started
    details = {
        "reason": reason,
        "global_cancel_sent": str(sent),
        "ib_error": error or "",
        "purged": str(purged),
        "elapsed_s": f"{elapsed:.3f}",
    }
    if redis_error is None:
        try:
            record_audit(client, actor, "kill_switch", now, details, ledger_audit)
            if not sent:
                cmds.raise_alert(client, "kill_switch_ib_unreachable", error or "unknown", now)
        except redis.RedisError as e:
            redis_error = repr(e)
    if redis_error is not None:
        log.error("kill_switch_redis_unreachable", error=redis_error, **details)
    return KillReport(now, sent, error, purged, elapsed, redis_error)


def resume(
    client: redis.Redis, actor: str, reason: str, ledger_audit: LedgerAudit | None = None
) -> bool:
    """Lift the global halt; returns whether one was in force."""
    now = datetime.now(UTC)
    previous = client.get(cmds.HALT_GLOBAL_KEY)
    client.delete(cmds.HALT_GLOBAL_KEY)
    details = {"reason": reason, "previous_halt": str(previous or "")}
    record_audit(client, actor, "resume", now, details, ledger_audit)
    return previous is not None
