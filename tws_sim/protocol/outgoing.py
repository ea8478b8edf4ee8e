"""Encoders for every message the simulator sends, per negotiated server version (157..178).

Each `encode_x(..., server_version)` returns the message's fields as a list of str (`framing.frame`
turns them into bytes). Layout facts, as the public clients decode them:

- tickPrice, tickSize, tickString, tickGeneric, error, commissionReport, position and most *End
  messages still carry a per-message version field; openOrder, orderStatus, execDetails,
  tickOptionComputation, pnl, secDefOptParams, completedOrder(+End) do not.
- ibapi 9.81 (v157) decodes several sizes with `int()` (tickPrice/tickSize sizes, depth sizes,
  tick-by-tick sizes, bar volumes, pnlSingle position), so below v163 (fractional sizes) those
  go out as integers.
- openOrder/completedOrder: faProfile only below v177; duration from v159, postToAts from v160,
  autoCancelParent from v162, the peg-best/peg-mid block from v170. contractData: a version field
  and mdSizeMultiplier below v164, size rules from v164. execDetails: pendingPriceRevision from
  v178. error: advancedOrderRejectJson from v166.
- ibapi 10.x clients (e.g. nautilus-ibapi 10.46) are held at v178 by negotiation and decode these
  same layouts (sizes as Decimal, error with errorTime 0, commissionAndFeesReport). Their `Order`
  lacks eTradeOnly, firmQuoteOnly, nbboPriceCap and faProfile, which are still on the wire at
  these versions, so the openOrder echo reads those softly.

Hot encoders (tickPrice, tickSize, orderStatus) avoid per-call lookups: prefixes are constants and
the Decimal formatting is inlined.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from ibapi.contract import ComboLeg, Contract
from ibapi.order import Order

from tws_sim.protocol.fields import (
    UNSET_DOUBLE,
    UNSET_DOUBLE_STR,
    UNSET_INTEGER,
    fmt_any,
    fmt_bool,
    fmt_dec,
    fmt_float,
    fmt_int_size,
    fmt_size,
)
from tws_sim.types import (
    Bar,
    CommissionReport,
    Execution,
    Greeks,
    Instrument,
    OrderRequest,
    OrderSnapshot,
    SecType,
)

#: first server version whose clients decode sizes as decimals (below it: integers)
FRACTIONAL_SIZE_VERSION: Final = 163
#: IB's "not computed" markers in tickOptionComputation
NOT_COMPUTED_PRICE: Final = "-1"
NOT_COMPUTED_GREEK: Final = "-2"

# --------------------------------------------------------------------------------------------------
# helpers


def _size(d: Decimal, v: int) -> str:
    if v < FRACTIONAL_SIZE_VERSION:
        return fmt_int_size(d)
    return fmt_size(d)


def _price(d: Decimal) -> str:
    s = str(d)
    return fmt_dec(d) if "E" in s else s


def _opt_price(d: Decimal | None) -> str:
    return UNSET_DOUBLE_STR if d is None else _price(d)


def _expiry(inst: Instrument) -> str:
    return inst.expiry.strftime("%Y%m%d") if inst.expiry is not None else ""


def _strike(inst: Instrument) -> str:
    return _price(inst.strike) if inst.strike is not None else "0"


def _right(inst: Instrument) -> str:
    return inst.right.value if inst.right is not None else ""


def _multiplier(inst: Instrument) -> str:
    return str(inst.multiplier) if inst.sec_type is SecType.OPT else ""


def _ascii7(text: str) -> str:
    """Text for fields clients read with `unicode-escape` (longName from v153): escaped ASCII."""
    if text.isascii() and "\\" not in text:
        return text
    return text.encode("unicode-escape").decode("ascii")


def ib_time(ts: datetime) -> str:
    """`yyyymmdd hh:mm:ss UTC` — the time format execDetails/bars carry (zone spelled out)."""
    return ts.astimezone(UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"


def _epoch(ts: datetime) -> str:
    return str(int(ts.timestamp()))


def contract_from_instrument(inst: Instrument, exchange: str | None = None) -> Contract:
    """An ibapi Contract describing one of the venue's instruments (for openOrder echoes)."""
    c = Contract()
    c.conId = inst.con_id
    c.symbol = inst.symbol
    c.secType = inst.sec_type.value
    c.lastTradeDateOrContractMonth = _expiry(inst)
    c.strike = inst.strike if inst.strike is not None else Decimal(0)
    c.right = _right(inst)
    c.multiplier = _multiplier(inst)
    c.exchange = exchange or inst.exchange
    c.primaryExchange = inst.primary_exchange
    c.currency = inst.currency
    c.localSymbol = inst.local_symbol
    c.tradingClass = inst.trading_class
    return c


