"""Decode client requests (lists of str fields) into request dataclasses, per server version.

`decode(fields, server_version, client_id=0)` never raises: a request it understands becomes its
dataclass; an id IB never defined becomes `UnknownMessage`; an id IB defines but the simulator does
not serve becomes `Unsupported`; fields that are missing or unreadable become `BadRequest` with the
error code and text the server should answer with.

Field orders are those the public clients send at server versions 157..178 (ibapi 9.81 sends the
v157 layouts, ib_async 2.1.0 and 10.x ibapi clients held at 178 the v176/v178 ones). `PlaceOrder`
fills ibapi `Contract` / `Order` instances (of whichever ibapi is installed) as containers (echoed
back in openOrder) and the normalized `OrderRequest` the engine consumes. In those containers every
double that was set holds a `Decimal`; an unset double keeps ibapi's sentinel (`UNSET_DOUBLE`), an
unset int `UNSET_INTEGER`, so ibapi-style "is it set" checks keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibapi.contract import ComboLeg, Contract, DeltaNeutralContract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order, OrderComboLeg
from ibapi.softdollartier import SoftDollarTier
from ibapi.tag_value import TagValue

from tws_sim.protocol.fields import (
    UNSET_DOUBLE,
    UNSET_INTEGER,
    FieldError,
    parse_bool,
    parse_dec,
    parse_int,
)
from tws_sim.protocol.ids import KNOWN_REQUEST_IDS, In
from tws_sim.types import ComboLegSpec, OrderRequest, SecType

# IB's server-side error codes for requests it cannot take.
ERR_UNKNOWN_MESSAGE: Final = 505  # "Fatal Error: Unknown message id."
ERR_READING_REQUEST: Final = 320  # "Server error when reading an API client request."
ERR_VALIDATING_REQUEST: Final = 321  # "Server error when validating an API client request."
ERR_NO_SECURITY_DEFINITION: Final = 200  # "No security definition has been found for the request"

_ERR_TEXT: Final = {
    ERR_UNKNOWN_MESSAGE: "Fatal Error: Unknown message id.",
    ERR_READING_REQUEST: "Server error when reading an API client request.",
    ERR_VALIDATING_REQUEST: "Server error when validating an API client request.",
    ERR_NO_SECURITY_DEFINITION: "No security definition has been found for the request.",
}

_SEC_TYPES: Final = {"STK": SecType.STK, "OPT": SecType.OPT, "BAG": SecType.BAG}
_ACTIONS: Final = frozenset({"BUY", "SELL"})
_DEFAULT_TZ: Final = UTC  # the sim's "TWS local time zone" (its connection time says UTC)

# --------------------------------------------------------------------------------------------------
# Request dataclasses


@dataclass(frozen=True, slots=True)
class StartApi:
    client_id: int
    optional_capabilities: str = ""


@dataclass(frozen=True, slots=True)
class ReqMktData:
    req_id: int
    contract: Contract
    generic_tick_list: str
    snapshot: bool
    regulatory_snapshot: bool

    @property
    def generic_ticks(self) -> frozenset[int]:
        """The numeric generic tick ids asked for ("100,101,mdoff,292:FLY" → {100, 101})."""
        out: set[int] = set()
        for tok in self.generic_tick_list.split(","):
            tok = tok.strip()
            if tok.isdigit():
                out.add(int(tok))
        return frozenset(out)


@dataclass(frozen=True, slots=True)
class CancelMktData:
    req_id: int


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    order_id: int
    contract: Contract
    order: Order
    request: OrderRequest


@dataclass(frozen=True, slots=True)
class CancelOrder:
    order_id: int
    manual_order_cancel_time: str = ""


@dataclass(frozen=True, slots=True)
class ReqOpenOrders:
    pass


@dataclass(frozen=True, slots=True)
class ReqAllOpenOrders:
    pass


@dataclass(frozen=True, slots=True)
class ReqAutoOpenOrders:
    auto_bind: bool


@dataclass(frozen=True, slots=True)
class ReqAccountUpdates:
    subscribe: bool
    account: str


@dataclass(frozen=True, slots=True)
class ReqExecutions:
    req_id: int
    filter: ExecutionFilter
    #: the filter's time as an aware UTC datetime (None when the client left it empty)
    since: datetime | None


@dataclass(frozen=True, slots=True)
class ReqIds:
    num_ids: int


@dataclass(frozen=True, slots=True)
class ReqContractDetails:
    req_id: int
    contract: Contract
    include_expired: bool
    sec_id_type: str = ""
    sec_id: str = ""
    issuer_id: str = ""


@dataclass(frozen=True, slots=True)
class ReqMktDepth:
    req_id: int
    contract: Contract
    num_rows: int
    is_smart_depth: bool


@dataclass(frozen=True, slots=True)
class CancelMktDepth:
    req_id: int
    is_smart_depth: bool


@dataclass(frozen=True, slots=True)
class SetServerLogLevel:
    level: int


@dataclass(frozen=True, slots=True)
class ReqManagedAccts:
    pass


@dataclass(frozen=True, slots=True)
class ReqHistoricalData:
    req_id: int
    contract: Contract
    end_date_time: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool


@dataclass(frozen=True, slots=True)
class CancelHistoricalData:
    req_id: int


@dataclass(frozen=True, slots=True)
class ReqCurrentTime:
    pass


@dataclass(frozen=True, slots=True)
class ReqRealTimeBars:
    req_id: int
    contract: Contract
    bar_size: int
    what_to_show: str
    use_rth: bool


@dataclass(frozen=True, slots=True)
class CancelRealTimeBars:
    req_id: int


@dataclass(frozen=True, slots=True)
class ReqGlobalCancel:
    pass


@dataclass(frozen=True, slots=True)
class ReqMarketDataType:
    market_data_type: int


@dataclass(frozen=True, slots=True)
class ReqPositions:
    pass


@dataclass(frozen=True, slots=True)
class CancelPositions:
    pass


@dataclass(frozen=True, slots=True)
class ReqAccountSummary:
    req_id: int
    group: str
    tags: str

    @property
    def tag_list(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.tags.split(",") if t.strip())


@dataclass(frozen=True, slots=True)
class CancelAccountSummary:
    req_id: int


@dataclass(frozen=True, slots=True)
class ReqPositionsMulti:
    req_id: int
    account: str
    model_code: str


@dataclass(frozen=True, slots=True)
class CancelPositionsMulti:
    req_id: int


@dataclass(frozen=True, slots=True)
class ReqAccountUpdatesMulti:
    req_id: int
    account: str
    model_code: str
    ledger_and_nlv: bool


@dataclass(frozen=True, slots=True)
class CancelAccountUpdatesMulti:
    req_id: int


@dataclass(frozen=True, slots=True)
class ReqSecDefOptParams:
    req_id: int
    underlying_symbol: str
    fut_fop_exchange: str
    underlying_sec_type: str
    underlying_con_id: int


@dataclass(frozen=True, slots=True)
class ReqPnL:
    req_id: int
    account: str
    model_code: str


@dataclass(frozen=True, slots=True)
class CancelPnL:
    req_id: int


@dataclass(frozen=True, slots=True)
class ReqPnLSingle:
    req_id: int
    account: str
    model_code: str
    con_id: int


@dataclass(frozen=True, slots=True)
class CancelPnLSingle:
    req_id: int


@dataclass(frozen=True, slots=True)
class ReqTickByTickData:
    req_id: int
    contract: Contract
    tick_type: str  # "Last" | "AllLast" | "BidAsk" | "MidPoint"
    number_of_ticks: int
    ignore_size: bool


@dataclass(frozen=True, slots=True)
class CancelTickByTickData:
    req_id: int


@dataclass(frozen=True, slots=True)
class ReqCompletedOrders:
    api_only: bool


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A message id IB never defined (or not a number at all); answered with error 505."""

    msg_id: str
    fields: tuple[str, ...] = field(repr=False, default=())

    @property
    def error_code(self) -> int:
        return ERR_UNKNOWN_MESSAGE

    @property
    def error_text(self) -> str:
        return f"{_ERR_TEXT[ERR_UNKNOWN_MESSAGE]} id={self.msg_id[:20]}"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A request IB defines that the simulator does not serve (scanner, news, FA …)."""

    msg_id: int
    req_id: int = -1

    @property
    def error_code(self) -> int:
        return ERR_VALIDATING_REQUEST

    @property
    def error_text(self) -> str:
        return f"{_ERR_TEXT[ERR_VALIDATING_REQUEST]} Request {self.msg_id} is not supported."


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A known request whose fields are missing or unreadable; `req_id` is -1 when unknown."""

    msg_id: int
    req_id: int
    code: int
    reason: str

    @property
    def error_code(self) -> int:
        return self.code

    @property
    def error_text(self) -> str:
        return f"{_ERR_TEXT.get(self.code, 'Bad request.')} {self.reason}"


