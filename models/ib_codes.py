"""One table classifying IB `error()` codes, so every component reacts to a code the same way.

IB's `error(reqId, errorCode, errorString)` callback carries everything from order rejections to
"market data farm connection is OK" notices. The blueprint's "codes 200+ mean rejected" is wrong
(NOTES.md): 2100-2199 are warnings and notices, 10000+ are mixed, 399 is a warning, 202 confirms a
cancel. Codes not in the table are classified by range: 2100-2199 as warnings, anything else as
UNKNOWN (logged and alerted, never silently treated as a reject or as harmless).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class IbCodeClass(StrEnum):
    """What an IB error code means for epm."""

    # The order is dead at IB: the FSM gets REJECTED.
    ORDER_REJECTED = "ORDER_REJECTED"
    # Our cancel (or IB's own, e.g. an unfilled IOC) took effect: the FSM gets CANCELLED.
    CANCEL_CONFIRMED = "CANCEL_CONFIRMED"
    # A cancel did not take effect; the order keeps working (or is already done).
    CANCEL_REJECTED = "CANCEL_REJECTED"
    # A modification was refused; the original order is unchanged and still working.
    MODIFY_REJECTED = "MODIFY_REJECTED"
    # 103: the id was used before; resync ids (reqIds) and re-place under a fresh id.
    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
    # 326: another session holds this client id; halt order flow, alert, no blind retry.
    CLIENT_ID_IN_USE = "CLIENT_ID_IN_USE"
    # 100: more than 50 messages/s; a bridge bug (pacing must prevent it).
    PACING_VIOLATION = "PACING_VIOLATION"
    # The link to TWS/IB servers is down: stop sending.
    CONNECTIVITY_LOST = "CONNECTIVITY_LOST"
    # 1101: back, but IB dropped subscriptions: resubscribe, reqOpenOrders, reqExecutions.
    CONNECTIVITY_RESTORED_DATA_LOST = "CONNECTIVITY_RESTORED_DATA_LOST"
    # 1102: back, subscriptions kept; still reqExecutions for fills made while down.
    CONNECTIVITY_RESTORED = "CONNECTIVITY_RESTORED"
    # A data farm is broken: market data degraded (top-of-book fallback), not a trading halt.
    FARM_BROKEN = "FARM_BROKEN"
    FARM_OK = "FARM_OK"
    # Idle farm connection, reconnected on demand; informational.
    FARM_INACTIVE = "FARM_INACTIVE"
    # A market data request failed (not subscribed, no permissions); orders unaffected.
    MARKET_DATA_ERROR = "MARKET_DATA_ERROR"
    # A request (not an order) failed, e.g. contract details for an unknown symbol.
    REQUEST_FAILED = "REQUEST_FAILED"
    # Notices and warnings: logged, nothing changes state.
    WARNING = "WARNING"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class IbCode:
    """One row of the table: the code, its class and IB's meaning in our words."""

    code: int
    kind: IbCodeClass
    meaning: str


_C = IbCodeClass