def containers_from_request(req: OrderRequest) -> tuple[Contract, Order]:
    """ibapi Contract/Order built from a normalized request (when the wire objects are gone,
    e.g. orders restored from the venue's state directory)."""
    c = Contract()
    c.conId = req.con_id
    c.symbol = req.symbol
    c.secType = req.sec_type.value
    c.exchange = req.route
    c.currency = "USD"
    if req.combo_legs:
        legs = []
        for spec in req.combo_legs:
            leg = ComboLeg()
            leg.conId = spec.con_id
            leg.ratio = spec.ratio
            leg.action = spec.action
            leg.exchange = spec.exchange
            legs.append(leg)
        c.comboLegs = legs
    o = Order()
    o.orderId = req.order_id
    o.clientId = req.client_id
    o.account = req.account
    o.action = req.action
    o.totalQuantity = req.total_qty
    o.orderType = req.order_type
    o.tif = req.tif
    o.lmtPrice = UNSET_DOUBLE if req.lmt_price is None else req.lmt_price
    o.auxPrice = UNSET_DOUBLE if req.aux_price is None else req.aux_price
    o.trailingPercent = UNSET_DOUBLE if req.trailing_percent is None else req.trailing_percent
    o.trailStopPrice = UNSET_DOUBLE if req.trail_stop_price is None else req.trail_stop_price
    if req.good_till is not None:
        o.goodTillDate = req.good_till.astimezone(UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"
    o.outsideRth = req.outside_rth
    o.ocaGroup = req.oca_group
    o.ocaType = req.oca_type
    o.parentId = req.parent_id
    o.transmit = req.transmit
    o.orderRef = req.order_ref
    return c, o


# --------------------------------------------------------------------------------------------------
# connection, time, errors


def encode_next_valid_id(order_id: int, server_version: int) -> list[str]:
    return ["9", "1", str(order_id)]


def encode_managed_accounts(accounts: Sequence[str], server_version: int) -> list[str]:
    return ["15", "1", ",".join(accounts)]


def encode_current_time(ts: datetime | int, server_version: int) -> list[str]:
    secs = ts if isinstance(ts, int) else int(ts.timestamp())
    return ["49", "1", str(secs)]


def encode_error(
    req_id: int, code: int, message: str, server_version: int, advanced_json: str = ""
) -> list[str]:
    """error (4): reqId is the order id for order errors and -1 for notices (farm status …)."""
    fields = ["4", "2", str(req_id), str(code), message.replace("\0", " ")]
    if server_version >= 166:
        fields.append(advanced_json)
    return fields


def encode_market_data_type(req_id: int, market_data_type: int, server_version: int) -> list[str]:
    return ["58", "1", str(req_id), str(market_data_type)]


def encode_tick_req_params(
    req_id: int,
    min_tick: Decimal,
    bbo_exchange: str,
    snapshot_permissions: int,
    server_version: int,
) -> list[str]:
    return ["81", str(req_id), _price(min_tick), bbo_exchange, str(snapshot_permissions)]


# --------------------------------------------------------------------------------------------------
# market data (hot)


def encode_tick_price(
    req_id: int,
    tick_type: int,
    price: Decimal,
    size: Decimal | None,
    server_version: int,
    attrib_mask: int = 0,
) -> list[str]:
    """tickPrice (1): version 6; size (0 when none) and the attribute mask follow the price.

    Mask bits: 1 canAutoExecute, 2 pastLimit, 4 preOpen.
    """
    s = str(price)
    if "E" in s:
        s = fmt_dec(price)
    if size is None:
        sz = "0"
    elif server_version < 163:
        sz = str(int(size))
    else:
        sz = fmt_size(size)
    return ["1", "6", str(req_id), str(tick_type), s, sz, str(attrib_mask)]


def encode_tick_size(req_id: int, tick_type: int, size: Decimal, server_version: int) -> list[str]:
    sz = str(int(size)) if server_version < 163 else fmt_size(size)
    return ["2", "6", str(req_id), str(tick_type), sz]


def encode_tick_string(req_id: int, tick_type: int, value: str, server_version: int) -> list[str]:
    return ["46", "6", str(req_id), str(tick_type), value]


def encode_tick_generic(
    req_id: int, tick_type: int, value: Decimal | int | float, server_version: int
) -> list[str]:
    """tickGeneric (45), e.g. tick 49 "halted": 0 trading, 1 halted, 2 volatility halt."""
    return ["45", "6", str(req_id), str(tick_type), fmt_any(value)]


def encode_tick_snapshot_end(req_id: int, server_version: int) -> list[str]:
    return ["57", "1", str(req_id)]


def encode_tick_option_computation(
    req_id: int,
    tick_type: int,
    greeks: Greeks | None,
    server_version: int,
    tick_attrib: int = 0,
) -> list[str]:
    """tickOptionComputation (21): no version field from v156; tickAttrib (0 return-based,
    1 price-based) then iv, delta, optPrice, pvDividend, gamma, vega, theta, undPrice.
    `None` greeks send IB's "not computed" markers (-1 / -2)."""
    head = ["21", str(req_id), str(tick_type), str(tick_attrib)]
    if greeks is None:
        return [
            *head,
            NOT_COMPUTED_PRICE,
            NOT_COMPUTED_GREEK,
            NOT_COMPUTED_PRICE,
            NOT_COMPUTED_PRICE,
            NOT_COMPUTED_GREEK,
            NOT_COMPUTED_GREEK,
            NOT_COMPUTED_GREEK,
            NOT_COMPUTED_PRICE,
        ]
    g = greeks
    return [
        *head,
        fmt_float(g.implied_vol),
        fmt_float(g.delta),
        fmt_float(g.opt_price),
        fmt_float(g.pv_dividend),
        fmt_float(g.gamma),
        fmt_float(g.vega),
        fmt_float(g.theta),
        fmt_float(g.und_price),
    ]


def encode_tick_by_tick_last(
    req_id: int,
    tick_type: int,
    ts: datetime,
    price: Decimal,
    size: Decimal,
    exchange: str,
    server_version: int,
    mask: int = 0,
    special_conditions: str = "",
) -> list[str]:
    """tickByTick (99) Last (1) / AllLast (2): mask bit 1 pastLimit, 2 unreported."""
    return [
        "99",
        str(req_id),
        str(tick_type),
        _epoch(ts),
        _price(price),
        _size(size, server_version),
        str(mask),
        exchange,
        special_conditions,
    ]


def encode_tick_by_tick_bid_ask(
    req_id: int,
    ts: datetime,
    bid: Decimal,
    ask: Decimal,
    bid_size: Decimal,
    ask_size: Decimal,
    server_version: int,
    mask: int = 0,
) -> list[str]:
    """tickByTick (99) BidAsk (3): mask bit 1 bidPastLow, 2 askPastHigh."""
    return [
        "99",
        str(req_id),
        "3",
        _epoch(ts),
        _price(bid),
        _price(ask),
        _size(bid_size, server_version),
        _size(ask_size, server_version),
        str(mask),
    ]


def encode_tick_by_tick_mid_point(
    req_id: int, ts: datetime, mid: Decimal, server_version: int
) -> list[str]:
    return ["99", str(req_id), "4", _epoch(ts), _price(mid)]


def encode_update_mkt_depth(
    req_id: int,
    position: int,
    operation: int,
    side: int,
    price: Decimal,
    size: Decimal,
    server_version: int,
) -> list[str]:
    """updateMktDepth (12): operation 0 insert, 1 update, 2 delete; side 0 ask, 1 bid."""
    return [
        "12",
        "1",
        str(req_id),
        str(position),
        str(operation),
        str(side),
        _price(price),
        _size(size, server_version),
    ]


def encode_update_mkt_depth_l2(
    req_id: int,
    position: int,
    market_maker: str,
    operation: int,
    side: int,
    price: Decimal,
    size: Decimal,
    is_smart_depth: bool,
    server_version: int,
) -> list[str]:
    """updateMktDepthL2 (13): like 12 plus the market maker; isSmartDepth from v146."""
    return [
        "13",
        "1",
        str(req_id),
        str(position),
        market_maker,
        str(operation),
        str(side),
        _price(price),
        _size(size, server_version),
        fmt_bool(is_smart_depth),
    ]


def encode_realtime_bar(req_id: int, bar: Bar, server_version: int) -> list[str]:
    """realtimeBar (50), version 3: bar start as epoch seconds, OHLC, volume, WAP, count."""
    return [
        "50",
        "3",
        str(req_id),
        _epoch(bar.time),
        _price(bar.open),
        _price(bar.high),
        _price(bar.low),
        _price(bar.close),
        _size(bar.volume, server_version),
        _price(bar.wap),
        str(bar.count),
    ]


def bar_date(ts: datetime, format_date: int, daily: bool) -> str:
    """A bar's date field: epoch seconds for formatDate 2, `yyyymmdd` for daily bars, else
    `yyyymmdd hh:mm:ss UTC`."""
    if format_date == 2:
        return _epoch(ts)
    if daily:
        return ts.astimezone(UTC).strftime("%Y%m%d")
    return ib_time(ts)


def encode_historical_data(
    req_id: int,
    start: datetime,
    end: datetime,
    bars: Sequence[Bar],
    server_version: int,
    format_date: int = 1,
    daily: bool = False,
) -> list[str]:
    """historicalData (17): no version field from v124; then n × (date, OHLC, volume, WAP,
    count). The client emits historicalDataEnd after the last bar."""
    fields = [
        "17",
        str(req_id),
        bar_date(start, format_date, daily),
        bar_date(end, format_date, daily),
        str(len(bars)),
    ]
    for b in bars:
        fields += [
            bar_date(b.time, format_date, daily),
            _price(b.open),
            _price(b.high),
            _price(b.low),
            _price(b.close),
            _size(b.volume, server_version),
            _price(b.wap),
            str(b.count),
        ]
    return fields


def encode_historical_data_update(
    req_id: int, bar: Bar, server_version: int, format_date: int = 1, daily: bool = False
) -> list[str]:
    """historicalDataUpdate (90) for keepUpToDate: barCount, date, open, close, high, low, WAP,
    volume (IB's order, not OHLC)."""
    return [
        "90",
        str(req_id),
        str(bar.count),
        bar_date(bar.time, format_date, daily),
        _price(bar.open),
        _price(bar.close),
        _price(bar.high),
        _price(bar.low),
        _price(bar.wap),
        _size(bar.volume, server_version),
    ]


# --------------------------------------------------------------------------------------------------
# contracts


STOCK_ORDER_TYPES: Final = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,COND,CONDORDER,DAY,DEACT,DEACTDIS,"
    "DEACTEOD,GAT,GTC,GTD,GTT,HID,IOC,LIT,LMT,LOC,MIDPX,MIT,MKT,MOC,MTL,NGCOMB,NONALGO,OCA,OPG,"
    "PEGMID,REL,SCALE,SNAPMID,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF"
)
OPTION_ORDER_TYPES: Final = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,BASKET,COND,CONDORDER,DAY,DEACT,DEACTDIS,DEACTEOD,"
    "FOK,GAT,GTC,GTD,GTT,IOC,LMT,MKT,NGCOMB,NONALGO,OCA,OPG,PEGMID,REL,SCALE,SNAPMID,STP,STPLMT,"
    "TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF"
)


