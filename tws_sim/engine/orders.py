"""Working orders as the engine tracks them, and IB's error codes/messages for order handling."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from tws_sim.types import OrderRequest, OrderSnapshot, OrderStatusName, SecType

ZERO = Decimal(0)

ORDER_TYPES = frozenset(
    {
        "MKT",
        "LMT",
        "STP",
        "STP LMT",
        "TRAIL",
        "TRAIL LIMIT",
        "MIDPRICE",
        "PEG MID",
        "REL",
        "MOC",
        "LOC",
    }
)
TIFS = frozenset({"DAY", "GTC", "IOC", "FOK", "GTD", "OPG"})
STOP_TYPES = frozenset({"STP", "STP LMT", "TRAIL", "TRAIL LIMIT"})
PEG_TYPES = frozenset({"MIDPRICE", "PEG MID", "REL"})
AUCTION_CLOSE_TYPES = frozenset({"MOC", "LOC"})
LIMIT_PRICE_TYPES = frozenset({"LMT", "STP LMT", "LOC"})
DONE = frozenset(
    {
        OrderStatusName.FILLED,
        OrderStatusName.CANCELLED,
        OrderStatusName.API_CANCELLED,
        OrderStatusName.INACTIVE,
    }
)

# IB error codes the venue emits (names from IB's message catalogue).
ERR_DUPLICATE_ID = 103
ERR_MODIFY_FILLED = 104
ERR_MODIFY_MISMATCH = 105
ERR_BAD_TICK = 110
ERR_HALTED = 154
ERR_NOT_CANCELLABLE = 161
ERR_NO_SECURITY = 200
ERR_REJECTED = 201
ERR_CANCELLED = 202
ERR_VALIDATION = 321
ERR_CANCEL_UNKNOWN = 10147
ERR_CANCEL_DONE = 10148

MSG_DUPLICATE_ID = "Duplicate order id"
MSG_MODIFY_FILLED = "Can't modify a filled order."
MSG_MODIFY_MISMATCH = "Order being modified does not match original order"
MSG_BAD_TICK = "The price does not conform to the minimum price variation for this contract."
MSG_HALTED = "Orders cannot be transmitted for a halted security."
MSG_NO_SECURITY = "No security definition has been found for the request"
MSG_CANCELLED = "Order Canceled - reason:"
# Exchanges accept no MOC/LOC cancel in the last minutes before the closing cross (NYSE and Nasdaq:
# 15:50 ET on a full day); IB refuses such a cancel with 161 and the order keeps working.
CLOSE_AUCTION_CANCEL_CUTOFF_S = 600


def msg_rejected(reason: str) -> str:
    return f"Order rejected - reason:{reason}"


def msg_validation(cause: str) -> str:
    return f"Error validating request.-'bO' : cause - {cause}"


def msg_cancel_unknown(order_id: int) -> str:
    return f"OrderId {order_id} that needs to be cancelled is not found."


def msg_not_cancellable(perm_id: int) -> str:
    return f"Cancel attempted when order is not in a cancellable state. Order permId ={perm_id}"


def msg_cancel_done(order_id: int, state: str) -> str:
    return f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {state}."


class WorkingOrder:
    """Mutable engine-side state of one order (its `request` is replaced on modification)."""

    __slots__ = (
        "buy",
        "commission",
        "completed_time",
        "filled",
        "held",
        "instrument_multiplier",
        "is_combo",
        "key",
        "last_fill_price",
        "last_fill_time",
        "leg_fills",
        "notional",
        "peg_price",
        "perm_id",
        "req",
        "status",
        "trail_extreme",
        "trail_stop",
        "triggered",
        "waiting_parent",
    )

    def __init__(self, req: OrderRequest, perm_id: int, multiplier: int = 1) -> None:
        self.req = req
        self.key = (req.client_id, req.order_id)
        self.perm_id = perm_id
        self.status = OrderStatusName.SUBMITTED
        self.filled = ZERO
        self.notional = ZERO  # sum of shares x price (per unit, before multiplier)
        self.last_fill_price = ZERO
        self.last_fill_time: datetime | None = None  # combos: when the last units filled
        self.commission = ZERO
        self.triggered = req.order_type not in STOP_TYPES
        self.trail_stop: Decimal | None = None
        self.trail_extreme: Decimal | None = None
        self.peg_price: Decimal | None = None
        self.held = False  # transmit=0 group not released yet
        self.waiting_parent = False  # bracket child waiting for its parent's fill
        self.completed_time: datetime | None = None
        # combos: leg con_id -> [shares, notional, commission] for per-order commission minimums
        self.leg_fills: dict[int, list[Decimal]] = {}
        self.instrument_multiplier = multiplier
        # fixed for the order's life (a modification may not change side or contract)
        self.buy = req.action == "BUY"
        self.is_combo = req.sec_type == SecType.BAG

    @property
    def remaining(self) -> Decimal:
        return self.req.total_qty - self.filled

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def avg_price(self) -> Decimal:
        return self.notional / self.filled if self.filled else ZERO

    def snapshot(self) -> OrderSnapshot:
        """The view openOrder/orderStatus report."""
        return OrderSnapshot(
            request=self.req,
            perm_id=self.perm_id,
            status=self.status,
            filled=self.filled,
            remaining=self.remaining,
            avg_fill_price=self.avg_price,
            last_fill_price=self.last_fill_price,
            why_held="child" if self.waiting_parent else "",
            commission=self.commission if self.filled else None,
            completed_time=self.completed_time,
        )