Request = (
    StartApi
    | ReqMktData
    | CancelMktData
    | PlaceOrder
    | CancelOrder
    | ReqOpenOrders
    | ReqAllOpenOrders
    | ReqAutoOpenOrders
    | ReqAccountUpdates
    | ReqExecutions
    | ReqIds
    | ReqContractDetails
    | ReqMktDepth
    | CancelMktDepth
    | SetServerLogLevel
    | ReqManagedAccts
    | ReqHistoricalData
    | CancelHistoricalData
    | ReqCurrentTime
    | ReqRealTimeBars
    | CancelRealTimeBars
    | ReqGlobalCancel
    | ReqMarketDataType
    | ReqPositions
    | CancelPositions
    | ReqAccountSummary
    | CancelAccountSummary
    | ReqPositionsMulti
    | CancelPositionsMulti
    | ReqAccountUpdatesMulti
    | CancelAccountUpdatesMulti
    | ReqSecDefOptParams
    | ReqPnL
    | CancelPnL
    | ReqPnLSingle
    | CancelPnLSingle
    | ReqTickByTickData
    | CancelTickByTickData
    | ReqCompletedOrders
    | UnknownMessage
    | Unsupported
    | BadRequest
)

# --------------------------------------------------------------------------------------------------
# Field cursor