def encode_contract_data(
    req_id: int,
    inst: Instrument,
    server_version: int,
    *,
    exchange: str | None = None,
    trading_hours: str = "",
    liquid_hours: str = "",
    time_zone_id: str = "US/Eastern",
    market_rule_ids: str = "26",
    order_types: str | None = None,
) -> list[str]:
    """contractData (10) for one instrument. Below v164: version 8 and mdSizeMultiplier; v163
    adds suggestedSizeIncrement alone; from v164 minSize, sizeIncrement, suggestedSizeIncrement."""
    v = server_version
    is_opt = inst.sec_type is SecType.OPT
    head = ["10"]
    if v < 164:
        head.append("8")
    fields = [
        *head,
        str(req_id),
        inst.symbol,
        inst.sec_type.value,
        _expiry(inst),
        _strike(inst),
        _right(inst),
        exchange or inst.exchange,
        inst.currency,
        inst.local_symbol,
        inst.trading_class,  # marketName
        inst.trading_class,
        str(inst.con_id),
        _price(inst.min_tick),
    ]
    if v < 164:
        fields.append("1")  # mdSizeMultiplier
    und_con_id = inst.underlying_con_id or 0
    if order_types is None:
        order_types = OPTION_ORDER_TYPES if is_opt else STOCK_ORDER_TYPES
    fields += [
        _multiplier(inst),
        order_types,
        ",".join(inst.valid_exchanges),
        "1",  # priceMagnifier
        str(und_con_id),
        _ascii7(inst.long_name),
        inst.primary_exchange,
        inst.expiry.strftime("%Y%m") if inst.expiry is not None else "",  # contractMonth
        inst.industry,
        inst.category,
        "",  # subcategory
        time_zone_id,
        trading_hours,
        liquid_hours,
        "",  # evRule
        "",  # evMultiplier
        "0",  # secIdList count
        "1" if not is_opt else "2",  # aggGroup
        inst.symbol if is_opt else "",  # underSymbol
        "STK" if is_opt else "",  # underSecType
        market_rule_ids,
        _expiry(inst),  # realExpirationDate
        "" if is_opt else "COMMON",  # stockType
    ]
    if v == 163:
        fields.append("1")
    elif v >= 164:
        fields += ["1", "1", "1"]  # minSize, sizeIncrement, suggestedSizeIncrement
    return fields


