"""The command reader: the Redis stream `ib:commands` → the sessions' backlogs.

One thread reads the stream with the consumer group `bridge`, first its own unacknowledged
entries (a previous run read them and died), then new ones. Order commands go to client 1's
backlog in their order's lane, data commands to client 2's. A cancel takes its order's queued
placement and modifications out of the backlog on its way in (`_cancel_queued`).
"""

from __future__ import annotations

import redis

from ibgateway_bridge import commands as cmds
from ibgateway_bridge.parts import BridgeParts, announce_refusal, log


class CommandReader:
    def __init__(self, parts: BridgeParts) -> None:
        self._parts = parts

    def run(self) -> None:
        parts = self._parts
        # First our own unacknowledged entries, page by page.
        start: str | None = "0"
        while not parts.stop_event.is_set():
            try:
                entries = parts.commands.read(start=start)
            except redis.RedisError as e:
                log.warning("command_read_failed", error=repr(e))
                parts.stop_event.wait(0.5)
                continue
            if start is not None and not entries:
                start = None
                continue
            try:
                for stream_id, fields in entries:
                    if start is not None:
                        start = stream_id
                        if not fields:
                            # Deleted while pending (the kill switch purges queued placements).
                            parts.commands.ack(stream_id)
                            continue
                    self._intake(stream_id, fields)
            except redis.RedisError as e:
                # Read again from our own unacknowledged entries, so the one that failed is not
                # skipped; a copy of one already queued is harmless (sends are keyed).
                log.warning("command_intake_failed", error=repr(e))
                parts.stop_event.wait(0.5)
                start = "0"

    def _intake(self, stream_id: str, fields: dict[str, str]) -> None:
        parts = self._parts
        parsed = cmds.parse_entry(stream_id, fields)
        if isinstance(parsed, cmds.BadCommand):
            announce_refusal(parts, stream_id, parsed.reason, parsed.message, None)
            return
        command = parsed.command
        if isinstance(command, cmds.CancelOrder):
            self._cancel_queued(stream_id, command)
        lane = cmds.lane_of(command)
        orders_only = lane is not None or isinstance(
            command, cmds.GlobalCancel | cmds.RequestExecutions
        )
        target = parts.orders if orders_only else (parts.account or parts.orders)
        target.backlog.put(parsed, cmds.priority_of(command), lane=lane)

    def _cancel_queued(self, stream_id: str, command: cmds.CancelOrder) -> None:
        """A cancel takes the order's queued placement and modifications out of the backlog.

        A removed placement that never went out is refused for good (`refused` marker, so a
        later copy of it is refused too) and announced; one whose marker shows that another copy
        of it was sent (a redelivery, a reread) is only a duplicate: dropped silently, and the
        cancel still goes to the venue. The cancel itself is always queued; whether it needs the
        venue is decided when it is sent (`Sender._send_cancel`).
        """
        parts = self._parts
        removed = parts.orders.backlog.remove_if(
            lambda env: (
                isinstance(env.command, cmds.PlaceOrder | cmds.ModifyOrder)
                and env.command.ib_order_id == command.ib_order_id
            )
        )
        reason = cmds.BridgeRejectReason.CANCELED_BEFORE_SEND
        for env in removed:
            order_command = env.command
            if not isinstance(order_command, cmds.PlaceOrder | cmds.ModifyOrder):
                continue
            key = cmds.sent_key(parts.settings.ib_client_id_orders, order_command)
            existing = (
                parts.commands.claim_refusal(
                    key, env.stream_id, str(reason), order_command.client_order_id
                )
                if key is not None
                else None
            )
            if existing is not None:
                # A copy of a command already sent, being sent or refused: nothing to announce.
                log.info("duplicate_copy_dropped", stream_id=env.stream_id, marker=existing)
                parts.commands.ack(env.stream_id)
                continue
            announce_refusal(
                parts, env.stream_id, reason, f"cancel {stream_id} overtook it", order_command
            )
