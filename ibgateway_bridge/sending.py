"""The sender: one thread per session takes commands from its backlog and writes them, once.

Placements and modifications pass the refusals (halts, unallocated ids, a modify of an order
never sent), the marker (`pending` before the write, `sent` after; an existing marker is settled
without sending twice, `_settle_marker`), what the venue knows of the order (an id it holds for
another order is never used), and the halts once more right before the bytes go. Cancels carry no
marker and follow re-placed orders. The rules, each with the test that pins it, are in
docs/bridge.md ("Order-path invariants").
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import redis
from ibapi.execution import ExecutionFilter

from epm.backoff import Backoff
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.connection import IBSession, SendRefused
from ibgateway_bridge.ibobjects import cancel_order, global_cancel, to_ib_contract, to_ib_order
from ibgateway_bridge.pacing import SEND_WAIT, Priority, Ticket
from ibgateway_bridge.parts import BridgeParts, announce_refusal, log, now
from ibgateway_bridge.replacements import Replacements
from ibgateway_bridge.translate import ib_filter_time

# The ledger's Redis mirror of an order (written by `tasks.ledger` after each commit).
ORDER_MIRROR_KEY = "exec:order:{client_order_id}"


class Sender:
    def __init__(self, parts: BridgeParts, replacements: Replacements) -> None:
        self._parts = parts
        self._replacements = replacements

    def run(self, session: IBSession) -> None:
        """The sender thread of one session: its backlog, one command at a time."""
        while not self._parts.stop_event.is_set():
            if not session.ready.wait(0.2):
                continue
            if not self._parts.lease.held():
                self._parts.stop_event.wait(0.2)
                continue
            ticket: Ticket[cmds.Envelope] | None = session.backlog.get(timeout=0.2)
            if ticket is None:
                continue
            env = ticket.item
            try:
                outcome = self._send(session, env)
            except cmds.LeaseFencedError as e:
                log.error("fenced", error=repr(e))
                self._parts.lease_lost()
                return
            except (redis.RedisError, OSError) as e:
                log.warning("send_failed_requeue", stream_id=env.stream_id, error=repr(e))
                outcome = False
            if outcome is True:
                SEND_WAIT.labels(session.name, str(env.command.type)).observe(
                    time.monotonic() - ticket.enqueued_at
                )
                session.backlog.done(ticket)
            else:
                # Back at the front of its order's lane: the order's later commands wait for it.
                session.backlog.requeue(ticket)
                self._parts.stop_event.wait(0.05 if outcome is False else 0.005)

    def _send(self, session: IBSession, env: cmds.Envelope) -> bool | None:
        """Send one command; True when it is done (sent, refused or known duplicate), False to
        retry after a failure, None to wait a moment (its order is being re-placed)."""
        command = env.command
        client = session.client
        if client is None or not session.ready.is_set():
            return False
        if isinstance(command, cmds.SubscribeMarketData | cmds.UnsubscribeMarketData):
            return self._market_data(client, env)
        if isinstance(command, cmds.ModifyOrder | cmds.CancelOrder) and self._parts.venue.replacing(
            command.ib_order_id
        ):
            if isinstance(command, cmds.CancelOrder):
                # The 103'd placement will not be re-placed: the cancel ends it (announced then).
                self._replacements.ask_cancel(command.ib_order_id)
                self._parts.commands.ack(env.stream_id)
                return True
            return None
        if isinstance(command, cmds.PlaceOrder | cmds.ModifyOrder):
            return self._send_order(session, client, env, command)
        if isinstance(command, cmds.CancelOrder):
            return self._send_cancel(client, env, command)
        if not client.sends(lambda: self._write(client, command, session.name)):
            return False
        self._record_sent(None, env.stream_id, None)
        return True

    def _send_order(
        self,
        session: IBSession,
        client: Any,
        env: cmds.Envelope,
        command: cmds.PlaceOrder | cmds.ModifyOrder,
    ) -> bool:
        """A placement or modification: refusals, markers, the venue's knowledge, then bytes."""
        if isinstance(command, cmds.ModifyOrder):
            # A modify follows its order onto the id it was re-placed under, behind the
            # re-placement in that id's lane when the re-placement has not gone out yet.
            current = self._replacements.current_id(command.ib_order_id, command.client_order_id)
            if current != command.ib_order_id:
                command = command.model_copy(update={"ib_order_id": current})
                if not self._placement_out(current):
                    moved = replace(env, command=command)
                    session.backlog.put(moved, Priority.MODIFY, lane=current)
                    return True
        refusal = self._refusal(command)
        if refusal is not None:
            reason, message = refusal
            self._refuse(env, command, reason, message)
            return True
        key = cmds.sent_key(self._parts.settings.ib_client_id_orders, command)
        if key is None:  # a placement and a modification always have one
            raise TypeError(f"no marker key for {command.type}")
        ref = command.client_order_id
        existing = self._parts.commands.mark_pending(key, env.stream_id, ref)
        if existing is not None:
            settled = self._settle_marker(env, command, key, cmds.Marker.parse(existing))
            if settled is not None:
                return settled
        if isinstance(command, cmds.PlaceOrder):
            other = self._parts.venue.held_by_other(command)
            if other is not None:
                # The venue holds this id under another order: sending ours would modify it.
                self._parts.commands.clear_pending(key, env.stream_id)
                self._replacements.replace(command, f"ID_IN_USE_AT_VENUE:{other}", id_dead=False)
                self._parts.commands.ack(env.stream_id)
                return True
            self._parts.venue.placing(env)
        else:
            self._parts.venue.modifying(command)
        try:
            sent = client.sends(
                lambda: self._write(client, command), gate=lambda: self._gate(command)
            )
        except SendRefused as e:
            reason = cmds.BridgeRejectReason(e.reason)
            self._parts.commands.refuse_pending(key, env.stream_id, str(reason), ref)
            announce_refusal(
                self._parts, env.stream_id, reason, "halted at the socket write", command
            )
            return True
        if not sent:
            # Nothing left the socket: the next attempt is a first attempt again.
            self._parts.commands.clear_pending(key, env.stream_id)
            if isinstance(command, cmds.PlaceOrder):
                self._parts.venue.not_sent(env)
            return False
        self._record_sent(key, env.stream_id, ref)
        # Blueprint §12.2's line, one per order written to the socket (docs/operations.md, Logs).
        log.info(
            "order_submit" if isinstance(command, cmds.PlaceOrder) else "order_modify",
            order_id=command.ib_order_id,
            client_order_id=ref,
            client_id=self._parts.settings.ib_client_id_orders,
            strategy=command.strategy,
            payload=command.order.model_dump(mode="json", exclude_none=True),
        )
        return True

    def _refusal(
        self, command: cmds.PlaceOrder | cmds.ModifyOrder
    ) -> tuple[cmds.BridgeRejectReason, str] | None:
        """Why this order command must not go out at all, checked before any marker."""
        reason = cmds.halt_reason(self._parts.redis, command.contract.con_id, command.strategy)
        if reason is not None:
            return reason, "halted at send time"
        if (
            isinstance(command, cmds.PlaceOrder)
            and command.ib_order_id > self._parts.allocator.last()
        ):
            return (
                cmds.BridgeRejectReason.ORDER_ID_NOT_ALLOCATED,
                f"order id {command.ib_order_id} was never allocated from ib:order:last_id",
            )
        if isinstance(command, cmds.ModifyOrder) and not self._placement_out(command.ib_order_id):
            # At the venue a modify of an id it does not know would be a new order.
            return (
                cmds.BridgeRejectReason.ORDER_NOT_SENT,
                f"order {command.ib_order_id} was never sent; a modify cannot place it",
            )
        return None

    def _placement_out(self, order_id: int) -> bool:
        if self._parts.venue.knows_id(order_id):
            return True
        marker = self._parts.commands.marker(
            cmds.place_key(self._parts.settings.ib_client_id_orders, order_id)
        )
        return marker is not None and cmds.Marker.parse(marker).state == cmds.MarkerState.SENT

    def _gate(self, command: cmds.PlaceOrder | cmds.ModifyOrder) -> None:
        """Right before the bytes go (after the pacing wait): the halts, once more."""
        reason = cmds.halt_reason(self._parts.redis, command.contract.con_id, command.strategy)
        if reason is not None:
            raise SendRefused(str(reason))

    def _settle_marker(
        self,
        env: cmds.Envelope,
        command: cmds.PlaceOrder | cmds.ModifyOrder,
        key: str,
        marker: cmds.Marker,
    ) -> bool | None:
        """An earlier attempt left a marker: decide without sending twice. None = send now."""
        ref = command.client_order_id
        if marker.state == cmds.MarkerState.REFUSED:
            if marker.stream_id != env.stream_id:
                # A copy of a command refused for good: refused the same way.
                reason = cmds.BridgeRejectReason(marker.reason)
                announce_refusal(
                    self._parts, env.stream_id, reason, "refused before, for good", command
                )
            else:
                self._parts.commands.ack(env.stream_id)  # refused and announced already
            return True
        if isinstance(command, cmds.PlaceOrder) and marker.other_order(ref):
            # Another order went out under this id: ours gets a fresh one.
            self._replacements.replace(command, f"ID_IN_USE:{marker.order_ref}", id_dead=False)
            self._parts.commands.ack(env.stream_id)
            return True
        if marker.state == cmds.MarkerState.SENT:
            if env.resend and marker.stream_id == env.stream_id and self._still_lost(command):
                return None  # its bytes died with the old connection (`_settle_after_resync`)
            log.info("duplicate_command_skipped", stream_id=env.stream_id, marker=marker.encode())
            self._parts.commands.ack(env.stream_id)
            return True
        # `pending`: a crash (or a failed write) between the marker and the bytes.
        if isinstance(command, cmds.ModifyOrder):
            return None  # a modify is safe to repeat: the venue applies the same fields again
        if self._parts.venue.accepted(command) or self._ledger_saw(ref):
            self._parts.commands.mark_sent_and_ack(key, env.stream_id, ref)
            return True
        if self._replacements.cancel_asked(command.ib_order_id):
            # Its cancel went out (the order never reached the venue): it must not go now.
            reason = cmds.BridgeRejectReason.CANCELED_BEFORE_SEND
            self._parts.commands.refuse_pending(key, marker.stream_id, str(reason), ref)
            announce_refusal(
                self._parts, env.stream_id, reason, "cancelled before it reached the venue", command
            )
            return True
        if not self._parts.venue.resync_complete:
            reason = cmds.BridgeRejectReason.SEND_UNCERTAIN
            self._parts.commands.refuse_pending(key, marker.stream_id, str(reason), ref)
            cmds.raise_alert(
                self._parts.redis,
                "send_uncertain",
                f"order {command.ib_order_id} ({ref}) may or may not be at the venue; not resent",
                now(),
                order_id=str(command.ib_order_id),
            )
            announce_refusal(
                self._parts, env.stream_id, reason, "the venue's lists were incomplete", command
            )
            return True
        return None  # a complete resync does not know it: it never reached the venue

    def _still_lost(self, command: cmds.PlaceOrder | cmds.ModifyOrder) -> bool:
        """A placement to send again after a reset: still unknown to the venue, not re-placed
        (a 103 for an earlier copy), not cancelled meanwhile."""
        if not isinstance(command, cmds.PlaceOrder) or self._parts.venue.accepted(command):
            return False
        order_id = command.ib_order_id
        if (
            self._parts.venue.replacing(order_id)
            or self._replacements.current_id(order_id) != order_id
        ):
            return False
        return not self._replacements.cancel_asked(order_id)

    def _ledger_saw(self, client_order_id: str) -> bool:
        """The ledger recorded a venue callback for this order (its Redis mirror says so)."""
        mirror = self._parts.redis.hmget(
            ORDER_MIRROR_KEY.format(client_order_id=client_order_id),
            ["last_ib_status", "filled_qty", "ib_filled_qty", "perm_id"],
        )
        status, filled, ib_filled, perm_id = mirror
        return bool(status or perm_id) or any(v not in (None, "", "0") for v in (filled, ib_filled))

    def _send_cancel(self, client: Any, env: cmds.Envelope, command: cmds.CancelOrder) -> bool:
        """Cancel the order where it lives now; an order never sent needs no venue."""
        target = self._replacements.current_id(command.ib_order_id)
        # Were a 103 to come for it, the order must end, not be re-placed.
        self._replacements.ask_cancel(command.ib_order_id, target)
        if not self._parts.venue.knows_id(target):
            key = cmds.place_key(self._parts.settings.ib_client_id_orders, target)
            reason = cmds.BridgeRejectReason.CANCELED_BEFORE_SEND
            existing = self._parts.commands.claim_refusal(key, env.stream_id, str(reason))
            if existing is None or cmds.Marker.parse(existing).state == cmds.MarkerState.REFUSED:
                # No placement of it ever went out, and none ever will (the refused marker).
                if existing is None:
                    announce_refusal(
                        self._parts, env.stream_id, reason, "the order was never sent", command
                    )
                else:
                    self._parts.commands.ack(env.stream_id)
                return True
        cancel = command if target == command.ib_order_id else cmds.CancelOrder(ib_order_id=target)
        if not client.sends(lambda: self._write(client, cancel)):
            return False
        self._parts.venue.cancelling(replace(env, command=cancel))
        self._record_sent(None, env.stream_id, None)
        log.info(
            "cancel_sent", stream_id=env.stream_id, order_id=command.ib_order_id, ib_order_id=target
        )
        return True

    def _refuse(
        self,
        env: cmds.Envelope,
        command: cmds.PlaceOrder | cmds.ModifyOrder,
        reason: cmds.BridgeRejectReason,
        message: str,
    ) -> None:
        """Refuse for good: the marker makes every later copy of the command refused too.

        A copy of a command that already went out (or was refused and announced) is only
        acknowledged: announcing a refusal for it would make its owner close a working order.
        """
        key = cmds.sent_key(self._parts.settings.ib_client_id_orders, command)
        ref = command.client_order_id
        existing = (
            self._parts.commands.claim_refusal(key, env.stream_id, str(reason), ref)
            if key
            else None
        )
        if key is not None and existing is not None:
            marker = cmds.Marker.parse(existing)
            mine = marker.stream_id == env.stream_id
            if marker.state == cmds.MarkerState.PENDING and mine:
                self._parts.commands.refuse_pending(key, env.stream_id, str(reason), ref)
            elif marker.state != cmds.MarkerState.REFUSED or mine:
                log.info("refused_copy_dropped", stream_id=env.stream_id, marker=existing)
                self._parts.commands.ack(env.stream_id)
                return
        announce_refusal(self._parts, env.stream_id, reason, message, command)

    def _record_sent(self, key: str | None, stream_id: str, order_ref: str | None) -> None:
        """The bytes left: the `sent:` marker must land before this command counts as not done.

        Handing a written command back to the backlog because Redis blipped would send it again
        while the venue's echo may still be in flight; for an order already filled IB answers 104
        (or 103), and a re-place would then trade it twice. So the marker is retried here, for as
        long as Redis is away; a stopping bridge leaves the `pending:` marker, which the next start
        resolves against the venue's open and completed orders.
        """
        backoff = Backoff(0.05, 2.0)
        while True:
            try:
                self._parts.commands.mark_sent_and_ack(key, stream_id, order_ref)
                return
            except redis.RedisError as e:  # LeaseFencedError is not one: it stops the sender
                if self._parts.stop_event.is_set():
                    raise
                delay = backoff.next_delay()
                log.warning("sent_marker_retry", stream_id=stream_id, error=repr(e), delay_s=delay)
                self._parts.stop_event.wait(delay)

    def _market_data(self, client: Any, env: cmds.Envelope) -> bool:
        command = env.command
        if isinstance(command, cmds.SubscribeMarketData):
            reason = self._parts.md.subscribe(command, client)
            if reason is not None:
                announce_refusal(
                    self._parts, env.stream_id, reason, f"con_id {command.con_id}", command
                )
                return True
        elif isinstance(command, cmds.UnsubscribeMarketData):
            self._parts.md.unsubscribe(command, client)
        self._parts.commands.ack(env.stream_id)
        return True

    def _write(self, client: Any, command: cmds.Command, session_name: str = "") -> None:
        if isinstance(command, cmds.PlaceOrder | cmds.ModifyOrder):
            client.placeOrder(
                command.ib_order_id, to_ib_contract(command.contract), to_ib_order(command)
            )
        elif isinstance(command, cmds.CancelOrder):
            cancel_order(client, command.ib_order_id)
        elif isinstance(command, cmds.GlobalCancel):
            global_cancel(client)
        elif isinstance(command, cmds.RequestExecutions):
            flt = ExecutionFilter()
            if command.since is not None:
                flt.time = ib_filter_time(command.since)
            req_id = self._parts.next_req_id()
            if command.request_id is not None:
                # Registered before the bytes go: no answer can come ahead of it.
                self._parts.snapshots.register(
                    req_id, command.request_id, "executions", session=session_name
                )
            client.reqExecutions(req_id, flt)
        elif isinstance(command, cmds.RequestPositions):
            if command.request_id is None:
                client.reqPositions()
            else:
                req_id = self._parts.next_req_id()
                self._parts.snapshots.register(
                    req_id, command.request_id, "positions", session=session_name
                )
                client.reqPositionsMulti(req_id, self._parts.settings.ib_account or "", "")
        elif isinstance(command, cmds.RequestContractDetails):
            client.reqContractDetails(
                self._parts.md.next_req_id(), to_ib_contract(command.contract)
            )