def encode_contract_data_end(req_id: int, server_version: int) -> list[str]:
    return ["52", "1", str(req_id)]


def encode_sec_def_opt_params(
    req_id: int,
    exchange: str,
    underlying_con_id: int,
    trading_class: str,
    multiplier: int | str,
    expirations: Iterable[str],
    strikes: Iterable[Decimal],
    server_version: int,
) -> list[str]:
    """securityDefinitionOptionParameter (75), no version field."""
    exps = list(expirations)
    sks = [_price(s) for s in strikes]
    return [
        "75",
        str(req_id),
        exchange,
        str(underlying_con_id),
        trading_class,
        str(multiplier),
        str(len(exps)),
        *exps,
        str(len(sks)),
        *sks,
    ]


def encode_sec_def_opt_params_end(req_id: int, server_version: int) -> list[str]:
    return ["76", str(req_id)]


# --------------------------------------------------------------------------------------------------
# orders


def encode_order_status(
    snap: OrderSnapshot, server_version: int, mkt_cap_price: Decimal | None = None
) -> list[str]:
    """orderStatus (3), no version field: orderId, status, filled, remaining, avgFillPrice,
    permId, parentId, lastFillPrice, clientId, whyHeld, mktCapPrice."""
    req = snap.request
    return [
        "3",
        str(req.order_id),
        snap.status.value,
        fmt_size(snap.filled),
        fmt_size(snap.remaining),
        _price(snap.avg_fill_price),
        str(snap.perm_id),
        str(req.parent_id),
        _price(snap.last_fill_price),
        str(req.client_id),
        snap.why_held,
        "0" if mkt_cap_price is None else _price(mkt_cap_price),
    ]


def encode_open_order_end(server_version: int) -> list[str]:
    return ["53", "1"]


def encode_completed_orders_end(server_version: int) -> list[str]:
    return ["102"]