class _Invalid(Exception):
    """A semantically invalid request (answered with `code`)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Cursor:
    """Sequential reader over one message's fields; running out raises FieldError."""

    __slots__ = ("f", "i", "n")

    def __init__(self, fields: list[str], start: int) -> None:
        self.f = fields
        self.i = start
        self.n = len(fields)

    def s(self) -> str:
        i = self.i
        if i >= self.n:
            raise FieldError(f"message ends early (field {i} missing)")
        self.i = i + 1
        return self.f[i]

    def int_(self, default: int = 0) -> int:
        return parse_int(self.s(), default)

    def bool_(self) -> bool:
        return parse_bool(self.s())

    def dec(self) -> Decimal | None:
        return parse_dec(self.s())

    def dec_or_unset(self) -> Decimal | float:
        """A double for an ibapi container: Decimal when set, ibapi's UNSET_DOUBLE when not."""
        d = parse_dec(self.s())
        return UNSET_DOUBLE if d is None else d

    def skip_version(self) -> None:
        self.s()

    def rest(self) -> int:
        return self.n - self.i


def _read_contract(cur: _Cursor, *, primary_exchange: bool = True) -> Contract:
    """conId, symbol, secType, expiry, strike, right, multiplier, exchange, [primaryExchange],
    currency, localSymbol, tradingClass — the contract block most requests carry."""
    c = Contract()
    c.conId = cur.int_()
    c.symbol = cur.s()
    c.secType = cur.s()
    c.lastTradeDateOrContractMonth = cur.s()
    strike = cur.dec()
    c.strike = Decimal(0) if strike is None else strike
    c.right = cur.s()
    c.multiplier = cur.s()
    c.exchange = cur.s()
    if primary_exchange:
        c.primaryExchange = cur.s()
    c.currency = cur.s()
    c.localSymbol = cur.s()
    c.tradingClass = cur.s()
    return c


def _read_short_legs(cur: _Cursor, c: Contract) -> None:
    """BAG legs as reqMktData / reqHistoricalData send them: conId, ratio, action, exchange."""
    n = cur.int_()
    if n < 0 or n > 64:
        raise _Invalid(ERR_READING_REQUEST, f"bad combo leg count {n}")
    legs = []
    for _ in range(n):
        leg = ComboLeg()
        leg.conId = cur.int_()
        leg.ratio = cur.int_()
        leg.action = cur.s()
        leg.exchange = cur.s()
        legs.append(leg)
    c.comboLegs = legs


def _read_delta_neutral(cur: _Cursor, c: Contract) -> None:
    if cur.bool_():
        dn = DeltaNeutralContract()
        dn.conId = cur.int_()
        dn.delta = cur.dec_or_unset()
        dn.price = cur.dec_or_unset()
        c.deltaNeutralContract = dn


_TZ_CACHE: dict[str, ZoneInfo] = {}


def parse_ib_time(s: str) -> datetime | None:
    """IB's request time strings → aware UTC datetime; "" → None.

    Accepts `yyyymmdd hh:mm:ss`, `yyyymmdd hh:mm:ss <tz name>`, `yyyymmdd-hh:mm:ss` (UTC) and
    `yyyymmdd` (midnight). A time without a zone is the sim's TWS local time, UTC.
    Raises FieldError for anything else.
    """
    s = s.strip()
    if not s:
        return None
    tz = _DEFAULT_TZ
    try:
        if "-" in s[:9] and len(s) >= 17 and s[8] == "-":
            dt = datetime.strptime(s[:17], "%Y%m%d-%H:%M:%S")
        elif len(s) == 8:
            dt = datetime.strptime(s, "%Y%m%d")
        else:
            parts = s.split()
            if len(parts) < 2:
                raise FieldError(f"bad time {s[:40]!r}")
            dt = datetime.strptime(parts[0] + " " + parts[1], "%Y%m%d %H:%M:%S")
            if len(parts) >= 3:
                name = parts[2]
                zone = _TZ_CACHE.get(name)
                if zone is None:
                    try:
                        zone = ZoneInfo(name)
                    except (ZoneInfoNotFoundError, ValueError) as e:
                        raise FieldError(f"unknown time zone {name[:40]!r}") from e
                    _TZ_CACHE[name] = zone
                return dt.replace(tzinfo=zone).astimezone(UTC)
    except ValueError as e:
        raise FieldError(f"bad time {s[:40]!r}") from e
    return dt.replace(tzinfo=tz)


# --------------------------------------------------------------------------------------------------
# Decoders (cursor positioned after the message id)


def _start_api(cur: _Cursor, v: int, cid: int) -> StartApi:
    cur.skip_version()
    client_id = cur.int_()
    caps = cur.s() if cur.rest() else ""
    return StartApi(client_id, caps)


def _req_mkt_data(cur: _Cursor, v: int, cid: int) -> ReqMktData:
    cur.skip_version()
    req_id = cur.int_()
    c = _read_contract(cur)
    if c.secType == "BAG":
        _read_short_legs(cur, c)
    _read_delta_neutral(cur, c)
    ticks = cur.s()
    snapshot = cur.bool_()
    regulatory = cur.bool_()
    return ReqMktData(req_id, c, ticks, snapshot, regulatory)


def _req_id_only(cls: Callable[[int], Request]) -> Callable[[_Cursor, int, int], Request]:
    def dec(cur: _Cursor, v: int, cid: int) -> Request:
        cur.skip_version()
        return cls(cur.int_())

    return dec


