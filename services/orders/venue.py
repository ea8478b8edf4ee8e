"""What the orders path needs from the venue side, as a port the shell fills in.

`tasks/orders.py` implements it over the bridge's client API (`ibgateway_bridge.client_api`) and
Redis; the services never import the bridge.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from models.risk import AccountFacts


class Venue(Protocol):
    def sending(self) -> AbstractContextManager[bool]:
        """Hold the one right to allocate-and-queue placements (True when this caller has it).

        IB refuses an order id lower than one it has seen (103), so ids must reach the bridge in
        the order they were allocated: schedulers on several workers take turns, and a tick that
        cannot have its turn sends nothing (the next tick will).
        """

    def allocate_id(self) -> int:
        """A fresh IB order id, never handed out before (ids only grow)."""

    def place(
        self,
        ib_order_id: int,
        client_order_id: str,
        contract: Mapping[str, Any],
        order: Mapping[str, Any],
        strategy: str | None,
    ) -> None:
        """Queue the placement for the bridge (which sends each IB order id at most once)."""

    def modify(
        self,
        ib_order_id: int,
        version: int,
        client_order_id: str,
        contract: Mapping[str, Any],
        order: Mapping[str, Any],
        strategy: str | None,
    ) -> None:
        """Queue a modification in place (the bridge sends each (id, version) once)."""

    def cancel(self, ib_order_id: int) -> None:
        """Queue a cancel (it overtakes queued placements and modifications of the order)."""

    def market(self, con_id: int) -> Mapping[str, str]:
        """The instrument's `md:{conid}` hash as the bridge last published it (empty if none)."""

    def subscribe(
        self, con_id: int, requester: str, contract: Mapping[str, Any], depth: bool = False
    ) -> None:
        """Keep `md:{conid}` fresh (quotes and 5 s bars, with `depth` its L2 book too) on behalf
        of `requester`."""

    def request_contract(self, contract: Mapping[str, Any]) -> None:
        """Ask the venue for contract details (the answer lands in the ledger's cache)."""

    def what_if_answer(self, client_order_id: str) -> Mapping[str, str]:
        """The venue's answer to the what-if placed as `client_order_id` (empty while none)."""

    def account(self, now: datetime) -> AccountFacts | None:
        """The account summary's facts for margin checks; None when there is none to check
        (the headroom check is off, or no risk connection runs)."""
