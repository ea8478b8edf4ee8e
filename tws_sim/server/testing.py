"""Helpers for tests and drills that talk to the simulator with the official `ibapi` client.

`RecordingClient` is an `EClient` + `EWrapper` whose every callback is recorded as
`(name, args)`; `wait_for(predicate, timeout)` polls the record under a deadline (no fixed
sleeps). It runs ibapi's reader loop in a daemon thread, like any ibapi application.

It works with ibapi 9.81 and with 10.x clients (the compatibility venv): callbacks are recorded
under their 9.81 names (10.x's `commissionAndFeesReport` as "commissionReport", its report and
`OrderState` objects also answering to 9.81's `commission*` attribute names, its `BarData` to
`average`), `errors()` returns (reqId, code, text) whichever `error` signature the installed
client calls, and `cancelOrder` / `reqGlobalCancel` accept the 9.81 call forms (10.x requires an
`OrderCancel`, filled in here).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ibapi
from ibapi.client import EClient
from ibapi.wrapper import EWrapper

# 10.x: error(reqId, errorTime, errorCode, errorString, advancedOrderRejectJson)
_IBAPI_10 = ibapi.__version__.startswith("10.")


class RecordingClient(EWrapper, EClient):  # type: ignore[misc]
    """An ibapi application that records every callback it receives."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, self)
        self._lock = threading.Lock()
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._thread: threading.Thread | None = None

    def _record(self, name: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self.events.append((name, args))

    # ---------------------------------------------------------------------------------------------

    def start(self, port: int, client_id: int, timeout: float = 15.0) -> int:
        """Connect, run the reader loop, wait for nextValidId; → that id."""
        self.connect("127.0.0.1", port, client_id)
        self._thread = threading.Thread(target=self.run, name=f"ibapi-{client_id}", daemon=True)
        self._thread.start()
        got = self.wait_for(lambda: self.of("nextValidId"), timeout)
        return int(got[-1][0])

    def stop(self, timeout: float = 10.0) -> None:
        if self.isConnected():
            self.disconnect()
        if self._thread is not None:
            self._thread.join(timeout)

    def of(self, name: str) -> list[tuple[Any, ...]]:
        """Arguments of every recorded call of callback `name`, in arrival order."""
        with self._lock:
            return [args for n, args in self.events if n == name]

    def errors(self, code: int | None = None) -> list[tuple[Any, ...]]:
        """(reqId, code, text) of every error callback, optionally of one code."""
        found = [(a[0], a[2], a[3]) if _IBAPI_10 else a[:3] for a in self.of("error")]
        return [a for a in found if code is None or a[1] == code]

    def cancelOrder(self, orderId: int, *args: Any) -> None:
        """ibapi's cancelOrder; the 10.x `OrderCancel` argument defaults to an empty one."""
        EClient.cancelOrder(self, orderId, *(args or _cancel_default()))

    def reqGlobalCancel(self, *args: Any) -> None:
        """ibapi's reqGlobalCancel; the 10.x `OrderCancel` argument defaults to an empty one."""
        EClient.reqGlobalCancel(self, *(args or _cancel_default()))

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Poll `predicate` until it returns something truthy; TimeoutError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"condition not met within {timeout} s; last events: {self.events[-8:]}"
                )
            time.sleep(0.01)


def _cancel_default() -> tuple[Any, ...]:
    if not _IBAPI_10:
        return ()
    from ibapi.order_cancel import OrderCancel  # only in 10.x

    return (OrderCancel(),)


# 10.x renamed commission attributes; the recorded objects get the 9.81 names as aliases
_ALIASES = {
    "commission": "commissionAndFees",
    "commissionCurrency": "commissionAndFeesCurrency",
    "minCommission": "minCommissionAndFees",
    "maxCommission": "maxCommissionAndFees",
    "average": "wap",  # BarData
}


def _alias_9_81(obj: Any) -> None:
    for old, new in _ALIASES.items():
        if hasattr(obj, new) and not hasattr(obj, old):
            setattr(obj, old, getattr(obj, new))


def _recorder(name: str) -> Callable[..., None]:
    def method(self: RecordingClient, *args: Any) -> None:
        if _IBAPI_10:
            for arg in args:
                if hasattr(arg, "commissionAndFees") or hasattr(arg, "wap"):
                    _alias_9_81(arg)  # CommissionAndFeesReport, OrderState, BarData
        self._record(name, args)

    method.__name__ = name
    return method


# callbacks 10.x renamed, recorded under the 9.81 name so tests read one vocabulary
_RENAMED = {"commissionAndFeesReport": "commissionReport"}

# Every public EWrapper callback becomes a recorder (ibapi calls them positionally).
for _name, _fn in list(vars(EWrapper).items()):
    if callable(_fn) and not _name.startswith("_") and _name not in {"logAnswer"}:
        setattr(RecordingClient, _name, _recorder(_RENAMED.get(_name, _name)))