def _req_id_no_version(
    cls: Callable[[int], Request],
) -> Callable[[_Cursor, int, int], Request]:
    def dec(cur: _Cursor, v: int, cid: int) -> Request:
        return cls(cur.int_())

    return dec


def _no_fields(cls: Callable[[], Request]) -> Callable[[_Cursor, int, int], Request]:
    instance = cls()

    def dec(cur: _Cursor, v: int, cid: int) -> Request:
        return instance

    return dec


def _cancel_order(cur: _Cursor, v: int, cid: int) -> CancelOrder:
    cur.skip_version()
    order_id = cur.int_()
    manual = cur.s() if v >= 169 and cur.rest() else ""
    return CancelOrder(order_id, manual)


def _req_auto_open_orders(cur: _Cursor, v: int, cid: int) -> ReqAutoOpenOrders:
    cur.skip_version()
    return ReqAutoOpenOrders(cur.bool_())


def _req_account_updates(cur: _Cursor, v: int, cid: int) -> ReqAccountUpdates:
    cur.skip_version()
    subscribe = cur.bool_()
    account = cur.s() if cur.rest() else ""
    return ReqAccountUpdates(subscribe, account)


def _req_executions(cur: _Cursor, v: int, cid: int) -> ReqExecutions:
    cur.skip_version()
    req_id = cur.int_()
    f = ExecutionFilter()
    f.clientId = cur.int_()
    f.acctCode = cur.s()
    f.time = cur.s()
    f.symbol = cur.s()
    f.secType = cur.s()
    f.exchange = cur.s()
    f.side = cur.s()
    try:
        since = parse_ib_time(f.time)
    except FieldError as e:
        raise _Invalid(ERR_VALIDATING_REQUEST, f"execution filter time: {e}") from e
    return ReqExecutions(req_id, f, since)


def _req_ids(cur: _Cursor, v: int, cid: int) -> ReqIds:
    cur.skip_version()
    return ReqIds(cur.int_())


def _req_contract_details(cur: _Cursor, v: int, cid: int) -> ReqContractDetails:
    cur.skip_version()
    req_id = cur.int_()
    c = _read_contract(cur)
    include_expired = cur.bool_()
    c.includeExpired = include_expired
    c.secIdType = cur.s()
    c.secId = cur.s()
    issuer = cur.s() if v >= 176 and cur.rest() else ""
    return ReqContractDetails(req_id, c, include_expired, c.secIdType, c.secId, issuer)


def _req_mkt_depth(cur: _Cursor, v: int, cid: int) -> ReqMktDepth:
    cur.skip_version()
    req_id = cur.int_()
    c = _read_contract(cur)
    rows = cur.int_()
    smart = cur.bool_()
    return ReqMktDepth(req_id, c, rows, smart)


def _cancel_mkt_depth(cur: _Cursor, v: int, cid: int) -> CancelMktDepth:
    cur.skip_version()
    req_id = cur.int_()
    smart = cur.bool_() if cur.rest() else False
    return CancelMktDepth(req_id, smart)


def _set_log_level(cur: _Cursor, v: int, cid: int) -> SetServerLogLevel:
    cur.skip_version()
    return SetServerLogLevel(cur.int_())


def _req_historical_data(cur: _Cursor, v: int, cid: int) -> ReqHistoricalData:
    req_id = cur.int_()
    c = _read_contract(cur)
    c.includeExpired = cur.bool_()
    end = cur.s()
    bar_size = cur.s()
    duration = cur.s()
    use_rth = cur.bool_()
    what = cur.s()
    fmt = cur.int_(1)
    if c.secType == "BAG":
        _read_short_legs(cur, c)
    keep = cur.bool_()
    return ReqHistoricalData(req_id, c, end, bar_size, duration, use_rth, what, fmt, keep)


def _req_real_time_bars(cur: _Cursor, v: int, cid: int) -> ReqRealTimeBars:
    cur.skip_version()
    req_id = cur.int_()
    c = _read_contract(cur)
    bar_size = cur.int_(5)
    what = cur.s()
    use_rth = cur.bool_()
    return ReqRealTimeBars(req_id, c, bar_size, what, use_rth)


def _req_market_data_type(cur: _Cursor, v: int, cid: int) -> ReqMarketDataType:
    cur.skip_version()
    t = cur.int_()
    if t not in (1, 2, 3, 4):
        raise _Invalid(ERR_VALIDATING_REQUEST, f"market data type {t} is not 1..4")
    return ReqMarketDataType(t)


def _req_account_summary(cur: _Cursor, v: int, cid: int) -> ReqAccountSummary:
    cur.skip_version()
    return ReqAccountSummary(cur.int_(), cur.s(), cur.s())


def _req_positions_multi(cur: _Cursor, v: int, cid: int) -> ReqPositionsMulti:
    cur.skip_version()
    return ReqPositionsMulti(cur.int_(), cur.s(), cur.s())


def _req_account_updates_multi(cur: _Cursor, v: int, cid: int) -> ReqAccountUpdatesMulti:
    cur.skip_version()
    return ReqAccountUpdatesMulti(cur.int_(), cur.s(), cur.s(), cur.bool_())


def _req_sec_def_opt_params(cur: _Cursor, v: int, cid: int) -> ReqSecDefOptParams:
    return ReqSecDefOptParams(cur.int_(), cur.s(), cur.s(), cur.s(), cur.int_())


