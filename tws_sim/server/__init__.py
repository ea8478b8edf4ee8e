"""The simulator's server: sockets, sessions, subscriptions, the driver loop and faults.

`SimServer` (asyncio, in-process), `SimServerThread` (the same on a private loop thread, for
synchronous callers) and `tws_sim.server.process.SimProcess` (`python -m tws_sim` as a child).
"""

from __future__ import annotations

from tws_sim.server.app import SimServer, SimServerThread

__all__ = ["SimServer", "SimServerThread"]
