"""Orders re-placed under a fresh id, and the cancels that must end a placement instead.

NOTES: 103 is a duplicate order id: resync ids (`reqIds`), re-place under a fresh id, record both.
Only a first placement the venue never accepted is re-placed (`VenueOrders.take_unaccepted`); a
placement whose id the venue holds for another order ref is re-placed before it is ever sent.

Durable facts in Redis, so a restarted bridge follows them too:
- `ib:replaced:{client_id}:{old_id}` = `{new_id}|{dead|shared}|{order_ref}`: commands naming the
  old id follow the order. `dead` (a 103: nothing lives under the old id) redirects every command;
  `shared` (the venue holds the old id for another order) only those carrying the moved order's ref.
- `ib:cancel_asked:{client_id}:{order_id}`: a cancel of this id went out or was decided, so a 103
  or a lost placement of it ends the order (announced as cancelled before it was sent) instead of
  being re-placed or resent.
"""

from __future__ import annotations

from typing import Any

from ibgateway_bridge import commands as cmds
from ibgateway_bridge.connection import IBSession
from ibgateway_bridge.outbox import ORDER_REPLACED
from ibgateway_bridge.pacing import Priority
from ibgateway_bridge.parts import BridgeParts, log, now
from ibgateway_bridge.wrapper import Message

# Redirect chains are short (an order re-placed twice is rare); the bound only stops a cycle.
MAX_REDIRECTS = 16


class Replacements:
    """Re-places 103'd placements, follows re-placed orders, remembers asked cancels."""

    def __init__(self, parts: BridgeParts) -> None:
        self._parts = parts
        # 103'd placements waiting for the `nextValidId` that answers our `reqIds`.
        self.pending: list[cmds.Envelope] = []

    def _key(self, template: str, order_id: int) -> str:
        return template.format(
            client_id=self._parts.settings.ib_client_id_orders, order_id=order_id
        )

    def on_duplicate_id(self, session: IBSession, order_id: int) -> None:
        """A 103 for `order_id`: re-place it at the next `nextValidId`, if the venue never
        accepted it (a 103 answering a modify or a resent placement never becomes an order)."""
        original = self._parts.venue.take_unaccepted(order_id)
        if original is None:
            return
        self.pending.append(original)
        client = session.client
        if client is not None:
            client.reqIds(-1)

    def replace_pending(self) -> None:
        """Re-place each 103'd placement under a fresh id, unless a cancel was asked for it
        meanwhile: then it ends there, announced as cancelled before it was sent.

        The original leaves the pending list only once its replacement is on the stream, so a
        Redis error retries it at the next `nextValidId`.
        """
        parts = self._parts
        while self.pending:
            env = self.pending[0]
            original = env.command
            if isinstance(original, cmds.PlaceOrder) and self.cancel_asked(original.ib_order_id):
                cmds.publish_reject(
                    parts.redis,
                    env.stream_id,
                    cmds.BridgeRejectReason.CANCELED_BEFORE_SEND,
                    "IB refused the id (103) and the order was cancelled before its re-place",
                    original,
                    now(),
                )
                parts.venue.replaced(original.ib_order_id)
            elif isinstance(original, cmds.PlaceOrder):
                self.replace(original, "IB_103_DUPLICATE_ORDER_ID")
            self.pending.pop(0)

    def replace(self, original: cmds.PlaceOrder, reason: str, *, id_dead: bool = True) -> int:
        """Queue `original` again under a fresh id; the ledger link goes through the outbox.

        `id_dead`: the old id carries nothing at the venue (103), so every command naming it
        follows the order; otherwise only commands carrying this order's ref do. The link is
        queued for the outbox, which retries a broker outage instead of failing here (a direct
        `send_task` here once raised before the XADD and the order was never placed).
        """
        parts = self._parts
        new_id = parts.allocator.allocate()
        replacement = original.model_copy(update={"ib_order_id": new_id})
        at = now()
        fields: dict[Any, Any] = dict(cmds.encode_command(replacement, at))
        # On the stream for durability, and straight into its lane so that commands following
        # the redirect queue behind it; the reader's copy of the entry is then a duplicate.
        stream_id = str(parts.redis.xadd(cmds.COMMAND_STREAM, fields))
        parts.orders.backlog.put(
            cmds.Envelope(stream_id, replacement, at), Priority.PLACE, lane=new_id
        )
        redirect = f"{new_id}|{'dead' if id_dead else 'shared'}|{original.client_order_id}"
        parts.redis.set(
            self._key(cmds.REPLACED_KEY, original.ib_order_id), redirect, ex=cmds.SENT_TTL_S
        )
        parts.venue.replaced(original.ib_order_id)
        link = {
            "old_ib_order_id": original.ib_order_id,
            "new_ib_order_id": new_id,
            "client_order_id": original.client_order_id,
            "client_id": parts.settings.ib_client_id_orders,
            "reason": reason,
            "at": at.isoformat(),
        }
        if parts.config.send_extra_tasks:
            parts.data.put(Message(ORDER_REPLACED, parts.settings.ib_client_id_orders, link, at))
        log.warning("order_replaced", **link)
        cmds.audit(
            parts.redis, "bridge", "order_replaced", at, **{k: str(v) for k, v in link.items()}
        )
        return new_id

    def current_id(self, order_id: int, order_ref: str | None = None) -> int:
        """The id an order lives under now: re-places are followed (ids only grow); one off an
        id the venue holds for another order only by commands carrying the moved order's ref."""
        for _ in range(MAX_REDIRECTS):
            raw = self._parts.redis.get(self._key(cmds.REPLACED_KEY, order_id))
            if raw is None:
                return order_id
            newer, kind, ref = [*str(raw).split("|", 2), "dead", ""][:3]
            if int(newer) <= order_id or (kind != "dead" and ref != order_ref):
                return order_id
            order_id = int(newer)
        return order_id

    def ask_cancel(self, *order_ids: int) -> None:
        """Record that these ids are being cancelled, in memory and durably."""
        parts = self._parts
        parts.venue.ask_cancel(*order_ids)
        pipe = parts.redis.pipeline(transaction=False)
        for order_id in set(order_ids):
            pipe.set(self._key(cmds.CANCEL_ASKED_KEY, order_id), "1", ex=cmds.SENT_TTL_S)
        pipe.execute()

    def cancel_asked(self, order_id: int) -> bool:
        """A cancel went out for this id, in this process or an earlier one."""
        if self._parts.venue.cancel_asked(order_id):
            return True
        return bool(self._parts.redis.exists(self._key(cmds.CANCEL_ASKED_KEY, order_id)))