def _req_pnl(cur: _Cursor, v: int, cid: int) -> ReqPnL:
    return ReqPnL(cur.int_(), cur.s(), cur.s())


def _req_pnl_single(cur: _Cursor, v: int, cid: int) -> ReqPnLSingle:
    return ReqPnLSingle(cur.int_(), cur.s(), cur.s(), cur.int_())


def _req_tick_by_tick(cur: _Cursor, v: int, cid: int) -> ReqTickByTickData:
    req_id = cur.int_()
    c = _read_contract(cur)
    tick_type = cur.s()
    if tick_type not in ("Last", "AllLast", "BidAsk", "MidPoint"):
        raise _Invalid(ERR_VALIDATING_REQUEST, f"tick-by-tick type {tick_type[:20]!r}")
    n = cur.int_() if cur.rest() else 0
    ignore = cur.bool_() if cur.rest() else False
    return ReqTickByTickData(req_id, c, tick_type, n, ignore)


def _req_completed_orders(cur: _Cursor, v: int, cid: int) -> ReqCompletedOrders:
    return ReqCompletedOrders(cur.bool_())


# --------------------------------------------------------------------------------------------------
# placeOrder


def _tag_values(cur: _Cursor, what: str) -> list[TagValue]:
    n = cur.int_()
    if n < 0 or n > 256:
        raise _Invalid(ERR_READING_REQUEST, f"bad {what} count {n}")
    return [TagValue(cur.s(), cur.s()) for _ in range(n)]