def _effective(snap: OrderSnapshot, inst: Instrument | None) -> tuple[Contract, Order]:
    """The order and contract to echo: the wire objects, with the venue's truth laid over them
    (resolved contract ids, the engine's current price/quantity after modifications)."""
    req = snap.request
    raw_c, raw_o = req.raw_contract, req.raw_order
    if not isinstance(raw_c, Contract) or not isinstance(raw_o, Order):
        raw_c, raw_o = containers_from_request(req)
    c = raw_c
    if inst is not None and req.sec_type is not SecType.BAG:
        c = contract_from_instrument(inst, exchange=raw_c.exchange or inst.exchange)
    o = copy.copy(raw_o)  # the stored wire object stays as the client sent it
    o.orderId = req.order_id
    o.clientId = req.client_id
    o.permId = snap.perm_id
    if req.account:
        o.account = req.account
    o.action = req.action
    o.totalQuantity = req.total_qty
    o.orderType = req.order_type
    o.tif = req.tif
    o.lmtPrice = UNSET_DOUBLE if req.lmt_price is None else req.lmt_price
    o.auxPrice = UNSET_DOUBLE if req.aux_price is None else req.aux_price
    o.trailingPercent = UNSET_DOUBLE if req.trailing_percent is None else req.trailing_percent
    o.trailStopPrice = UNSET_DOUBLE if req.trail_stop_price is None else req.trail_stop_price
    o.outsideRth = req.outside_rth
    o.ocaGroup = req.oca_group
    o.ocaType = req.oca_type
    o.parentId = req.parent_id
    o.orderRef = req.order_ref
    return c, o


def _g(o: object, name: str, default: object) -> str:
    return fmt_any(getattr(o, name, default))


def _contract_head(c: Contract) -> list[str]:
    return [
        str(c.conId),
        c.symbol,
        c.secType,
        c.lastTradeDateOrContractMonth,
        fmt_any(c.strike),
        c.right,
        c.multiplier,
        c.exchange,
        c.currency,
        c.localSymbol,
        c.tradingClass,
    ]


def _combo_blocks(c: Contract, o: Order) -> list[str]:
    out = [c.comboLegsDescrip]
    legs = c.comboLegs or []
    out.append(str(len(legs)))
    for leg in legs:
        out += [
            str(leg.conId),
            str(leg.ratio),
            leg.action,
            leg.exchange,
            str(leg.openClose),
            str(leg.shortSaleSlot),
            leg.designatedLocation,
            str(leg.exemptCode),
        ]
    order_legs = o.orderComboLegs or []
    out.append(str(len(order_legs)))
    for ocl in order_legs:
        out.append(fmt_any(ocl.price))
    params = o.smartComboRoutingParams or []
    out.append(str(len(params)))
    for tv in params:
        out += [tv.tag, tv.value]
    return out


def _scale_block(o: Order) -> list[str]:
    out = [fmt_any(o.scaleInitLevelSize), fmt_any(o.scaleSubsLevelSize)]
    inc = o.scalePriceIncrement
    out.append(fmt_any(inc))
    if inc != UNSET_DOUBLE and inc > 0:
        out += [
            fmt_any(o.scalePriceAdjustValue),
            fmt_any(o.scalePriceAdjustInterval),
            fmt_any(o.scaleProfitOffset),
            fmt_bool(o.scaleAutoReset),
            fmt_any(o.scaleInitPosition),
            fmt_any(o.scaleInitFillQty),
            fmt_bool(o.scaleRandomPercent),
        ]
    return out


def _hedge_block(o: Order) -> list[str]:
    return [o.hedgeType, o.hedgeParam] if o.hedgeType else [o.hedgeType]


def _dn_contract_block(c: Contract) -> list[str]:
    dn = c.deltaNeutralContract
    if dn is None:
        return ["0"]
    return ["1", str(dn.conId), fmt_any(dn.delta), fmt_any(dn.price)]


def _algo_block(o: Order) -> list[str]:
    if not o.algoStrategy:
        return [""]
    params = o.algoParams or []
    out = [o.algoStrategy, str(len(params))]
    for tv in params:
        out += [tv.tag, tv.value]
    return out


def _peg_bench_block(o: Order) -> list[str]:
    if o.orderType not in ("PEG BENCH", "PEGBENCH"):
        return []
    return [
        str(o.referenceContractId),
        fmt_bool(o.isPeggedChangeAmountDecrease),
        fmt_any(o.peggedChangeAmount),
        fmt_any(o.referenceChangeAmount),
        o.referenceExchangeId,
    ]


def _peg_offsets_block(o: Order) -> list[str]:
    return [
        _g(o, "minTradeQty", UNSET_INTEGER),
        _g(o, "minCompeteSize", UNSET_INTEGER),
        _g(o, "competeAgainstBestOffset", UNSET_DOUBLE),
        _g(o, "midOffsetAtWhole", UNSET_DOUBLE),
        _g(o, "midOffsetAtHalf", UNSET_DOUBLE),
    ]


