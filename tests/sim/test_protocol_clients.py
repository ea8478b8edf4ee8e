"""Harness for the protocol tests: the real clients as byte producers and as decoders.

- `ibapi_client(v)` / `async_client(v)`: the installed `ibapi` EClient and ib_async `Client` with
  their send paths captured, so their request methods produce exactly the fields they would put on
  a socket at server version `v`.
- `ibapi_decode(fields, v)` / `async_decode(fields, v)`: the real client decoders fed with our
  encoders' output; they return the wrapper calls they made. ib_async's decoder swallows its own
  exceptions (it logs them), so `async_decode` turns any logged error into a test failure.

The tests at the bottom check the harness itself, so a broken capture cannot make the codec tests
pass vacuously.
"""

from __future__ import annotations

import logging
import struct
from datetime import UTC
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import ibapi
from ib_async.client import Client
from ib_async.decoder import Decoder as AsyncDecoder
from ibapi.client import EClient
from ibapi.decoder import Decoder as IbapiDecoder

from tws_sim.protocol.fields import UNSET_DOUBLE, UNSET_INTEGER
from tws_sim.protocol.framing import FrameReader

VERSIONS = (157, 176, 178)
ASYNC_VERSIONS = (157, 176, 178)
# Which generation of the official client is installed: 9.81 (PyPI `ibapi`) or a 10.x build such
# as nautilus-ibapi (the compatibility venv). Several callbacks differ (error gains errorTime).
IBAPI_10 = ibapi.__version__.startswith("10.")
# 9.81 knows layouts up to v157 only; a 10.x decoder/encoder handles every text-protocol version.
IBAPI_VERSIONS = VERSIONS if IBAPI_10 else (157,)
# callbacks renamed in 10.x
_IBAPI_RENAMED = {"commissionReport": "commissionAndFeesReport"} if IBAPI_10 else {}


def ibapi_name(name: str) -> str:
    """The installed ibapi's name for callback `name` (9.81 spelling)."""
    return _IBAPI_RENAMED.get(name, name)