def _place_order(cur: _Cursor, v: int, cid: int) -> PlaceOrder:
    o = Order()
    o.orderId = order_id = cur.int_()
    c = _read_contract(cur)
    c.secIdType = cur.s()
    c.secId = cur.s()

    o.action = cur.s()
    qty = cur.dec()
    o.totalQuantity = Decimal(0) if qty is None else qty
    o.orderType = cur.s()
    o.lmtPrice = cur.dec_or_unset()
    o.auxPrice = cur.dec_or_unset()
    o.tif = cur.s()
    o.ocaGroup = cur.s()
    o.account = cur.s()
    o.openClose = cur.s()
    o.origin = cur.int_()
    o.orderRef = cur.s()
    o.transmit = parse_bool(cur.s(), True)
    o.parentId = cur.int_()
    o.blockOrder = cur.bool_()
    o.sweepToFill = cur.bool_()
    o.displaySize = cur.int_()
    o.triggerMethod = cur.int_()
    o.outsideRth = cur.bool_()
    o.hidden = cur.bool_()

    if c.secType == "BAG":
        n = cur.int_()
        if n < 0 or n > 64:
            raise _Invalid(ERR_READING_REQUEST, f"bad combo leg count {n}")
        legs = []
        for _ in range(n):
            leg = ComboLeg()
            leg.conId = cur.int_()
            leg.ratio = cur.int_()
            leg.action = cur.s()
            leg.exchange = cur.s()
            leg.openClose = cur.int_()
            leg.shortSaleSlot = cur.int_()
            leg.designatedLocation = cur.s()
            leg.exemptCode = cur.int_(-1)
            legs.append(leg)
        c.comboLegs = legs
        n = cur.int_()
        if n < 0 or n > 64:
            raise _Invalid(ERR_READING_REQUEST, f"bad order combo leg count {n}")
        order_legs = []
        for _ in range(n):
            ocl = OrderComboLeg()
            ocl.price = cur.dec_or_unset()
            order_legs.append(ocl)
        o.orderComboLegs = order_legs
        params = _tag_values(cur, "smart combo routing param")
        o.smartComboRoutingParams = params or None

    cur.s()  # deprecated sharesAllocation
    o.discretionaryAmt = cur.dec_or_unset()
    o.goodAfterTime = cur.s()
    o.goodTillDate = cur.s()
    o.faGroup = cur.s()
    o.faMethod = cur.s()
    o.faPercentage = cur.s()
    if v < 177:
        o.faProfile = cur.s()
    o.modelCode = cur.s()
    o.shortSaleSlot = cur.int_()
    o.designatedLocation = cur.s()
    o.exemptCode = cur.int_(-1)
    o.ocaType = cur.int_()
    o.rule80A = cur.s()
    o.settlingFirm = cur.s()
    o.allOrNone = cur.bool_()
    o.minQty = cur.int_(UNSET_INTEGER)
    o.percentOffset = cur.dec_or_unset()
    o.eTradeOnly = cur.bool_()
    o.firmQuoteOnly = cur.bool_()
    o.nbboPriceCap = cur.dec_or_unset()
    o.auctionStrategy = cur.int_()
    o.startingPrice = cur.dec_or_unset()
    o.stockRefPrice = cur.dec_or_unset()
    o.delta = cur.dec_or_unset()
    o.stockRangeLower = cur.dec_or_unset()
    o.stockRangeUpper = cur.dec_or_unset()
    o.overridePercentageConstraints = cur.bool_()
    o.volatility = cur.dec_or_unset()
    o.volatilityType = cur.int_(UNSET_INTEGER)
    o.deltaNeutralOrderType = cur.s()
    o.deltaNeutralAuxPrice = cur.dec_or_unset()
    if o.deltaNeutralOrderType:
        o.deltaNeutralConId = cur.int_()
        o.deltaNeutralSettlingFirm = cur.s()
        o.deltaNeutralClearingAccount = cur.s()
        o.deltaNeutralClearingIntent = cur.s()
        o.deltaNeutralOpenClose = cur.s()
        o.deltaNeutralShortSale = cur.bool_()
        o.deltaNeutralShortSaleSlot = cur.int_()
        o.deltaNeutralDesignatedLocation = cur.s()
    o.continuousUpdate = cur.bool_()
    o.referencePriceType = cur.int_(UNSET_INTEGER)
    o.trailStopPrice = cur.dec_or_unset()
    o.trailingPercent = cur.dec_or_unset()
    o.scaleInitLevelSize = cur.int_(UNSET_INTEGER)
    o.scaleSubsLevelSize = cur.int_(UNSET_INTEGER)
    o.scalePriceIncrement = cur.dec_or_unset()
    inc = o.scalePriceIncrement
    if isinstance(inc, Decimal) and inc > 0:
        o.scalePriceAdjustValue = cur.dec_or_unset()
        o.scalePriceAdjustInterval = cur.int_(UNSET_INTEGER)
        o.scaleProfitOffset = cur.dec_or_unset()
        o.scaleAutoReset = cur.bool_()
        o.scaleInitPosition = cur.int_(UNSET_INTEGER)
        o.scaleInitFillQty = cur.int_(UNSET_INTEGER)
        o.scaleRandomPercent = cur.bool_()
    o.scaleTable = cur.s()
    o.activeStartTime = cur.s()
    o.activeStopTime = cur.s()
    o.hedgeType = cur.s()
    if o.hedgeType:
        o.hedgeParam = cur.s()
    o.optOutSmartRouting = cur.bool_()
    o.clearingAccount = cur.s()
    o.clearingIntent = cur.s()
    o.notHeld = cur.bool_()
    _read_delta_neutral(cur, c)
    o.algoStrategy = cur.s()
    if o.algoStrategy:
        o.algoParams = _tag_values(cur, "algo param")
    o.algoId = cur.s()
    o.whatIf = cur.bool_()
    o.orderMiscOptions = cur.s()
    o.solicited = cur.bool_()
    o.randomizeSize = cur.bool_()
    o.randomizePrice = cur.bool_()
    if o.orderType in ("PEG BENCH", "PEGBENCH"):
        o.referenceContractId = cur.int_()
        o.isPeggedChangeAmountDecrease = cur.bool_()
        o.peggedChangeAmount = cur.dec_or_unset()
        o.referenceChangeAmount = cur.dec_or_unset()
        o.referenceExchangeId = cur.s()
    n_conditions = cur.int_()
    if n_conditions:
        raise _Invalid(ERR_VALIDATING_REQUEST, "order conditions are not supported")
    o.adjustedOrderType = cur.s()
    o.triggerPrice = cur.dec_or_unset()
    o.lmtPriceOffset = cur.dec_or_unset()
    o.adjustedStopPrice = cur.dec_or_unset()
    o.adjustedStopLimitPrice = cur.dec_or_unset()
    o.adjustedTrailingAmount = cur.dec_or_unset()
    o.adjustableTrailingUnit = cur.int_()
    o.extOperator = cur.s()
    o.softDollarTier = SoftDollarTier(cur.s(), cur.s(), "")
    o.cashQty = cur.dec_or_unset()
    o.mifid2DecisionMaker = cur.s()
    o.mifid2DecisionAlgo = cur.s()
    o.mifid2ExecutionTrader = cur.s()
    o.mifid2ExecutionAlgo = cur.s()
    o.dontUseAutoPriceForHedge = cur.bool_()
    o.isOmsContainer = cur.bool_()
    o.discretionaryUpToLimitPrice = cur.bool_()
    pm = cur.s()
    o.usePriceMgmtAlgo = None if pm == "" or pm == str(UNSET_INTEGER) else parse_bool(pm)
    # fields newer than ibapi 9.81's Order: set on the container so openOrder can echo them
    o.duration = cur.int_(UNSET_INTEGER) if v >= 158 else UNSET_INTEGER
    o.postToAts = cur.int_(UNSET_INTEGER) if v >= 160 else UNSET_INTEGER
    if v >= 162:
        o.autoCancelParent = cur.bool_()
    o.advancedErrorOverride = cur.s() if v >= 166 else ""
    o.manualOrderTime = cur.s() if v >= 169 else ""
    o.minTradeQty = UNSET_INTEGER
    o.minCompeteSize = UNSET_INTEGER
    o.competeAgainstBestOffset = UNSET_DOUBLE
    o.midOffsetAtWhole = UNSET_DOUBLE
    o.midOffsetAtHalf = UNSET_DOUBLE
    if v >= 170:
        if c.exchange == "IBKRATS":
            o.minTradeQty = cur.int_(UNSET_INTEGER)
        if o.orderType in ("PEG BEST", "PEGBEST"):
            o.minCompeteSize = cur.int_(UNSET_INTEGER)
            o.competeAgainstBestOffset = cur.dec_or_unset()
            off = o.competeAgainstBestOffset
            if isinstance(off, Decimal) and off.is_infinite():
                o.midOffsetAtWhole = cur.dec_or_unset()
                o.midOffsetAtHalf = cur.dec_or_unset()
        elif o.orderType in ("PEG MID", "PEGMID"):
            o.midOffsetAtWhole = cur.dec_or_unset()
            o.midOffsetAtHalf = cur.dec_or_unset()
    return PlaceOrder(order_id, c, o, normalize_order(cid, order_id, c, o))