def _use_price_mgmt(o: Order) -> str:
    v = o.usePriceMgmtAlgo
    return "" if v is None or v == UNSET_INTEGER else fmt_bool(bool(v))


def encode_open_order(
    snap: OrderSnapshot, server_version: int, instrument: Instrument | None = None
) -> list[str]:
    """openOrder (5): the full order + contract + orderState (no version field from v145).

    `instrument` (the venue's resolved contract) replaces the client's contract description for
    single-leg orders, as TWS echoes the resolved contract (conId, localSymbol, tradingClass).
    """
    v = server_version
    c, o = _effective(snap, instrument)
    f = ["5", str(o.orderId), *_contract_head(c)]
    f += [
        o.action,
        fmt_any(o.totalQuantity),
        o.orderType,
        fmt_any(o.lmtPrice),
        fmt_any(o.auxPrice),
        o.tif,
        o.ocaGroup,
        o.account,
        o.openClose,
        str(o.origin),
        o.orderRef,
        str(o.clientId),
        str(o.permId),
        fmt_bool(o.outsideRth),
        fmt_bool(o.hidden),
        fmt_any(o.discretionaryAmt),
        o.goodAfterTime,
        "",  # deprecated sharesAllocation
        o.faGroup,
        o.faMethod,
        o.faPercentage,
    ]
    if v < 177:
        f.append(getattr(o, "faProfile", ""))  # not on a 10.x Order
    f += [
        o.modelCode,
        o.goodTillDate,
        o.rule80A,
        fmt_any(o.percentOffset),
        o.settlingFirm,
        str(o.shortSaleSlot),
        o.designatedLocation,
        str(o.exemptCode),
        str(o.auctionStrategy),
        fmt_any(o.startingPrice),
        fmt_any(o.stockRefPrice),
        fmt_any(o.delta),
        fmt_any(o.stockRangeLower),
        fmt_any(o.stockRangeUpper),
        str(o.displaySize),
        fmt_bool(o.blockOrder),
        fmt_bool(o.sweepToFill),
        fmt_bool(o.allOrNone),
        fmt_any(o.minQty),
        str(o.ocaType),
        # gone from 10.x clients' Order (still on the wire at these versions): read them softly
        fmt_bool(getattr(o, "eTradeOnly", False)),
        fmt_bool(getattr(o, "firmQuoteOnly", False)),
        _g(o, "nbboPriceCap", UNSET_DOUBLE),
        str(o.parentId),
        str(o.triggerMethod),
        fmt_any(o.volatility),
        fmt_any(o.volatilityType),
        o.deltaNeutralOrderType,
        fmt_any(o.deltaNeutralAuxPrice),
    ]
    if o.deltaNeutralOrderType:
        f += [
            str(o.deltaNeutralConId),
            o.deltaNeutralSettlingFirm,
            o.deltaNeutralClearingAccount,
            o.deltaNeutralClearingIntent,
            o.deltaNeutralOpenClose,
            fmt_bool(o.deltaNeutralShortSale),
            str(o.deltaNeutralShortSaleSlot),
            o.deltaNeutralDesignatedLocation,
        ]
    f += [
        fmt_bool(o.continuousUpdate),
        fmt_any(o.referencePriceType),
        fmt_any(o.trailStopPrice),
        fmt_any(o.trailingPercent),
        fmt_any(o.basisPoints),
        fmt_any(o.basisPointsType),
    ]
    f += _combo_blocks(c, o)
    f += _scale_block(o)
    f += _hedge_block(o)
    f += [fmt_bool(o.optOutSmartRouting), o.clearingAccount, o.clearingIntent, fmt_bool(o.notHeld)]
    f += _dn_contract_block(c)
    f += _algo_block(o)
    commission = snap.commission
    f += [
        fmt_bool(o.solicited),
        fmt_bool(o.whatIf),
        snap.status.value,
        # init/maint margin and equity with loan: before, change, after (a what-if's only)
        *(snap.margins or ("",) * 9),
        _opt_price(commission),
        UNSET_DOUBLE_STR,  # minCommission
        UNSET_DOUBLE_STR,  # maxCommission
        "USD" if commission is not None else "",
        snap.warning_text,
        fmt_bool(o.randomizeSize),
        fmt_bool(o.randomizePrice),
    ]
    f += _peg_bench_block(o)
    f.append("0")  # conditions (the decoder refuses orders that carry any)
    tier = o.softDollarTier
    f += [
        o.adjustedOrderType,
        fmt_any(o.triggerPrice),
        fmt_any(o.trailStopPrice),
        fmt_any(o.lmtPriceOffset),
        fmt_any(o.adjustedStopPrice),
        fmt_any(o.adjustedStopLimitPrice),
        fmt_any(o.adjustedTrailingAmount),
        str(o.adjustableTrailingUnit),
        tier.name,
        tier.val,
        tier.displayName,
        fmt_any(o.cashQty),
        fmt_bool(o.dontUseAutoPriceForHedge),
        fmt_bool(o.isOmsContainer),
        fmt_bool(o.discretionaryUpToLimitPrice),
        _use_price_mgmt(o),
    ]
    if v >= 159:
        f.append(_g(o, "duration", UNSET_INTEGER))
    if v >= 160:
        f.append(_g(o, "postToAts", UNSET_INTEGER))
    if v >= 162:
        f.append(fmt_bool(bool(o.autoCancelParent)))
    if v >= 170:
        f += _peg_offsets_block(o)
    return f