def ibapi_error(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """(reqId, code, text) of an ibapi `error` call of either generation: 10.x inserts errorTime
    after reqId (0 when the server version carries none) and always passes
    advancedOrderRejectJson ("" when absent)."""
    if IBAPI_10:
        assert args[1] == 0, f"errorTime at a text-protocol version must be 0: {args!r}"
        assert len(args) == 5, args
        return (args[0], args[2], args[3])
    assert len(args) == 3, args
    return args


def cancel_extra() -> list[Any]:
    """Trailing arguments of cancelOrder / reqGlobalCancel: 10.x requires an `OrderCancel`."""
    if IBAPI_10:
        from ibapi.order_cancel import OrderCancel

        return [OrderCancel()]
    return []


class Recorder:
    """A wrapper that records every callback as (name, args)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record


class AsyncRecorder(Recorder):
    """ib_async's decoder also reads `wrapper.ib.TimezoneTWS` and `wrapper.defaultTimezone`."""

    def __init__(self) -> None:
        super().__init__()
        self.ib = SimpleNamespace(TimezoneTWS=None)
        self.defaultTimezone = UTC


class _CaptureConn:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendMsg(self, msg: bytes) -> None:  # ibapi's method name
        self.sent.append(msg)

    def isConnected(self) -> bool:  # ibapi's method name
        return True


class CapturedIbapi:
    """ibapi EClient at a server version with its connection replaced by a capture."""

    def __init__(self, version: int) -> None:
        self.client = EClient(Recorder())
        self.conn = _CaptureConn()
        self.client.conn = self.conn
        self.client.serverVersion_ = version
        self.client.setConnState(EClient.CONNECTED)

    def take(self) -> list[list[str]]:
        """Messages sent since the last call, parsed by our FrameReader (one framing check)."""
        data = b"".join(self.conn.sent)
        self.conn.sent.clear()
        return FrameReader().feed(data)


class CapturedAsync:
    """ib_async Client at a server version with its send path captured (no socket, no throttle)."""

    def __init__(self, version: int) -> None:
        self.client = Client(AsyncRecorder())
        self.client._serverVersion = version
        self.client.connState = Client.CONNECTED
        self.sent: list[str] = []
        self.client.sendMsg = self.sent.append  # type: ignore[method-assign]

    def take(self) -> list[list[str]]:
        data = b"".join(struct.pack(">I", len(m.encode())) + m.encode() for m in self.sent)
        self.sent.clear()
        return FrameReader().feed(data)


def ibapi_client(version: int = 157) -> CapturedIbapi:
    return CapturedIbapi(version)


def async_client(version: int) -> CapturedAsync:
    return CapturedAsync(version)


def ibapi_decode(fields: list[str], version: int = 157) -> list[tuple[str, tuple[Any, ...]]]:
    """Feed one message to ibapi's Decoder (it takes bytes fields, as its reader produces)."""
    rec = Recorder()
    raw = tuple(f.encode() for f in fields)
    decoder = IbapiDecoder(rec, version)
    if IBAPI_10:
        # 10.x's reader strips the message id before decoding and passes it separately
        decoder.interpret(raw[1:], int(fields[0]))
    else:
        decoder.interpret(raw)
    return rec.calls


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def async_decode(fields: list[str], version: int) -> list[tuple[str, tuple[Any, ...]]]:
    """Feed one message to ib_async's Decoder; any error it logs fails the test."""
    rec = AsyncRecorder()
    logger = logging.getLogger("ib_async.Decoder")
    collector = _ErrorCollector()
    logger.addHandler(collector)
    try:
        AsyncDecoder(rec, version).interpret(list(fields))
    finally:
        logger.removeHandler(collector)
    if collector.records:
        r = collector.records[0]
        raise AssertionError(f"ib_async decoder failed: {r.getMessage()} {r.exc_info!r}")
    return rec.calls


def one_call(calls: list[tuple[str, tuple[Any, ...]]], name: str) -> tuple[Any, ...]:
    """The args of the single call named `name` (fails if there is not exactly one)."""
    found = [args for n, args in calls if n == name]
    assert len(found) == 1, f"expected one {name} call, got {calls!r}"
    return found[0]


def norm(v: Any) -> Any:
    """Comparable form of a field value across Decimal / float / sentinels / empty containers."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, Decimal):
        if v.is_infinite():
            return float("inf")
        return float(v)
    if isinstance(v, float):
        return None if v == UNSET_DOUBLE else v
    if isinstance(v, int):
        return None if v == UNSET_INTEGER else v
    if isinstance(v, list | tuple):
        return [norm_obj(x) for x in v] or None
    return v


def norm_obj(o: Any) -> Any:
    if hasattr(o, "__dict__") or hasattr(o, "__dataclass_fields__"):
        names = getattr(o, "__dataclass_fields__", None) or vars(o)
        return {k: norm(getattr(o, k)) for k in names}
    return norm(o)


# --------------------------------------------------------------------------------------------------
# harness self-checks


def test_ibapi_capture_produces_framed_fields() -> None:
    cap = ibapi_client(157)
    cap.client.reqCurrentTime()
    cap.client.reqIds(3)
    assert cap.take() == [["49", "1"], ["8", "1", "3"]]


def test_async_capture_produces_fields_per_version() -> None:
    for v in (176, 178):
        cap = async_client(v)
        cap.client.cancelOrder(7, "")
        assert cap.take() == [["4", "1", "7", ""]]
    cap = async_client(157)
    cap.client.cancelOrder(7, "")
    assert cap.take() == [["4", "1", "7"]]


def test_decoders_report_calls_and_failures() -> None:
    calls = ibapi_decode(["9", "1", "42"])
    assert one_call(calls, "nextValidId") == (42,)
    assert one_call(async_decode(["9", "1", "42"], 178), "nextValidId") == (42,)
    # a truncated execDetails makes ib_async log an error: the harness must turn it into a failure
    try:
        async_decode(["11", "1", "2"], 178)
    except AssertionError as e:
        assert "ib_async decoder failed" in str(e)
    else:
        raise AssertionError("a failing ib_async decode went unnoticed")
