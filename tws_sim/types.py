"""The simulator's shared vocabulary: instruments, market data, orders, executions, venue events.

Four parts of the simulator speak through these types and nothing else:
- `tws_sim.market` (catalog, stochastic market, option pricing, scenarios, clock) produces
  `Instrument`, `Quote`, `DepthLevel`, `Bar`, `Greeks` and `MarketEvent`s;
- `tws_sim.engine` (matching engine + account) takes `OrderRequest`s and `MarketEvent`s and emits
  `VenueEvent`s;
- `tws_sim.protocol` (the wire codec) turns socket bytes into request objects and `VenueEvent`s /
  market data into socket bytes for a negotiated server version;
- `tws_sim.server` (sockets, sessions, subscriptions, the driver loop) routes between them.

All prices and sizes are `Decimal`; all times are aware UTC `datetime`s of the *simulated* clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import IntEnum, StrEnum

# --------------------------------------------------------------------------------------------------
# Instruments


class SecType(StrEnum):
    STK = "STK"
    OPT = "OPT"
    BAG = "BAG"


class Right(StrEnum):
    CALL = "C"
    PUT = "P"


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable contract as the venue knows it (stock or single option)."""

    con_id: int
    symbol: str  # underlying symbol ("SPY" for SPY options too)
    sec_type: SecType
    currency: str
    exchange: str  # the default route, "SMART"
    primary_exchange: str  # "ARCA", "NASDAQ", "NYSE" for stocks; "" for options
    local_symbol: str  # stocks: the ticker; options: OCC 21-char symbol
    trading_class: str  # stocks: ticker; options: "SPY" (or a weekly class if modelled)
    multiplier: int  # 1 for stocks, 100 for options
    min_tick: Decimal
    long_name: str
    valid_exchanges: tuple[str, ...]  # e.g. ("SMART", "CBOE", "BOX", "ISE", ...)
    expiry: date | None = None  # options only
    strike: Decimal | None = None  # options only
    right: Right | None = None  # options only
    underlying_con_id: int | None = None  # options only
    industry: str = ""
    category: str = ""


@dataclass(frozen=True, slots=True)
class ComboLegSpec:
    """One leg of a BAG order (IB ComboLeg): ratio is a positive integer, action BUY/SELL."""

    con_id: int
    ratio: int
    action: str  # "BUY" | "SELL"
    exchange: str = "SMART"


# --------------------------------------------------------------------------------------------------
# Market data