def _opt(v: object) -> Decimal | None:
    return v if isinstance(v, Decimal) else None


def normalize_order(client_id: int, order_id: int, c: Contract, o: Order) -> OrderRequest:
    """The engine's view of a decoded placeOrder; raises `_Invalid` for values no venue takes."""
    sec_type = _SEC_TYPES.get(c.secType.upper())
    if sec_type is None:
        raise _Invalid(ERR_NO_SECURITY_DEFINITION, f"secType {c.secType[:10]!r} is not traded")
    action = o.action.upper()
    if action not in _ACTIONS:
        raise _Invalid(ERR_VALIDATING_REQUEST, f"invalid action {o.action[:10]!r}")
    order_type = " ".join(o.orderType.upper().split())
    if not order_type:
        raise _Invalid(ERR_VALIDATING_REQUEST, "missing order type")
    legs: tuple[ComboLegSpec, ...] = ()
    if sec_type is SecType.BAG:
        if not c.comboLegs:
            raise _Invalid(ERR_VALIDATING_REQUEST, "BAG order without combo legs")
        out = []
        for leg in c.comboLegs:
            leg_action = leg.action.upper()
            if leg.ratio <= 0 or leg_action not in _ACTIONS or leg.conId <= 0:
                raise _Invalid(
                    ERR_VALIDATING_REQUEST,
                    f"bad combo leg conId={leg.conId} ratio={leg.ratio} action={leg.action[:8]!r}",
                )
            out.append(ComboLegSpec(leg.conId, leg.ratio, leg_action, leg.exchange or "SMART"))
        legs = tuple(out)
    try:
        good_till = parse_ib_time(o.goodTillDate) if o.goodTillDate else None
    except FieldError as e:
        raise _Invalid(ERR_VALIDATING_REQUEST, f"goodTillDate: {e}") from e
    return OrderRequest(
        client_id=client_id,
        order_id=order_id,
        account=o.account,
        con_id=0 if sec_type is SecType.BAG else c.conId,
        symbol=c.symbol,
        sec_type=sec_type,
        action=action,
        total_qty=o.totalQuantity,
        order_type=order_type,
        tif=(o.tif or "DAY").upper(),
        route=c.exchange or "SMART",
        lmt_price=_opt(o.lmtPrice),
        aux_price=_opt(o.auxPrice),
        trailing_percent=_opt(o.trailingPercent),
        trail_stop_price=_opt(o.trailStopPrice),
        good_till=good_till,
        outside_rth=bool(o.outsideRth),
        oca_group=o.ocaGroup,
        oca_type=o.ocaType,
        parent_id=o.parentId,
        transmit=bool(o.transmit),
        order_ref=o.orderRef,
        combo_legs=legs,
        raw_contract=c,
        raw_order=o,
    )


# --------------------------------------------------------------------------------------------------
# Dispatch

_DECODERS: Final[dict[int, Callable[[_Cursor, int, int], Request]]] = {
    In.START_API: _start_api,
    In.REQ_MKT_DATA: _req_mkt_data,
    In.CANCEL_MKT_DATA: _req_id_only(CancelMktData),
    In.PLACE_ORDER: _place_order,
    In.CANCEL_ORDER: _cancel_order,
    In.REQ_OPEN_ORDERS: _no_fields(ReqOpenOrders),
    In.REQ_ACCT_DATA: _req_account_updates,
    In.REQ_EXECUTIONS: _req_executions,
    In.REQ_IDS: _req_ids,
    In.REQ_CONTRACT_DATA: _req_contract_details,
    In.REQ_MKT_DEPTH: _req_mkt_depth,
    In.CANCEL_MKT_DEPTH: _cancel_mkt_depth,
    In.SET_SERVER_LOGLEVEL: _set_log_level,
    In.REQ_AUTO_OPEN_ORDERS: _req_auto_open_orders,
    In.REQ_ALL_OPEN_ORDERS: _no_fields(ReqAllOpenOrders),
    In.REQ_MANAGED_ACCTS: _no_fields(ReqManagedAccts),
    In.REQ_HISTORICAL_DATA: _req_historical_data,
    In.CANCEL_HISTORICAL_DATA: _req_id_only(CancelHistoricalData),
    In.REQ_CURRENT_TIME: _no_fields(ReqCurrentTime),
    In.REQ_REAL_TIME_BARS: _req_real_time_bars,
    In.CANCEL_REAL_TIME_BARS: _req_id_only(CancelRealTimeBars),
    In.REQ_GLOBAL_CANCEL: _no_fields(ReqGlobalCancel),
    In.REQ_MARKET_DATA_TYPE: _req_market_data_type,
    In.REQ_POSITIONS: _no_fields(ReqPositions),
    In.CANCEL_POSITIONS: _no_fields(CancelPositions),
    In.REQ_ACCOUNT_SUMMARY: _req_account_summary,
    In.CANCEL_ACCOUNT_SUMMARY: _req_id_only(CancelAccountSummary),
    In.REQ_POSITIONS_MULTI: _req_positions_multi,
    In.CANCEL_POSITIONS_MULTI: _req_id_only(CancelPositionsMulti),
    In.REQ_ACCOUNT_UPDATES_MULTI: _req_account_updates_multi,
    In.CANCEL_ACCOUNT_UPDATES_MULTI: _req_id_only(CancelAccountUpdatesMulti),
    In.REQ_SEC_DEF_OPT_PARAMS: _req_sec_def_opt_params,
    In.REQ_PNL: _req_pnl,
    In.CANCEL_PNL: _req_id_no_version(CancelPnL),
    In.REQ_PNL_SINGLE: _req_pnl_single,
    In.CANCEL_PNL_SINGLE: _req_id_no_version(CancelPnLSingle),
    In.REQ_TICK_BY_TICK_DATA: _req_tick_by_tick,
    In.CANCEL_TICK_BY_TICK_DATA: _req_id_no_version(CancelTickByTickData),
    In.REQ_COMPLETED_ORDERS: _req_completed_orders,
}