def encode_completed_order(
    snap: OrderSnapshot, server_version: int, instrument: Instrument | None = None
) -> list[str]:
    """completedOrder (101): like openOrder but without orderId/clientId and the margin fields,
    ending with the completion time and status."""
    v = server_version
    c, o = _effective(snap, instrument)
    f = ["101", *_contract_head(c)]
    f += [
        o.action,
        fmt_any(o.totalQuantity),
        o.orderType,
        fmt_any(o.lmtPrice),
        fmt_any(o.auxPrice),
        o.tif,
        o.ocaGroup,
        o.account,
        o.openClose,
        str(o.origin),
        o.orderRef,
        str(o.permId),
        fmt_bool(o.outsideRth),
        fmt_bool(o.hidden),
        fmt_any(o.discretionaryAmt),
        o.goodAfterTime,
        o.faGroup,
        o.faMethod,
        o.faPercentage,
    ]
    if v < 177:
        f.append(getattr(o, "faProfile", ""))  # not on a 10.x Order
    f += [
        o.modelCode,
        o.goodTillDate,
        o.rule80A,
        fmt_any(o.percentOffset),
        o.settlingFirm,
        str(o.shortSaleSlot),
        o.designatedLocation,
        str(o.exemptCode),
        fmt_any(o.startingPrice),
        fmt_any(o.stockRefPrice),
        fmt_any(o.delta),
        fmt_any(o.stockRangeLower),
        fmt_any(o.stockRangeUpper),
        str(o.displaySize),
        fmt_bool(o.sweepToFill),
        fmt_bool(o.allOrNone),
        fmt_any(o.minQty),
        str(o.ocaType),
        str(o.triggerMethod),
        fmt_any(o.volatility),
        fmt_any(o.volatilityType),
        o.deltaNeutralOrderType,
        fmt_any(o.deltaNeutralAuxPrice),
    ]
    if o.deltaNeutralOrderType:
        f += [
            str(o.deltaNeutralConId),
            fmt_bool(o.deltaNeutralShortSale),
            str(o.deltaNeutralShortSaleSlot),
            o.deltaNeutralDesignatedLocation,
        ]
    f += [
        fmt_bool(o.continuousUpdate),
        fmt_any(o.referencePriceType),
        fmt_any(o.trailStopPrice),
        fmt_any(o.trailingPercent),
    ]
    f += _combo_blocks(c, o)
    f += _scale_block(o)
    f += _hedge_block(o)
    f += [o.clearingAccount, o.clearingIntent, fmt_bool(o.notHeld)]
    f += _dn_contract_block(c)
    f += _algo_block(o)
    f += [
        fmt_bool(o.solicited),
        snap.status.value,
        fmt_bool(o.randomizeSize),
        fmt_bool(o.randomizePrice),
    ]
    f += _peg_bench_block(o)
    f.append("0")  # conditions
    completed = snap.completed_time
    f += [
        fmt_any(o.trailStopPrice),
        fmt_any(o.lmtPriceOffset),
        fmt_any(o.cashQty),
        fmt_bool(o.dontUseAutoPriceForHedge),
        fmt_bool(o.isOmsContainer),
        o.autoCancelDate,
        fmt_size(snap.filled),  # filledQuantity
        str(o.refFuturesConId),
        fmt_bool(bool(o.autoCancelParent)),
        o.shareholder,
        fmt_bool(o.imbalanceOnly),
        fmt_bool(o.routeMarketableToBbo),
        str(o.parentPermId),
        ib_time(completed) if completed is not None else "",
        snap.status.value,  # completedStatus
    ]
    if v >= 170:
        f += _peg_offsets_block(o)
    return f


# --------------------------------------------------------------------------------------------------
# executions


def encode_exec_details(
    req_id: int,
    ex: Execution,
    server_version: int,
    instrument: Instrument | None = None,
    model_code: str = "",
) -> list[str]:
    """execDetails (11), no version field from v136; pendingPriceRevision from v178."""
    if instrument is not None:
        expiry, strike = _expiry(instrument), _strike(instrument)
        right, mult = _right(instrument), _multiplier(instrument)
        currency, local, tclass = (
            instrument.currency,
            instrument.local_symbol,
            instrument.trading_class,
        )
    else:
        expiry, strike, right = "", "0", ""
        mult = "100" if ex.sec_type is SecType.OPT else ""
        currency, local, tclass = "USD", ex.symbol, ex.symbol
    f = [
        "11",
        str(req_id),
        str(ex.order_id),
        str(ex.con_id),
        ex.symbol,
        ex.sec_type.value,
        expiry,
        strike,
        right,
        mult,
        ex.exchange,
        currency,
        local,
        tclass,
        ex.exec_id,
        ib_time(ex.time),
        ex.account,
        ex.exchange,
        ex.side,
        fmt_size(ex.shares),
        _price(ex.price),
        str(ex.perm_id),
        str(ex.client_id),
        str(ex.liquidation),
        fmt_size(ex.cum_qty),
        _price(ex.avg_price),
        ex.order_ref,
        "",  # evRule
        "",  # evMultiplier
        model_code,
        str(ex.last_liquidity),
    ]
    if server_version >= 178:
        f.append("0")  # pendingPriceRevision
    return f