class HaltState(IntEnum):
    """Generic tick 49 values (NOTES.md): 0 trading, 1 halted, 2 volatility halt."""

    TRADING = 0
    HALTED = 1
    VOLATILITY_HALT = 2


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book for one contract at one simulated instant."""

    con_id: int
    ts: datetime
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    last: Decimal
    last_size: Decimal
    volume: Decimal  # session volume so far
    high: Decimal
    low: Decimal
    close: Decimal  # prior session close
    open: Decimal
    halted: HaltState = HaltState.TRADING

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, slots=True)
class DepthLevel:
    """One row of the L2 book; `side` 0 = ask, 1 = bid (IB's convention)."""

    side: int
    position: int
    price: Decimal
    size: Decimal
    market_maker: str  # exchange / MM code that rotates between snapshots


@dataclass(frozen=True, slots=True)
class Bar:
    """An OHLCV bar; `time` is the bar's start."""

    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    wap: Decimal
    count: int


@dataclass(frozen=True, slots=True)
class Greeks:
    """Option model values sent as tickOptionComputation (model tick type 13 and bid/ask/last)."""

    implied_vol: float
    delta: float
    gamma: float
    vega: float
    theta: float
    opt_price: float
    pv_dividend: float
    und_price: float


@dataclass(frozen=True, slots=True)
class QuoteChanged:
    quote: Quote


@dataclass(frozen=True, slots=True)
class TradePrinted:
    con_id: int
    ts: datetime
    price: Decimal
    size: Decimal
    exchange: str


@dataclass(frozen=True, slots=True)
class HaltChanged:
    con_id: int
    ts: datetime
    state: HaltState


@dataclass(frozen=True, slots=True)
class BarClosed:
    """A completed 5-second bar (reqRealTimeBars)."""

    con_id: int
    bar: Bar


MarketEvent = QuoteChanged | TradePrinted | HaltChanged | BarClosed


# --------------------------------------------------------------------------------------------------
# Orders and executions


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A placeOrder as the engine needs it, normalized from the wire.

    `raw_contract` / `raw_order` are the decoded wire objects (ibapi `Contract` / `Order` instances)
    that the protocol layer echoes back in openOrder; the engine never reads them.
    """

    client_id: int
    order_id: int
    account: str
    con_id: int  # 0 for a BAG
    symbol: str
    sec_type: SecType
    action: str  # "BUY" | "SELL"
    total_qty: Decimal
    # MKT, LMT, STP, STP LMT, TRAIL, TRAIL LIMIT, MIDPRICE, PEG MID, REL, MOC, LOC
    order_type: str
    tif: str  # "DAY", "GTC", "IOC", "FOK", "GTD", "OPG"
    route: str = "SMART"  # exchange the order was sent to
    lmt_price: Decimal | None = None
    aux_price: Decimal | None = None  # stop price / trailing amount / peg offset
    trailing_percent: Decimal | None = None
    trail_stop_price: Decimal | None = None
    good_till: datetime | None = None
    outside_rth: bool = False
    oca_group: str = ""
    oca_type: int = 0
    parent_id: int = 0
    transmit: bool = True
    order_ref: str = ""
    combo_legs: tuple[ComboLegSpec, ...] = ()
    raw_contract: object | None = field(default=None, compare=False, repr=False)
    raw_order: object | None = field(default=None, compare=False, repr=False)


class OrderStatusName(StrEnum):
    """IB's orderStatus strings, as sent on the wire."""

    PENDING_SUBMIT = "PendingSubmit"
    PENDING_CANCEL = "PendingCancel"
    PRE_SUBMITTED = "PreSubmitted"
    SUBMITTED = "Submitted"
    API_CANCELLED = "ApiCancelled"
    CANCELLED = "Cancelled"
    FILLED = "Filled"
    INACTIVE = "Inactive"


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """The venue's view of one order after a change: what openOrder and orderStatus report."""

    request: OrderRequest
    perm_id: int
    status: OrderStatusName
    filled: Decimal
    remaining: Decimal
    avg_fill_price: Decimal
    last_fill_price: Decimal
    why_held: str = ""
    commission: Decimal | None = None  # orderState commission, once known
    warning_text: str = ""
    completed_time: datetime | None = None  # for reqCompletedOrders
    # A what-if's OrderState margins (`tws_sim.engine.what_if`): init/maint/equity-with-loan
    # before, change, after, as openOrder sends them; None for a real order.
    margins: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill, as execDetails reports it; `exec_id` like IB's ("0000e0d5.6581b1f5.01.01")."""

    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    account: str
    con_id: int
    symbol: str
    sec_type: SecType
    side: str  # "BOT" | "SLD"
    shares: Decimal
    price: Decimal
    cum_qty: Decimal
    avg_price: Decimal
    time: datetime
    exchange: str
    order_ref: str = ""
    liquidation: int = 0
    last_liquidity: int = 1  # 1 added, 2 removed
    is_correction_of: str | None = None  # exec_id this execution replaces (suffix .01 -> .02)


@dataclass(frozen=True, slots=True)
class CommissionReport:
    exec_id: str
    commission: Decimal
    currency: str
    realized_pnl: Decimal | None  # None = IB's "unset" max double


# --------------------------------------------------------------------------------------------------
# Venue events: what the engine tells the server to deliver


@dataclass(frozen=True, slots=True)
class OrderChanged:
    """Send openOrder (when `open_order`) and orderStatus to the owner (and client-0 listeners)."""

    snapshot: OrderSnapshot
    open_order: bool = True
    order_status: bool = True


@dataclass(frozen=True, slots=True)
class Executed:
    execution: Execution


@dataclass(frozen=True, slots=True)
class Commissioned:
    """Commission for an execution; `deliver_at` lets scenarios delay it (None = now)."""

    client_id: int
    report: CommissionReport
    deliver_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class VenueError:
    """An error for one client: `req_id` is the order id for order errors, -1 for notices."""

    client_id: int
    req_id: int
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class PositionChanged:
    account: str
    con_id: int
    position: Decimal
    avg_cost: Decimal


VenueEvent = OrderChanged | Executed | Commissioned | VenueError | PositionChanged