#: where the request / order id sits in each request's fields (for error replies)
_REQ_ID_POS: Final = {
    In.REQ_MKT_DATA: 2,
    In.CANCEL_MKT_DATA: 2,
    In.PLACE_ORDER: 1,
    In.CANCEL_ORDER: 2,
    In.REQ_EXECUTIONS: 2,
    In.REQ_CONTRACT_DATA: 2,
    In.REQ_MKT_DEPTH: 2,
    In.CANCEL_MKT_DEPTH: 2,
    In.REQ_HISTORICAL_DATA: 1,
    In.CANCEL_HISTORICAL_DATA: 2,
    In.REQ_REAL_TIME_BARS: 2,
    In.CANCEL_REAL_TIME_BARS: 2,
    In.REQ_ACCOUNT_SUMMARY: 2,
    In.CANCEL_ACCOUNT_SUMMARY: 2,
    In.REQ_POSITIONS_MULTI: 2,
    In.CANCEL_POSITIONS_MULTI: 2,
    In.REQ_ACCOUNT_UPDATES_MULTI: 2,
    In.CANCEL_ACCOUNT_UPDATES_MULTI: 2,
    In.REQ_SEC_DEF_OPT_PARAMS: 1,
    In.REQ_PNL: 1,
    In.CANCEL_PNL: 1,
    In.REQ_PNL_SINGLE: 1,
    In.CANCEL_PNL_SINGLE: 1,
    In.REQ_TICK_BY_TICK_DATA: 1,
    In.CANCEL_TICK_BY_TICK_DATA: 1,
    # requests IB defines that the sim does not serve, so their errors carry the right id
    In.REQ_SCANNER_SUBSCRIPTION: 1,
    In.CANCEL_SCANNER_SUBSCRIPTION: 2,
    In.REQ_FUNDAMENTAL_DATA: 2,
    In.CANCEL_FUNDAMENTAL_DATA: 2,
    In.REQ_CALC_IMPLIED_VOLAT: 2,
    In.REQ_CALC_OPTION_PRICE: 2,
    In.REQ_HEAD_TIMESTAMP: 1,
    In.REQ_HISTOGRAM_DATA: 1,
    In.REQ_HISTORICAL_TICKS: 1,
    In.REQ_MATCHING_SYMBOLS: 1,
    In.REQ_NEWS_ARTICLE: 1,
    In.REQ_HISTORICAL_NEWS: 1,
    In.REQ_SMART_COMPONENTS: 1,
    In.REQ_SOFT_DOLLAR_TIERS: 1,
}


def _req_id_of(msg_id: int, fields: list[str]) -> int:
    pos = _REQ_ID_POS.get(msg_id)
    if pos is None or pos >= len(fields):
        return -1
    try:
        return int(fields[pos])
    except ValueError:
        return -1


def decode(fields: list[str], server_version: int, client_id: int = 0) -> Request:
    """Decode one request. Never raises: errors come back as UnknownMessage/Unsupported/BadRequest.

    `client_id` is the connection's API client id (from startApi); it goes into the `OrderRequest`
    of a `PlaceOrder`.
    """
    if not fields:
        return UnknownMessage("", ())
    raw_id = fields[0]
    try:
        msg_id = int(raw_id)
    except ValueError:
        return UnknownMessage(raw_id, tuple(fields))
    dec = _DECODERS.get(msg_id)
    if dec is None:
        if msg_id in KNOWN_REQUEST_IDS:
            return Unsupported(msg_id, _req_id_of(msg_id, fields))
        return UnknownMessage(raw_id, tuple(fields))
    cur = _Cursor(fields, 1)
    try:
        return dec(cur, server_version, client_id)
    except FieldError as e:
        return BadRequest(msg_id, _req_id_of(msg_id, fields), ERR_READING_REQUEST, str(e))
    except _Invalid as e:
        return BadRequest(msg_id, _req_id_of(msg_id, fields), e.code, e.reason)
    except (ValueError, TypeError, ArithmeticError) as e:  # defensive: never let a request crash
        return BadRequest(msg_id, _req_id_of(msg_id, fields), ERR_READING_REQUEST, repr(e)[:200])