def encode_exec_details_end(req_id: int, server_version: int) -> list[str]:
    return ["55", "1", str(req_id)]


def encode_commission_report(report: CommissionReport, server_version: int) -> list[str]:
    """commissionReport (59), version 1: execId, commission, currency, realizedPNL, yield,
    yieldRedemptionDate (unset doubles as IB's max double)."""
    return [
        "59",
        "1",
        report.exec_id,
        _price(report.commission),
        report.currency,
        _opt_price(report.realized_pnl),
        UNSET_DOUBLE_STR,
        "0",
    ]


# --------------------------------------------------------------------------------------------------
# positions and account


def _position_contract(inst: Instrument) -> list[str]:
    return [
        str(inst.con_id),
        inst.symbol,
        inst.sec_type.value,
        _expiry(inst),
        _strike(inst),
        _right(inst),
        _multiplier(inst),
        "",  # exchange (positions are not per exchange)
        inst.currency,
        inst.local_symbol,
        inst.trading_class,
    ]


def encode_position(
    account: str, inst: Instrument, position: Decimal, avg_cost: Decimal, server_version: int
) -> list[str]:
    """position (61), version 3."""
    return [
        "61",
        "3",
        account,
        *_position_contract(inst),
        fmt_size(position),
        _price(avg_cost),
    ]


def encode_position_end(server_version: int) -> list[str]:
    return ["62", "1"]


def encode_position_multi(
    req_id: int,
    account: str,
    model_code: str,
    inst: Instrument,
    position: Decimal,
    avg_cost: Decimal,
    server_version: int,
) -> list[str]:
    return [
        "71",
        "1",
        str(req_id),
        account,
        *_position_contract(inst),
        fmt_size(position),
        _price(avg_cost),
        model_code,
    ]


def encode_position_multi_end(req_id: int, server_version: int) -> list[str]:
    return ["72", "1", str(req_id)]


def encode_account_summary(
    req_id: int, account: str, tag: str, value: str, currency: str, server_version: int
) -> list[str]:
    return ["63", "1", str(req_id), account, tag, value, currency]


def encode_account_summary_end(req_id: int, server_version: int) -> list[str]:
    return ["64", "1", str(req_id)]


def encode_update_account_value(
    key: str, value: str, currency: str, account: str, server_version: int
) -> list[str]:
    return ["6", "2", key, value, currency, account]


def encode_update_portfolio(
    inst: Instrument,
    position: Decimal,
    market_price: Decimal,
    market_value: Decimal,
    avg_cost: Decimal,
    unrealized_pnl: Decimal,
    realized_pnl: Decimal,
    account: str,
    server_version: int,
) -> list[str]:
    """updatePortfolio (7), version 8: contract without exchange but with primaryExchange."""
    return [
        "7",
        "8",
        str(inst.con_id),
        inst.symbol,
        inst.sec_type.value,
        _expiry(inst),
        _strike(inst),
        _right(inst),
        _multiplier(inst),
        inst.primary_exchange,
        inst.currency,
        inst.local_symbol,
        inst.trading_class,
        fmt_size(position),
        _price(market_price),
        _price(market_value),
        _price(avg_cost),
        _price(unrealized_pnl),
        _price(realized_pnl),
        account,
    ]


def encode_update_account_time(ts: datetime, server_version: int) -> list[str]:
    return ["8", "1", ts.astimezone(UTC).strftime("%H:%M")]


def encode_account_download_end(account: str, server_version: int) -> list[str]:
    return ["54", "1", account]


def encode_account_update_multi(
    req_id: int,
    account: str,
    model_code: str,
    key: str,
    value: str,
    currency: str,
    server_version: int,
) -> list[str]:
    return ["73", "1", str(req_id), account, model_code, key, value, currency]


def encode_account_update_multi_end(req_id: int, server_version: int) -> list[str]:
    return ["74", "1", str(req_id)]


def encode_pnl(
    req_id: int, daily: Decimal, unrealized: Decimal, realized: Decimal, server_version: int
) -> list[str]:
    """pnl (94), no version field: daily, unrealized (v129+), realized (v135+)."""
    return ["94", str(req_id), _price(daily), _price(unrealized), _price(realized)]


def encode_pnl_single(
    req_id: int,
    position: Decimal,
    daily: Decimal,
    unrealized: Decimal,
    realized: Decimal,
    value: Decimal,
    server_version: int,
) -> list[str]:
    """pnlSingle (95): position (an int below v163), daily, unrealized, realized, value."""
    return [
        "95",
        str(req_id),
        _size(position, server_version),
        _price(daily),
        _price(unrealized),
        _price(realized),
        _price(value),
    ]
