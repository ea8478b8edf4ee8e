"""The EWrapper: every IB callback becomes one typed `Message` on a queue, nothing more.

The decoder thread of each connection calls these methods. They only normalize (snake_case keys,
Decimal from str, sentinels → None, times → UTC, via `payloads`/`translate`) and enqueue; they never
block on I/O. One consumer (`outbox.Outbox`) drains the data queue; the connection manager drains
the control queue (ids, current time, connectivity errors, close). Each callback has its own
try/except so one undecodable message never kills the reader.

IB camelCase stops here. Both ibapi 9.81 and 10.x call these: `error` has three signatures
(9.81: reqId, code, text; 10.x before 10.3x: + advancedOrderRejectJson; later: reqId, errorTime,
code, text, json), sizes are floats on 9.81 and Decimal on 10.x, and 10.3x renamed
`commissionReport` to `commissionAndFeesReport`.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ibapi.wrapper import EWrapper

from epm.logging import get_logger
from ibgateway_bridge import payloads
from ibgateway_bridge.translate import (
    UNKNOWN_ZONE,
    TwsZone,
    decimal_str,
    iso_utc,
    parse_ib_time,
    to_decimal,
    to_int,
)
from models.ib_codes import CONNECTIVITY_CLASSES, IbCodeClass, classify

log = get_logger("ibgateway_bridge.wrapper")

# Errors for no request that the connection manager acts on (models.ib_codes): connectivity,
# farm notices, 326 and pacing. Errors about a request id (an order) always reach it too.
CONNECTION_CLASSES = CONNECTIVITY_CLASSES | {IbCodeClass.PACING_VIOLATION}


def for_connection_manager(req_id: int, code: int) -> bool:
    """Whether an error() goes on the control queue (besides the ledger's data queue)."""
    return req_id > 0 or classify(code).kind in CONNECTION_CLASSES


# Tick types (ibapi ticktype): sizes and prices we mirror into md:{conid}.
TICK_FIELDS = {
    0: "bid_size",
    1: "bid",
    2: "ask",
    3: "ask_size",
    4: "last",
    5: "last_size",
    6: "high",
    7: "low",
    8: "volume",
    9: "close",
    14: "open",
    66: "bid",
    67: "ask",
    68: "last",
    69: "bid_size",
    70: "ask_size",
    71: "last_size",
}
TICK_HALTED = 49
OPTION_TICKS = {10: "bid", 11: "ask", 12: "last", 13: "model"}


@dataclass(frozen=True, slots=True)
class Message:
    """One normalized callback: `kind` names it, `data` holds JSON primitives only."""

    kind: str
    client_id: int
    data: dict[str, Any]
    received_at: datetime = field(compare=False)


class BridgeWrapper(EWrapper):  # type: ignore[misc]  # ibapi ships no type hints
    """Normalize-and-enqueue wrapper for one connection (client id)."""

    def __init__(
        self,
        client_id: int,
        data: queue.Queue[Message],
        control: queue.Queue[Message],
        clock: Callable[[], datetime] | None = None,
        server_zone: TwsZone = UNKNOWN_ZONE,
        snapshot_ids: Container[int] = frozenset(),
    ) -> None:
        super().__init__()
        self.client_id = client_id
        # Request ids of snapshots a worker asked for (`snapshots.py`): their answers go to the
        # control queue only, never to the ledger.
        self._snapshot_ids = snapshot_ids
        self._data = data
        self._control = control
        self._clock = clock or (lambda: datetime.now(UTC))
        # The gateway's zone from the handshake (`set_server_zone` at connect): execDetails'
        # zone-less times are TWS local time in it.
        self.server_zone = server_zone

    def set_server_zone(self, zone: TwsZone) -> None:
        """Called once the handshake named the gateway's zone, before any callback is decoded."""
        self.server_zone = zone
        if not zone.known:
            log.warning(
                "tws_time_zone_unknown",
                client_id=self.client_id,
                zone=zone.raw,
                effect="zone-less execution times are flagged time_zone_source=unknown",
            )

    def _emit(self, kind: str, data: dict[str, Any], control: bool = False) -> None:
        msg = Message(kind, self.client_id, data, self._clock())
        (self._control if control else self._data).put(msg)

    def _guard(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # one bad message must never stop the decoder thread
            log.error("callback_failed", callback=name, client_id=self.client_id, error=repr(e))

    # ibapi's own logging hook; silence its per-message INFO lines.
    def logAnswer(self, fnName: str, fnParams: dict[str, Any]) -> None:
        return None

    # --- connection and control ------------------------------------------------------------
    def error(self, reqId: int, *args: Any) -> None:
        def run() -> None:
            error_time: object = None
            if len(args) >= 2 and isinstance(args[1], str):
                code, text = args[0], args[1]
                advanced = args[2] if len(args) > 2 else None
            else:
                error_time, code, text = args[0], args[1], args[2]
                advanced = args[3] if len(args) > 3 else None
            now = self._clock()
            data = payloads.error_payload(
                int(reqId), int(code), str(text), advanced, error_time, self.client_id, now
            )
            if for_connection_manager(int(reqId), int(code)):
                # An error about an order is the venue's answer to it: the connection manager
                # settles what it waits for (placements, cancels) on it.
                self._emit("error", data, control=True)
            if int(reqId) > 0:
                self._emit("error", data)
            log.info("ib_error", client_id=self.client_id, req_id=reqId, code=code, text=text)

        self._guard("error", run)

    def nextValidId(self, orderId: int) -> None:
        self._guard(
            "nextValidId",
            lambda: self._emit("next_valid_id", {"ib_order_id": int(orderId)}, control=True),
        )

    def currentTime(self, time: int) -> None:
        self._guard(
            "currentTime",
            lambda: self._emit(
                "current_time", {"time": iso_utc(parse_ib_time(int(time)))}, control=True
            ),
        )

    def connectionClosed(self) -> None:
        self._emit("connection_closed", {}, control=True)

    def managedAccounts(self, accountsList: str) -> None:
        def run() -> None:
            accounts = [a for a in accountsList.split(",") if a]
            self._emit("managed_accounts", {"accounts": accounts}, control=True)

        self._guard("managedAccounts", run)

    # --- orders and fills -------------------------------------------------------------------
    def openOrder(self, orderId: int, contract: Any, order: Any, orderState: Any) -> None:
        def run() -> None:
            if getattr(order, "whatIf", False):
                # A margin answer, not an order: it never reaches the ledger (runtime stores it).
                self._emit("what_if", _what_if(orderId, order, orderState), control=True)
                return
            data = payloads.open_order_payload(orderId, contract, order, orderState, self._clock())
            self._emit("open_order", data)
            self._emit("order_seen", _seen(data), control=True)

        self._guard("openOrder", run)

    def openOrderEnd(self) -> None:
        self._emit("open_order_end", {}, control=True)

    def completedOrder(self, contract: Any, order: Any, orderState: Any) -> None:
        def run() -> None:
            data = payloads.open_order_payload(
                int(getattr(order, "orderId", 0)), contract, order, orderState, self._clock()
            )
            self._emit("completed_order", data, control=True)

        self._guard("completedOrder", run)

    def completedOrdersEnd(self) -> None:
        self._emit("completed_orders_end", {}, control=True)

    def orderStatus(
        self,
        orderId: int,
        status: str,
        filled: Any,
        remaining: Any,
        avgFillPrice: Any,
        permId: int,
        parentId: int,
        lastFillPrice: Any,
        clientId: int,
        whyHeld: str,
        mktCapPrice: Any = None,
    ) -> None:
        def run() -> None:
            data = payloads.order_status_payload(
                int(orderId),
                status,
                filled,
                remaining,
                avgFillPrice,
                permId,
                parentId,
                lastFillPrice,
                clientId,
                whyHeld,
                mktCapPrice,
                self._clock(),
            )
            self._emit("order_status", data)
            # The bridge's per-order view (acks, cancels settled) needs statuses too.
            self._emit("order_seen", _seen(data), control=True)

        self._guard("orderStatus", run)

    def execDetails(self, reqId: int, contract: Any, execution: Any) -> None:
        def run() -> None:
            data = payloads.execution_payload(
                int(reqId), contract, execution, self.client_id, self._clock(), self.server_zone
            )
            if int(reqId) in self._snapshot_ids:
                self._emit("snapshot_execution", data, control=True)
                return
            self._emit("execution", data)
            self._emit("order_seen", _seen(data), control=True)

        self._guard("execDetails", run)

    def execDetailsEnd(self, reqId: int) -> None:
        self._guard(
            "execDetailsEnd",
            lambda: self._emit("exec_details_end", {"req_id": int(reqId)}, control=True),
        )

    def commissionReport(self, commissionReport: Any) -> None:
        self._guard(
            "commissionReport",
            lambda: self._emit(
                "commission",
                payloads.commission_payload(commissionReport, self.client_id, self._clock()),
            ),
        )

    def commissionAndFeesReport(self, commissionAndFeesReport: Any) -> None:
        self.commissionReport(commissionAndFeesReport)

    # --- account ----------------------------------------------------------------------------
    def position(self, account: str, contract: Any, position: Any, avgCost: Any) -> None:
        def run() -> None:
            data = {
                "account": account,
                **payloads.contract_fields(contract),
                "position": decimal_str(to_decimal(position)),
                "avg_cost": decimal_str(to_decimal(avgCost)),
            }
            self._emit("position", data)

        self._guard("position", run)

    def positionEnd(self) -> None:
        self._emit("position_end", {})

    def positionMulti(
        self, reqId: int, account: str, modelCode: str, contract: Any, pos: Any, avgCost: Any
    ) -> None:
        def run() -> None:
            data = {
                "req_id": int(reqId),
                "account": account,
                "model_code": modelCode or None,
                **payloads.contract_fields(contract),
                "position": decimal_str(to_decimal(pos)),
                "avg_cost": decimal_str(to_decimal(avgCost)),
            }
            # Only snapshots ask for positionMulti (`snapshots.py`): the control queue's.
            self._emit("snapshot_position", data, control=True)

        self._guard("positionMulti", run)

    def positionMultiEnd(self, reqId: int) -> None:
        self._guard(
            "positionMultiEnd",
            lambda: self._emit("position_multi_end", {"req_id": int(reqId)}, control=True),
        )

    def accountSummary(
        self,
        reqId: int,
        account: str,
        tag: str,
        value: str,
        currency: str,
    ) -> None:
        data = {
            "req_id": reqId,
            "account": account,
            "tag": tag,
            "value": value,
            "currency": currency,
        }
        self._guard("accountSummary", lambda: self._emit("account_summary", data))

    def accountSummaryEnd(self, reqId: int) -> None:
        return None

    def pnl(self, reqId: int, dailyPnL: Any, unrealizedPnL: Any, realizedPnL: Any) -> None:
        def run() -> None:
            data = {
                "req_id": int(reqId),
                "daily": decimal_str(to_decimal(dailyPnL)),
                "unrealized": decimal_str(to_decimal(unrealizedPnL)),
                "realized": decimal_str(to_decimal(realizedPnL)),
            }
            self._emit("pnl", data)

        self._guard("pnl", run)

    def pnlSingle(
        self,
        reqId: int,
        pos: Any,
        dailyPnL: Any,
        unrealizedPnL: Any,
        realizedPnL: Any,
        value: Any,
    ) -> None:
        def run() -> None:
            data = {
                "req_id": int(reqId),
                "position": decimal_str(to_decimal(pos)),
                "daily": decimal_str(to_decimal(dailyPnL)),
                "unrealized": decimal_str(to_decimal(unrealizedPnL)),
                "realized": decimal_str(to_decimal(realizedPnL)),
                "value": decimal_str(to_decimal(value)),
            }
            self._emit("pnl_single", data)

        self._guard("pnlSingle", run)

    # --- contracts --------------------------------------------------------------------------
    def contractDetails(self, reqId: int, contractDetails: Any) -> None:
        def run() -> None:
            data = payloads.contract_details_payload(contractDetails, self._clock())
            data["req_id"] = int(reqId)
            self._emit("contract_details", data)

        self._guard("contractDetails", run)

    def contractDetailsEnd(self, reqId: int) -> None:
        self._guard(
            "contractDetailsEnd",
            lambda: self._emit("contract_details_end", {"req_id": int(reqId)}),
        )

    # --- market data ------------------------------------------------------------------------
    def tickPrice(self, reqId: int, tickType: int, price: Any, attrib: Any) -> None:
        self._guard("tickPrice", lambda: self._tick(reqId, tickType, price))

    def tickSize(self, reqId: int, tickType: int, size: Any) -> None:
        self._guard("tickSize", lambda: self._tick(reqId, tickType, size))

    def _tick(self, req_id: int, tick_type: int, raw: Any) -> None:
        name = TICK_FIELDS.get(int(tick_type))
        if name is not None:
            value = decimal_str(to_decimal(raw))
            self._emit("tick", {"req_id": int(req_id), "field": name, "value": value})

    def tickGeneric(self, reqId: int, tickType: int, value: Any) -> None:
        def run() -> None:
            if int(tickType) == TICK_HALTED:
                # NOTES: 0 = trading, 1 = halted, 2 = volatility halt.
                state = to_int(value)
                halt = {"req_id": int(reqId), "state": 0 if state is None else state}
                self._emit("halt", halt)

        self._guard("tickGeneric", run)

    def tickOptionComputation(self, reqId: int, tickType: int, *args: Any) -> None:
        def run() -> None:
            # 9.81+ put tickAttrib first; older layouts did not.
            values = args[1:] if len(args) == 9 else args
            iv, delta, opt_price, pv_div, gamma, vega, theta, und = values[:8]
            prefix = OPTION_TICKS.get(int(tickType), f"t{int(tickType)}")
            data = {
                "req_id": int(reqId),
                "prefix": prefix,
                "iv": decimal_str(to_decimal(iv)),
                "delta": decimal_str(to_decimal(delta)),
                "opt_price": decimal_str(to_decimal(opt_price)),
                "pv_dividend": decimal_str(to_decimal(pv_div)),
                "gamma": decimal_str(to_decimal(gamma)),
                "vega": decimal_str(to_decimal(vega)),
                "theta": decimal_str(to_decimal(theta)),
                "und_price": decimal_str(to_decimal(und)),
            }
            self._emit("greeks", data)

        self._guard("tickOptionComputation", run)

    def realtimeBar(
        self,
        reqId: int,
        time: int,
        open_: Any,
        high: Any,
        low: Any,
        close: Any,
        volume: Any,
        wap: Any,
        count: int,
    ) -> None:
        def run() -> None:
            data = {
                "req_id": int(reqId),
                "time": iso_utc(parse_ib_time(int(time))),
                "open": decimal_str(to_decimal(open_)),
                "high": decimal_str(to_decimal(high)),
                "low": decimal_str(to_decimal(low)),
                "close": decimal_str(to_decimal(close)),
                "volume": decimal_str(to_decimal(volume)),
                "wap": decimal_str(to_decimal(wap)),
                "count": to_int(count),
            }
            self._emit("bar", data)

        self._guard("realtimeBar", run)

    def updateMktDepth(
        self,
        reqId: int,
        position: int,
        operation: int,
        side: int,
        price: Any,
        size: Any,
    ) -> None:
        self.updateMktDepthL2(reqId, position, "", operation, side, price, size, False)

    def updateMktDepthL2(
        self,
        reqId: int,
        position: int,
        marketMaker: str,
        operation: int,
        side: int,
        price: Any,
        size: Any,
        isSmartDepth: bool = False,
    ) -> None:
        def run() -> None:
            data = {
                "req_id": int(reqId),
                "position": int(position),
                "market_maker": marketMaker,
                "operation": int(operation),
                "side": "bid" if int(side) == 1 else "ask",
                "price": decimal_str(to_decimal(price)),
                "size": decimal_str(to_decimal(size)),
            }
            self._emit("depth", data)

        self._guard("updateMktDepthL2", run)


def _seen(data: dict[str, Any]) -> dict[str, Any]:
    """What the connection manager keeps of an order callback: its ids, ref and IB status."""
    return {
        "ib_order_id": data.get("ib_order_id"),
        "order_ref": data.get("order_ref"),
        "perm_id": data.get("perm_id"),
        "ib_status": data.get("ib_status"),
    }


WHAT_IF_FIELDS = (
    "initMarginBefore",
    "maintMarginBefore",
    "equityWithLoanBefore",
    "initMarginChange",
    "maintMarginChange",
    "equityWithLoanChange",
    "initMarginAfter",
    "maintMarginAfter",
    "equityWithLoanAfter",
)


def _what_if(order_id: int, order: Any, state: Any) -> dict[str, Any]:
    """The what-if's OrderState margins as IB sent them (strings; empty when IB had none)."""
    data: dict[str, Any] = {name: str(getattr(state, name, "") or "") for name in WHAT_IF_FIELDS}
    data.update(
        ib_order_id=int(order_id),
        order_ref=str(getattr(order, "orderRef", "") or ""),
        status=str(getattr(state, "status", "") or ""),
        warning=str(getattr(state, "warningText", "") or ""),
    )
    return data
