"""What the bridge knows of its orders at the venue, and what it is still waiting to hear of.

Built from the venue's own word only: every openOrder, orderStatus, execDetails and completedOrder
of client 1 (on this connection and earlier ones of this process), so the bridge can decide, per
order, without guessing:

- a placement is *accepted* once the venue named its id or its order ref (completedOrder carries no
  order id on ibapi 9.81, hence the refs); an accepted placement is never sent again and never
  re-placed after a 103, which only a placement the venue never accepted may get;
- an id the venue holds under another order ref is not ours to use (it would modify that order);
- a placement sent and not yet accepted, and a cancel sent and not yet answered, are *awaiting*:
  after a reconnect the resync settles each (the bytes may have died with the old socket);
- a placement 103'd is *being replaced* until its new id is on record: commands for it wait, and
  a cancel asked for it meanwhile (or before the 103) ends it instead of a re-place.

Resyncs only add to what is known; `begin_resync` / `end_resync` tell whether the venue's lists of
the current connection were complete, which a decision that must not guess depends on.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from ibgateway_bridge.commands import CancelOrder, Envelope, ModifyOrder, PlaceOrder
from models.ib_codes import IbCodeClass, classify

# IB statuses after which a cancel needs no answer any more, and those of a working order.
CANCEL_SETTLED_STATUSES = frozenset(
    {"PendingCancel", "Cancelled", "ApiCancelled", "Filled", "Inactive"}
)
WORKING_STATUSES = frozenset({"ApiPending", "PendingSubmit", "PreSubmitted", "Submitted"})
# Error codes that answer a cancel (confirmed, or refused because of the order's state).
CANCEL_ANSWER_CODES = frozenset({161, 202, 10147, 10148})
# Placements awaiting the venue's word are bounded; the oldest is forgotten first.
MAX_AWAITING = 10_000


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a resync found unsettled: placements to send again, cancels to repeat (as the
    envelopes they were sent in, so their markers and acknowledgements stay theirs)."""

    lost_places: tuple[Envelope, ...]
    repeat_cancels: tuple[Envelope, ...]


