"""What reconciliation needs from the venue side, as a port the shell fills in.

`tasks/recon.py` implements it over the bridge's snapshots (`ibgateway_bridge.client_api`); the
services never import the bridge.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol


class VenueUnansweredError(Exception):
    """The venue's snapshot did not come (in time, or whole): the run is `failed`."""


class VenueSnapshots(Protocol):
    def executions(self, since: datetime) -> list[dict[str, Any]]:
        """The venue's executions at or after `since`, as the bridge's execution payloads
        (`ibgateway_bridge/payloads.py`). Raises `VenueUnansweredError`."""

    def positions(self) -> list[dict[str, Any]]:
        """The venue's positions (`con_id`, `symbol`, `position`, `avg_cost`, `account`).
        Raises `VenueUnansweredError`."""