_TABLE: tuple[IbCode, ...] = (
    IbCode(100, _C.PACING_VIOLATION, "max rate of messages per second exceeded"),
    IbCode(103, _C.DUPLICATE_ORDER_ID, "duplicate order id"),
    IbCode(104, _C.MODIFY_REJECTED, "cannot modify a filled order"),
    IbCode(105, _C.MODIFY_REJECTED, "modified order does not match the original"),
    IbCode(107, _C.ORDER_REJECTED, "cannot transmit an incomplete order"),
    IbCode(109, _C.ORDER_REJECTED, "price outside the percentage range of order defaults"),
    IbCode(110, _C.ORDER_REJECTED, "price does not conform to the minimum tick"),
    IbCode(111, _C.ORDER_REJECTED, "time in force and order type incompatible"),
    IbCode(113, _C.ORDER_REJECTED, "MOC/LOC orders need time in force DAY"),
    # 135 answers a modify/cancel of an id IB does not know: nothing is working under it.
    IbCode(135, _C.ORDER_REJECTED, "cannot find order with this id"),
    IbCode(136, _C.CANCEL_REJECTED, "this order cannot be cancelled"),
    IbCode(154, _C.ORDER_REJECTED, "orders cannot be transmitted for a halted security"),
    IbCode(161, _C.CANCEL_REJECTED, "cancel attempted when the order is not cancellable"),
    IbCode(162, _C.MARKET_DATA_ERROR, "historical market data service error"),
    IbCode(200, _C.ORDER_REJECTED, "no security definition found"),
    IbCode(201, _C.ORDER_REJECTED, "order rejected"),
    IbCode(202, _C.CANCEL_CONFIRMED, "order cancelled"),
    IbCode(203, _C.ORDER_REJECTED, "security not available or allowed for this account"),
    IbCode(321, _C.ORDER_REJECTED, "error validating request"),
    IbCode(326, _C.CLIENT_ID_IN_USE, "client id already in use"),
    IbCode(354, _C.MARKET_DATA_ERROR, "requested market data is not subscribed"),
    # 399 says how the order will be handled (e.g. "will not be placed until the open").
    IbCode(399, _C.WARNING, "order message warning"),
    # 404 holds a short sale until shares are located; the order stays working.
    IbCode(404, _C.WARNING, "shares not available for short sale, order held"),
    IbCode(434, _C.ORDER_REJECTED, "order size cannot be zero"),
    IbCode(502, _C.CONNECTIVITY_LOST, "could not connect to TWS"),
    IbCode(504, _C.CONNECTIVITY_LOST, "not connected"),
    IbCode(507, _C.CONNECTIVITY_LOST, "bad message length, connection closed"),
    IbCode(509, _C.CONNECTIVITY_LOST, "exception while reading the socket"),
    IbCode(1100, _C.CONNECTIVITY_LOST, "connectivity between IB and TWS lost"),
    IbCode(1101, _C.CONNECTIVITY_RESTORED_DATA_LOST, "connectivity restored, data lost"),
    IbCode(1102, _C.CONNECTIVITY_RESTORED, "connectivity restored, data maintained"),
    IbCode(1300, _C.CONNECTIVITY_LOST, "socket port reset; reconnect on the new port"),
    IbCode(2103, _C.FARM_BROKEN, "market data farm connection is broken"),
    IbCode(2104, _C.FARM_OK, "market data farm connection is OK"),
    IbCode(2105, _C.FARM_BROKEN, "historical data farm connection is broken"),
    IbCode(2106, _C.FARM_OK, "historical data farm connection is OK"),
    IbCode(2107, _C.FARM_INACTIVE, "historical data farm inactive, available on demand"),
    IbCode(2108, _C.FARM_INACTIVE, "market data farm inactive, available on demand"),
    IbCode(2110, _C.CONNECTIVITY_LOST, "connectivity between TWS and server is broken"),
    IbCode(2157, _C.FARM_BROKEN, "security definition data farm connection is broken"),
    IbCode(2158, _C.FARM_OK, "security definition data farm connection is OK"),
    IbCode(10090, _C.MARKET_DATA_ERROR, "part of the requested market data is not subscribed"),
    # 10147 answers a cancel for an id IB does not know; the order is not cancelled by it, and
    # reconciliation (reqOpenOrders / reqExecutions) decides what really happened.
    IbCode(10147, _C.CANCEL_REJECTED, "order id to cancel not found"),
    IbCode(10148, _C.CANCEL_REJECTED, "order id to cancel cannot be cancelled in its state"),
    IbCode(10149, _C.CANCEL_REJECTED, "invalid order id to cancel"),
    IbCode(10167, _C.MARKET_DATA_ERROR, "not subscribed, displaying delayed market data"),
    IbCode(10197, _C.MARKET_DATA_ERROR, "no market data during competing live session"),
)

IB_CODES: dict[int, IbCode] = {row.code: row for row in _TABLE}

# Classes that end or block an order, for callers that only need the coarse answer.
ORDER_CLASSES = frozenset(
    {
        IbCodeClass.ORDER_REJECTED,
        IbCodeClass.CANCEL_CONFIRMED,
        IbCodeClass.CANCEL_REJECTED,
        IbCodeClass.MODIFY_REJECTED,
        IbCodeClass.DUPLICATE_ORDER_ID,
    }
)
CONNECTIVITY_CLASSES = frozenset(
    {
        IbCodeClass.CONNECTIVITY_LOST,
        IbCodeClass.CONNECTIVITY_RESTORED,
        IbCodeClass.CONNECTIVITY_RESTORED_DATA_LOST,
        IbCodeClass.FARM_BROKEN,
        IbCodeClass.FARM_OK,
        IbCodeClass.FARM_INACTIVE,
        IbCodeClass.CLIENT_ID_IN_USE,
    }
)


def classify(code: int) -> IbCode:
    """Return the table row for `code`; unlisted codes are classified by IB's ranges."""
    row = IB_CODES.get(code)
    if row is not None:
        return row
    if 2100 <= code <= 2199:
        return IbCode(code, IbCodeClass.WARNING, "notice or warning (2100-2199)")
    return IbCode(code, IbCodeClass.UNKNOWN, "not in epm's table")