class VenueOrders:
    """Thread-safe: the control thread records what the venue said, the sender asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ref_of: dict[int, str | None] = {}
        self._refs: set[str] = set()
        self._status: dict[int, str] = {}
        # order id → the envelope of a placement / cancel sent and not yet answered.
        self._awaiting: OrderedDict[int, Envelope] = OrderedDict()
        self._cancels: dict[int, Envelope] = {}
        self._cancel_asked: OrderedDict[int, None] = OrderedDict()
        self._replacing: set[int] = set()
        self._complete = False

    # --- what the venue said ----------------------------------------------------------------
    def seen(
        self,
        order_id: int | None,
        order_ref: str | None = None,
        ib_status: str | None = None,
    ) -> None:
        """An order callback (or a completedOrder) named this id and/or ref."""
        with self._lock:
            if order_ref:
                self._refs.add(order_ref)
                for oid in [k for k, env in self._awaiting.items() if _ref(env) == order_ref]:
                    del self._awaiting[oid]
            if order_id is None or order_id <= 0:
                return
            if order_ref or order_id not in self._ref_of:
                self._ref_of[order_id] = order_ref or None
            self._awaiting.pop(order_id, None)
            if ib_status:
                self._status[order_id] = ib_status
                if ib_status in CANCEL_SETTLED_STATUSES:
                    self._cancels.pop(order_id, None)

    def answered(self, order_id: int, code: int) -> None:
        """An error() about an order: a reject answers its placement (it is dead, not lost),
        a cancel answer settles its pending cancel."""
        with self._lock:
            if code in CANCEL_ANSWER_CODES:
                self._cancels.pop(order_id, None)
            if classify(code).kind is IbCodeClass.ORDER_REJECTED:
                self._awaiting.pop(order_id, None)

    def begin_resync(self) -> None:
        with self._lock:
            self._complete = False

    def end_resync(self, complete: bool) -> None:
        with self._lock:
            self._complete = complete

    @property
    def resync_complete(self) -> bool:
        """True when this connection's open and completed orders and executions all arrived."""
        with self._lock:
            return self._complete

    # --- what the bridge did ------------------------------------------------------------------
    def placing(self, env: Envelope) -> None:
        """Recorded before the write: a 103 for this id can arrive before the write returns."""
        command = env.command
        if not isinstance(command, PlaceOrder):
            raise TypeError(f"not a placement: {command.type}")
        with self._lock:
            self._awaiting[command.ib_order_id] = env
            self._awaiting.move_to_end(command.ib_order_id)
            while len(self._awaiting) > MAX_AWAITING:
                self._awaiting.popitem(last=False)

    def not_sent(self, env: Envelope) -> None:
        """The write never left: the placement is not awaiting the venue's word after all."""
        command = env.command
        with self._lock:
            waiting = self._awaiting.get(getattr(command, "ib_order_id", 0))
            if waiting is not None and waiting.stream_id == env.stream_id:
                del self._awaiting[waiting.command.ib_order_id]  # type: ignore[union-attr]

    def modifying(self, command: ModifyOrder) -> None:
        """A modify of a placement not accepted yet: its re-place must carry the new fields."""
        with self._lock:
            waiting = self._awaiting.get(command.ib_order_id)
            if waiting is not None and _ref(waiting) == command.client_order_id:
                place = PlaceOrder(**command.model_dump(exclude={"type", "version"}))
                self._awaiting[command.ib_order_id] = replace(waiting, command=place)

    def cancelling(self, env: Envelope) -> None:
        command = env.command
        if isinstance(command, CancelOrder):
            with self._lock:
                self._cancels[command.ib_order_id] = env

    def ask_cancel(self, *order_ids: int) -> None:
        """A cancel of this order was sent or decided: a 103 for it must not re-place it."""
        with self._lock:
            for order_id in order_ids:
                self._cancel_asked[order_id] = None
                self._cancel_asked.move_to_end(order_id)
            while len(self._cancel_asked) > MAX_AWAITING:
                self._cancel_asked.popitem(last=False)

    def cancel_asked(self, order_id: int) -> bool:
        with self._lock:
            return order_id in self._cancel_asked

    def replacing(self, order_id: int) -> bool:
        """A 103'd placement whose re-place is not on record yet: its commands must wait."""
        with self._lock:
            return order_id in self._replacing

    def replaced(self, order_id: int) -> None:
        with self._lock:
            self._replacing.discard(order_id)

    def knows_id(self, order_id: int) -> bool:
        with self._lock:
            return order_id in self._ref_of

    def accepted(self, command: PlaceOrder) -> bool:
        """The venue has (or had) this placement: its id under its ref, or its ref at all."""
        with self._lock:
            ref = command.client_order_id
            if ref in self._refs:
                return True
            return command.ib_order_id in self._ref_of and self._ref_of[command.ib_order_id] in (
                None,
                ref,
            )

    def held_by_other(self, command: PlaceOrder) -> str | None:
        """The order ref the venue holds this id under, when that is another order."""
        with self._lock:
            ref = self._ref_of.get(command.ib_order_id)
            return ref if ref is not None and ref != command.client_order_id else None

    def take_unaccepted(self, order_id: int) -> Envelope | None:
        """After a 103: the placement sent under `order_id`, if the venue never accepted it; the
        order counts as being replaced until `replaced`."""
        with self._lock:
            waiting = self._awaiting.get(order_id)
            if waiting is None or order_id in self._ref_of or _ref(waiting) in self._refs:
                return None
            del self._awaiting[order_id]
            self._replacing.add(order_id)
            return waiting

    def settle(self) -> Settlement:
        """After a complete resync: placements the venue does not know, and cancels of orders
        it still shows working, were lost with the old connection."""
        with self._lock:
            lost = tuple(
                replace(env, resend=True)
                for oid, env in self._awaiting.items()
                if oid not in self._ref_of and _ref(env) not in self._refs
            )
            repeat = tuple(
                env
                for oid, env in self._cancels.items()
                if self._status.get(oid) in WORKING_STATUSES
            )
            for oid in [o for o in self._cancels if self._status.get(o) not in WORKING_STATUSES]:
                del self._cancels[oid]
            return Settlement(lost, repeat)


def _ref(env: Envelope) -> str | None:
    return getattr(env.command, "client_order_id", None)
