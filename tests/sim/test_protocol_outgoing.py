"""Every encoder's output decoded by the real clients: the installed ibapi (9.81 at v157; a 10.x
build, in the compatibility venv, at v157/176/178) and ib_async at v157/176/178.

A message that a client decodes into the wrong callback, with shifted fields, or not at all fails
here; ib_async's decoder logs (instead of raising) its errors, which the harness turns into
failures.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import ib_async.contract as ac
import ib_async.order as ao
import ibapi.contract as ic
import ibapi.order as io
import pytest
from ibapi.tag_value import TagValue as IbapiTagValue

from tests.sim.test_protocol_clients import (
    IBAPI_10,
    IBAPI_VERSIONS,
    async_client,
    async_decode,
    ibapi_client,
    ibapi_decode,
    ibapi_error,
    ibapi_name,
    norm,
    one_call,
)
from tws_sim.protocol import incoming as inc
from tws_sim.protocol import outgoing as out
from tws_sim.protocol.fields import UNSET_DOUBLE
from tws_sim.types import (
    Bar,
    CommissionReport,
    Execution,
    Greeks,
    Instrument,
    OrderSnapshot,
    OrderStatusName,
    Right,
    SecType,
)

ALL = (157, 176, 178)

SPY = Instrument(
    con_id=756733,
    symbol="SPY",
    sec_type=SecType.STK,
    currency="USD",
    exchange="SMART",
    primary_exchange="ARCA",
    local_symbol="SPY",
    trading_class="SPY",
    multiplier=1,
    min_tick=Decimal("0.01"),
    long_name="SPDR S&P 500 ETF TRUST",
    valid_exchanges=("SMART", "ARCA", "NYSE"),
    industry="Funds",
    category="Equity Fund",
)
SPY_C = Instrument(
    con_id=900001,
    symbol="SPY",
    sec_type=SecType.OPT,
    currency="USD",
    exchange="SMART",
    primary_exchange="",
    local_symbol="SPY   260105C00450000",
    trading_class="SPY",
    multiplier=100,
    min_tick=Decimal("0.01"),
    long_name="SPDR S&P 500 ETF TRUST",
    valid_exchanges=("SMART", "CBOE", "BOX", "ISE"),
    expiry=date(2026, 1, 5),
    strike=Decimal("450"),
    right=Right.CALL,
    underlying_con_id=756733,
)
T0 = datetime(2026, 1, 5, 15, 30, 1, tzinfo=UTC)


def _both(fields_for: Any, name: str, versions: tuple[int, ...] = ALL) -> list[tuple[Any, ...]]:
    """Decode `fields_for(v)` with ibapi (the versions it knows) and ib_async (each version); the
    `name` call args, ibapi's first."""
    results = []
    for v in versions:
        if v in IBAPI_VERSIONS:
            results.append(one_call(ibapi_decode(fields_for(v), v), ibapi_name(name)))
        results.append(one_call(async_decode(fields_for(v), v), name))
    return results


# --------------------------------------------------------------------------------------------------
# connection-level messages


def test_connection_messages() -> None:
    for args in _both(lambda v: out.encode_next_valid_id(17, v), "nextValidId"):
        assert args == (17,)
    for args in _both(lambda v: out.encode_managed_accounts(["DU1", "DU2"], v), "managedAccounts"):
        assert args == ("DU1,DU2",)
    for args in _both(lambda v: out.encode_current_time(T0, v), "currentTime"):
        assert args == (int(T0.timestamp()),)
    for args in _both(lambda v: out.encode_market_data_type(5, 3, v), "marketDataType"):
        assert args == (5, 3)
    for args in _both(
        lambda v: out.encode_tick_req_params(5, Decimal("0.01"), "9c0001", 3, v), "tickReqParams"
    ):
        assert args == (5, 0.01, "9c0001", 3)
    for args in _both(lambda v: out.encode_tick_snapshot_end(5, v), "tickSnapshotEnd"):
        assert args == (5,)


def test_error_message_per_version() -> None:
    ibapi_args = one_call(
        ibapi_decode(out.encode_error(-1, 2104, "Market data farm OK", 157)), "error"
    )
    assert ibapi_error(ibapi_args) == (-1, 2104, "Market data farm OK")
    for v in IBAPI_VERSIONS:
        # advancedOrderRejectJson from v166: 10.x passes it always ("" when absent)
        args = one_call(ibapi_decode(out.encode_error(12, 201, "Order rejected", v), v), "error")
        assert ibapi_error(args)[:3] == (12, 201, "Order rejected")
    for v in ALL:
        args = one_call(async_decode(out.encode_error(12, 201, "Order rejected", v), v), "error")
        assert args == (12, 201, "Order rejected", "")


# --------------------------------------------------------------------------------------------------
# market data


def test_tick_price_with_size_and_without() -> None:
    def fields(v: int) -> list[str]:
        return out.encode_tick_price(3, 1, Decimal("450.25"), Decimal(300), v, attrib_mask=1)

    calls = ibapi_decode(fields(157))
    price_args = one_call(calls, "tickPrice")
    assert price_args[:3] == (3, 1, 450.25)
    assert price_args[3].canAutoExecute is True
    assert one_call(calls, "tickSize") == (3, 0, 300)
    for v in ALL:
        assert one_call(async_decode(fields(v), v), "priceSizeTick") == (3, 1, 450.25, 300.0)
    for v in IBAPI_VERSIONS:
        calls = ibapi_decode(fields(v), v)
        assert one_call(calls, "tickPrice")[:3] == (3, 1, 450.25)
        size = one_call(calls, "tickSize")
        assert size == (3, 0, 300)
        if IBAPI_10:
            assert isinstance(size[2], Decimal)  # 10.x sizes are Decimal
    close = out.encode_tick_price(3, 9, Decimal("449.00"), None, 157)
    calls = ibapi_decode(close)
    assert one_call(calls, "tickPrice")[:3] == (3, 9, 449.0)
    assert [n for n, _ in calls] == ["tickPrice"]


def test_tick_size_fractional_only_from_163() -> None:
    size = Decimal("12.5")
    assert out.encode_tick_size(3, 8, size, 157)[-1] == "12"
    assert out.encode_tick_size(3, 8, size, 176)[-1] == "12.5"
    assert one_call(ibapi_decode(out.encode_tick_size(3, 8, size, 157)), "tickSize") == (3, 8, 12)
    for v in (176, 178):
        assert one_call(async_decode(out.encode_tick_size(3, 8, size, v), v), "tickSize") == (
            3,
            8,
            12.5,
        )
        if v in IBAPI_VERSIONS:
            got = one_call(ibapi_decode(out.encode_tick_size(3, 8, size, v), v), "tickSize")
            assert got == (3, 8, Decimal("12.5"))


def test_tick_string_and_generic_halt() -> None:
    for args in _both(lambda v: out.encode_tick_string(4, 45, "1767627001", v), "tickString"):
        assert args == (4, 45, "1767627001")
    for args in _both(lambda v: out.encode_tick_generic(4, 49, 1, v), "tickGeneric"):
        assert args == (4, 49, 1.0)


def test_tick_option_computation() -> None:
    g = Greeks(0.21, 0.55, 0.012, 0.31, -0.45, 5.25, 0.0, 450.1)
    for args in _both(
        lambda v: out.encode_tick_option_computation(6, 13, g, v), "tickOptionComputation"
    ):
        assert args == (6, 13, 0, 0.21, 0.55, 5.25, 0.0, 0.012, 0.31, -0.45, 450.1)
    # not computed: ibapi maps IB's markers back to None
    none = one_call(
        ibapi_decode(out.encode_tick_option_computation(6, 10, None, 157)), "tickOptionComputation"
    )
    assert none == (6, 10, 0, None, None, None, None, None, None, None, None)


def test_tick_by_tick() -> None:
    def last(v: int) -> list[str]:
        return out.encode_tick_by_tick_last(7, 2, T0, Decimal("450.2"), Decimal(100), "ARCA", v)

    for args in _both(last, "tickByTickAllLast"):
        assert args[:5] == (7, 2, int(T0.timestamp()), 450.2, 100)
        assert args[6:] == ("ARCA", "")
        assert args[5].pastLimit is False

    def bid_ask(v: int) -> list[str]:
        return out.encode_tick_by_tick_bid_ask(
            7, T0, Decimal("450.19"), Decimal("450.21"), Decimal(300), Decimal(200), v
        )

    for args in _both(bid_ask, "tickByTickBidAsk"):
        assert args[:6] == (7, int(T0.timestamp()), 450.19, 450.21, 300, 200)

    def mid(v: int) -> list[str]:
        return out.encode_tick_by_tick_mid_point(7, T0, Decimal("450.2"), v)

    for args in _both(mid, "tickByTickMidPoint"):
        assert args == (7, int(T0.timestamp()), 450.2)


def test_market_depth() -> None:
    def l1(v: int) -> list[str]:
        return out.encode_update_mkt_depth(8, 0, 0, 1, Decimal("450.19"), Decimal(300), v)

    for args in _both(l1, "updateMktDepth"):
        assert args == (8, 0, 0, 1, 450.19, 300)

    def l2(v: int) -> list[str]:
        return out.encode_update_mkt_depth_l2(
            8, 2, "NSDQ", 1, 0, Decimal("450.23"), Decimal(500), True, v
        )

    for args in _both(l2, "updateMktDepthL2"):
        assert args == (8, 2, "NSDQ", 1, 0, 450.23, 500, True)


BAR = Bar(
    time=T0,
    open=Decimal("450.00"),
    high=Decimal("450.50"),
    low=Decimal("449.75"),
    close=Decimal("450.25"),
    volume=Decimal(12000),
    wap=Decimal("450.1"),
    count=42,
)


def test_realtime_bar() -> None:
    for args in _both(lambda v: out.encode_realtime_bar(9, BAR, v), "realtimeBar"):
        # 10.x decodes volume and wap as Decimal
        got = tuple(norm(a) for a in args)
        assert got == (9, int(T0.timestamp()), 450.0, 450.5, 449.75, 450.25, 12000, 450.1, 42)


def test_historical_data_and_update() -> None:
    bars = [BAR, Bar(T0.replace(minute=31), *[Decimal(451)] * 4, Decimal(10), Decimal(451), 1)]
    start, end = T0.replace(hour=14), T0.replace(hour=21)
    for v in ALL:
        fields = out.encode_historical_data(10, start, end, bars, v)
        decoders = [(ibapi_decode, "ibapi")] if v in IBAPI_VERSIONS else []
        decoders.append((async_decode, "ib_async"))
        for decode_fn, _ in decoders:
            calls = decode_fn(fields, v)
            data = [args[1] for n, args in calls if n == "historicalData"]
            assert [(b.open, b.high, b.low, b.close, b.volume, b.barCount) for b in data] == [
                (450.0, 450.5, 449.75, 450.25, 12000, 42),
                (451.0, 451.0, 451.0, 451.0, 10, 1),
            ]
            assert data[0].date == "20260105 15:30:01 UTC"
            assert one_call(calls, "historicalDataEnd") == (
                10,
                "20260105 14:30:01 UTC",
                "20260105 21:30:01 UTC",
            )
    daily = out.encode_historical_data(10, start, end, [BAR], 178, daily=True)
    assert daily[2:4] == ["20260105", "20260105"]
    epoch = out.encode_historical_data(10, start, end, [BAR], 178, format_date=2)
    assert epoch[5] == str(int(T0.timestamp()))

    for args in _both(
        lambda v: out.encode_historical_data_update(10, BAR, v), "historicalDataUpdate"
    ):
        b = args[1]
        assert (b.open, b.high, b.low, b.close, b.volume, _bar_wap(b), b.barCount) == (
            450.0,
            450.5,
            449.75,
            450.25,
            12000,
            450.1,
            42,
        )


def _bar_wap(bar: Any) -> Any:
    """BarData's average price: `average` in ibapi 9.81 and ib_async, `wap` in ibapi 10.x."""
    return norm(bar.wap if hasattr(bar, "wap") else bar.average)


def _commission(obj: Any) -> Any:
    """Commission on an OrderState / CommissionReport: 10.x renamed it `commissionAndFees`."""
    return obj.commissionAndFees if hasattr(obj, "commissionAndFees") else obj.commission


def _commission_currency(state: Any) -> Any:
    if hasattr(state, "commissionAndFeesCurrency"):
        return state.commissionAndFeesCurrency
    return state.commissionCurrency


# --------------------------------------------------------------------------------------------------
# contracts


@pytest.mark.parametrize("inst", [SPY, SPY_C], ids=["stock", "option"])
def test_contract_data(inst: Instrument) -> None:
    def fields(v: int) -> list[str]:
        return out.encode_contract_data(
            11, inst, v, trading_hours="20260105:0930-20260105:1600", time_zone_id="US/Eastern"
        )

    for req_id, cd in _both(fields, "contractDetails"):
        assert req_id == 11
        c = cd.contract
        assert (c.conId, c.symbol, c.secType, c.exchange, c.currency) == (
            inst.con_id,
            inst.symbol,
            inst.sec_type.value,
            "SMART",
            "USD",
        )
        assert (c.localSymbol, c.tradingClass, c.primaryExchange) == (
            inst.local_symbol,
            inst.trading_class,
            inst.primary_exchange,
        )
        assert cd.minTick == 0.01
        assert cd.longName == inst.long_name
        assert cd.validExchanges == ",".join(inst.valid_exchanges)
        assert cd.timeZoneId == "US/Eastern"
        assert cd.tradingHours == "20260105:0930-20260105:1600"
        if inst.sec_type is SecType.OPT:
            assert (c.lastTradeDateOrContractMonth, c.right, c.multiplier) == (
                "20260105",
                "C",
                "100",
            )
            assert float(c.strike) == 450.0
            assert cd.underConId == 756733
            assert cd.contractMonth == "202601"
        else:
            assert cd.stockType == "COMMON"
    for args in _both(lambda v: out.encode_contract_data_end(11, v), "contractDetailsEnd"):
        assert args == (11,)
    # size rules exist from v164: ib_async reads them
    cd = one_call(async_decode(fields(178), 178), "contractDetails")[1]
    assert (cd.minSize, cd.sizeIncrement, cd.suggestedSizeIncrement) == (1, 1, 1)


def test_contract_long_name_survives_unicode_escape() -> None:
    name = "Soci\u00e9t\u00e9 G\u00e9n\u00e9rale \\ Co"
    inst = Instrument(
        **{**{f: getattr(SPY, f) for f in SPY.__dataclass_fields__}, "long_name": name}
    )
    for _, cd in _both(lambda v: out.encode_contract_data(1, inst, v), "contractDetails"):
        assert cd.longName == name


def test_sec_def_opt_params() -> None:
    def fields(v: int) -> list[str]:
        return out.encode_sec_def_opt_params(
            12,
            "SMART",
            756733,
            "SPY",
            100,
            ["20260105", "20260109"],
            [Decimal("445"), Decimal("450"), Decimal("452.5")],
            v,
        )

    for args in _both(fields, "securityDefinitionOptionParameter"):
        assert args[:5] == (
            12,
            "SMART",
            "756733" if isinstance(args[2], str) else 756733,
            "SPY",
            "100",
        )
        assert sorted(args[5]) == ["20260105", "20260109"]
        assert sorted(args[6]) == [445.0, 450.0, 452.5]
    for args in _both(
        lambda v: out.encode_sec_def_opt_params_end(12, v), "securityDefinitionOptionParameterEnd"
    ):
        assert args == (12,)


# --------------------------------------------------------------------------------------------------
# orders: the round trip client placeOrder → our decode → our openOrder → client decode


def _placed(lib: str, v: int, order_id: int, contract: Any, order: Any) -> inc.PlaceOrder:
    cap = ibapi_client(v) if lib == "ibapi" else async_client(v)
    cap.client.placeOrder(order_id, contract, order)
    (msg,) = cap.take()
    r = inc.decode(msg, v, client_id=3)
    assert isinstance(r, inc.PlaceOrder), r
    return r


def _snapshot(r: inc.PlaceOrder, **kw: Any) -> OrderSnapshot:
    base: dict[str, Any] = {
        "request": r.request,
        "perm_id": 1_000_001,
        "status": OrderStatusName.SUBMITTED,
        "filled": Decimal(40),
        "remaining": r.request.total_qty - 40,
        "avg_fill_price": Decimal("450.2"),
        "last_fill_price": Decimal("450.21"),
    }
    base.update(kw)
    return OrderSnapshot(**base)


#: order fields that openOrder does not carry back (or carries in a different shape)
NOT_ECHOED = {
    "orderId",
    "clientId",
    "permId",
    "transmit",
    "overridePercentageConstraints",
    "scaleTable",
    "activeStartTime",
    "activeStopTime",
    "algoId",
    "orderMiscOptions",
    "extOperator",
    "mifid2DecisionMaker",
    "mifid2DecisionAlgo",
    "mifid2ExecutionTrader",
    "mifid2ExecutionAlgo",
    "softDollarTier",
    "conditions",
    "orderComboLegs",
    "smartComboRoutingParams",
    "algoParams",
    "advancedErrorOverride",
    "manualOrderTime",
    # not sent by placeOrder, so the client's defaults are what it compares against
    "autoCancelDate",
    "filledQuantity",
    "refFuturesConId",
    "shareholder",
    "imbalanceOnly",
    "routeMarketableToBbo",
    "parentPermId",
}


def _echo_skip(v: int, lib_decoder: str) -> set[str]:
    skip = set(NOT_ECHOED)
    if lib_decoder == "ibapi":
        # ibapi decodes this tri-state (None/False/True) as a plain bool: unset comes back False
        skip.add("usePriceMgmtAlgo")
    if v >= 177:
        skip.add("faProfile")
    if v < 159 or lib_decoder == "ibapi":
        skip |= {"duration", "postToAts", "autoCancelParent"}
    if v < 170 or lib_decoder == "ibapi":
        skip |= {"minTradeQty", "minCompeteSize", "competeAgainstBestOffset"}
        skip |= {"midOffsetAtWhole", "midOffsetAtHalf"}
    return skip


def _compare_orders(got: Any, sent: Any, skip: set[str]) -> dict[str, Any]:
    names = getattr(sent, "__dataclass_fields__", None) or vars(sent)
    bad = {}
    for name in names:
        if name in skip or not hasattr(got, name):
            continue
        a, b = norm(getattr(got, name)), norm(getattr(sent, name))
        if a != b:
            bad[name] = (a, b)
    return bad


ORDER_CASES = {
    "LMT": ({"action": "BUY", "totalQuantity": 100, "orderType": "LMT", "lmtPrice": 450.25}, SPY),
    "STP LMT": (
        {
            "action": "SELL",
            "totalQuantity": 50,
            "orderType": "STP LMT",
            "lmtPrice": 449.0,
            "auxPrice": 449.5,
            "tif": "GTC",
        },
        SPY,
    ),
    "TRAIL": (
        {
            "action": "SELL",
            "totalQuantity": 100,
            "orderType": "TRAIL",
            "trailingPercent": 0.5,
            "trailStopPrice": 447.0,
            "outsideRth": True,
        },
        SPY,
    ),
    "PEG MID": (
        {"action": "BUY", "totalQuantity": 100, "orderType": "PEG MID", "auxPrice": 0.01},
        SPY,
    ),
    "child": (
        {
            "action": "SELL",
            "totalQuantity": 100,
            "orderType": "LMT",
            "lmtPrice": 455.0,
            "parentId": 40,
            "ocaGroup": "b40",
            "ocaType": 3,
            "orderRef": "tp",
        },
        SPY,
    ),
    "option": ({"action": "BUY", "totalQuantity": 2, "orderType": "LMT", "lmtPrice": 5.2}, SPY_C),
    # every echoed field away from its default, so a shifted or swapped field cannot hide
    "kitchen sink": (
        {
            "action": "SELL",
            "totalQuantity": 300,
            "orderType": "LMT",
            "lmtPrice": 451.5,
            "auxPrice": 0.25,
            "tif": "GTD",
            "ocaGroup": "oca-k",
            "ocaType": 2,
            "openClose": "C",
            "orderRef": "kitchen",
            "parentId": 39,
            "blockOrder": True,
            "sweepToFill": True,
            "displaySize": 7,
            "triggerMethod": 2,
            "outsideRth": True,
            "hidden": True,
            "discretionaryAmt": 0.05,
            "goodAfterTime": "20260105 09:35:00 UTC",
            "goodTillDate": "20260105 20:00:00 UTC",
            "faGroup": "G1",
            "faMethod": "EqualQuantity",
            "faPercentage": "10",
            "modelCode": "M1",
            "shortSaleSlot": 2,
            "designatedLocation": "DL",
            "exemptCode": 3,
            "rule80A": "I",
            "settlingFirm": "SF",
            "allOrNone": True,
            "minQty": 5,
            "percentOffset": 0.03,
            "auctionStrategy": 1,
            "startingPrice": 450.1,
            "stockRefPrice": 450.2,
            "delta": 0.4,
            "stockRangeLower": 440.0,
            "stockRangeUpper": 460.0,
            "continuousUpdate": True,
            "referencePriceType": 1,
            "trailStopPrice": 452.0,
            "trailingPercent": 1.5,
            "scaleInitLevelSize": 10,
            "scaleSubsLevelSize": 5,
            "scalePriceIncrement": 0.05,
            "scalePriceAdjustValue": 0.01,
            "scalePriceAdjustInterval": 60,
            "scaleProfitOffset": 0.2,
            "scaleAutoReset": True,
            "scaleInitPosition": 3,
            "scaleInitFillQty": 2,
            "scaleRandomPercent": True,
            "hedgeType": "D",
            "hedgeParam": "0.5",
            "notHeld": True,
            "clearingAccount": "CA1",
            "clearingIntent": "IB",
            "algoStrategy": "Adaptive",
            "solicited": True,
            "randomizeSize": True,
            "randomizePrice": True,
            "adjustedOrderType": "STP",
            "triggerPrice": 449.0,
            "lmtPriceOffset": 0.1,
            "adjustedStopPrice": 448.0,
            "adjustedStopLimitPrice": 447.5,
            "adjustedTrailingAmount": 0.5,
            "adjustableTrailingUnit": 1,
            "cashQty": 1000.0,
            "dontUseAutoPriceForHedge": True,
            "isOmsContainer": True,
            "discretionaryUpToLimitPrice": True,
            "usePriceMgmtAlgo": True,
        },
        SPY,
    ),
}


def _make(lib: str, attrs: dict[str, Any], inst: Instrument) -> tuple[Any, Any]:
    o = io.Order() if lib == "ibapi" else ao.Order()
    o.tif = "DAY"
    o.account = "DU1234567"
    for k, val in attrs.items():
        setattr(o, k, val)
    if o.algoStrategy:
        tag = IbapiTagValue if lib == "ibapi" else ac.TagValue
        o.algoParams = [tag("adaptivePriority", "Normal")]
    if lib == "ib_async" and attrs.get("orderRef") == "kitchen":
        o.faProfile = "P1"
        o.duration = 10
        o.postToAts = 1
        o.autoCancelParent = True
    c = ic.Contract() if lib == "ibapi" else ac.Contract()
    c.conId, c.symbol, c.secType = inst.con_id, inst.symbol, inst.sec_type.value
    c.exchange, c.currency = "SMART", "USD"
    return c, o


@pytest.mark.parametrize("case", list(ORDER_CASES))
@pytest.mark.parametrize("v", ALL)
def test_open_order_round_trip(case: str, v: int) -> None:
    attrs, inst = ORDER_CASES[case]
    decoders = [("ibapi", ibapi_decode)] if v in IBAPI_VERSIONS else []
    decoders.append(("ib_async", async_decode))
    for lib, decode_fn in decoders:
        sender = "ibapi" if v in IBAPI_VERSIONS and lib == "ibapi" else "ib_async"
        c, o = _make(sender, attrs, inst)
        placed = _placed(sender, v, 41, c, o)
        snap = _snapshot(placed, commission=Decimal("1.05"))
        order_id, contract, order, state = one_call(
            decode_fn(out.encode_open_order(snap, v, instrument=inst), v), "openOrder"
        )
        assert order_id == 41
        assert (order.orderId, order.clientId, order.permId) == (41, 3, 1_000_001)
        assert (contract.conId, contract.symbol, contract.secType, contract.exchange) == (
            inst.con_id,
            inst.symbol,
            inst.sec_type.value,
            "SMART",
        )
        assert contract.localSymbol == inst.local_symbol
        assert state.status == "Submitted"
        assert _commission(state) == 1.05
        assert _commission_currency(state) == "USD"
        bad = _compare_orders(order, o, _echo_skip(v, lib))
        assert not bad, (lib, bad)
        sent_algo = [(t.tag, t.value) for t in (o.algoParams or [])]
        assert [(t.tag, t.value) for t in (order.algoParams or [])] == sent_algo


@pytest.mark.parametrize("v", ALL)
def test_open_order_bag_round_trip(v: int) -> None:
    sender = "ibapi" if v in IBAPI_VERSIONS else "ib_async"
    c = ic.Contract() if sender == "ibapi" else ac.Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPY", "BAG", "SMART", "USD"
    legs = []
    for con_id, action in ((900001, "BUY"), (900002, "SELL")):
        leg = ic.ComboLeg() if sender == "ibapi" else ac.ComboLeg()
        leg.conId, leg.ratio, leg.action, leg.exchange = con_id, 1, action, "SMART"
        legs.append(leg)
    c.comboLegs = legs
    o = io.Order() if sender == "ibapi" else ao.Order()
    o.action, o.totalQuantity, o.orderType, o.lmtPrice = "BUY", 3, "LMT", 1.25
    leg_price = io.OrderComboLeg() if sender == "ibapi" else ao.OrderComboLeg()
    leg_price.price = 1.1
    o.orderComboLegs = [leg_price]
    placed = _placed(sender, v, 50, c, o)
    snap = _snapshot(placed, status=OrderStatusName.PRE_SUBMITTED, filled=Decimal(0))
    decoders = [ibapi_decode] if v in IBAPI_VERSIONS else []
    decoders.append(async_decode)
    for decode_fn in decoders:
        _, contract, order, state = one_call(
            decode_fn(out.encode_open_order(snap, v), v), "openOrder"
        )
        assert contract.secType == "BAG"
        assert [(x.conId, x.ratio, x.action, x.exchange) for x in contract.comboLegs] == [
            (900001, 1, "BUY", "SMART"),
            (900002, 1, "SELL", "SMART"),
        ]
        assert [x.price for x in order.orderComboLegs] == [1.1]
        assert (order.totalQuantity, order.lmtPrice) == (3, 1.25)
        assert state.status == "PreSubmitted"
        assert _commission(state) == UNSET_DOUBLE


def test_open_order_without_wire_objects() -> None:
    """Orders restored from the venue's state have no ibapi objects: containers are rebuilt."""
    placed = _placed("ib_async", 178, 60, *_make("ib_async", ORDER_CASES["LMT"][0], SPY))
    req = placed.request
    bare = type(req)(
        **{
            **{f: getattr(req, f) for f in req.__dataclass_fields__},
            "raw_order": None,
            "raw_contract": None,
        }
    )
    snap = _snapshot(placed, request=bare)
    _, contract, order, _ = one_call(
        async_decode(out.encode_open_order(snap, 178, SPY), 178), "openOrder"
    )
    assert (contract.conId, order.action, order.totalQuantity, order.lmtPrice) == (
        756733,
        "BUY",
        100,
        450.25,
    )
    assert order.account == "DU1234567"


@pytest.mark.parametrize("v", ALL)
def test_order_status(v: int) -> None:
    placed = _placed("ib_async", v, 42, *_make("ib_async", ORDER_CASES["child"][0], SPY))
    snap = _snapshot(placed, why_held="locate")
    decoders = [ibapi_decode] if v in IBAPI_VERSIONS else []
    decoders.append(async_decode)
    for decode_fn in decoders:
        args = one_call(decode_fn(out.encode_order_status(snap, v), v), "orderStatus")
        assert args == (42, "Submitted", 40, 60, 450.2, 1_000_001, 40, 450.21, 3, "locate", 0.0)
    for args in _both(lambda v: out.encode_open_order_end(v), "openOrderEnd"):
        assert args == ()


@pytest.mark.parametrize("v", ALL)
def test_completed_order(v: int) -> None:
    sender = "ibapi" if v in IBAPI_VERSIONS else "ib_async"
    c, o = _make(sender, ORDER_CASES["STP LMT"][0], SPY)
    placed = _placed(sender, v, 43, c, o)
    done = T0.replace(hour=20)
    snap = _snapshot(
        placed,
        status=OrderStatusName.FILLED,
        filled=Decimal(50),
        remaining=Decimal(0),
        completed_time=done,
    )
    decoders = [("ibapi", ibapi_decode)] if v in IBAPI_VERSIONS else []
    decoders.append(("ib_async", async_decode))
    for lib, decode_fn in decoders:
        contract, order, state = one_call(
            decode_fn(out.encode_completed_order(snap, v, SPY), v), "completedOrder"
        )
        assert contract.conId == 756733
        assert (order.permId, order.filledQuantity) == (1_000_001, 50)
        assert (state.status, state.completedStatus) == ("Filled", "Filled")
        assert state.completedTime == "20260105 20:30:01 UTC"
        skip = _echo_skip(v, lib) | {"filledQuantity", "whatIf", "eTradeOnly", "firmQuoteOnly"}
        skip |= {"auctionStrategy", "blockOrder", "nbboPriceCap", "optOutSmartRouting"}
        skip |= {
            "basisPoints",
            "basisPointsType",
            "discretionaryUpToLimitPrice",
            "usePriceMgmtAlgo",
        }
        skip |= {"adjustedOrderType", "triggerPrice", "adjustedStopPrice", "adjustedStopLimitPrice"}
        skip |= {
            "adjustedTrailingAmount",
            "adjustableTrailingUnit",
            "parentId",
            "duration",
            "postToAts",
        }
        bad = _compare_orders(order, o, skip)
        assert not bad, (lib, bad)
    for args in _both(lambda v: out.encode_completed_orders_end(v), "completedOrdersEnd"):
        assert args == ()


# --------------------------------------------------------------------------------------------------
# executions, commissions


EXEC = Execution(
    exec_id="0000e0d5.6581b1f5.01.01",
    order_id=41,
    client_id=3,
    perm_id=1_000_001,
    account="DU1234567",
    con_id=756733,
    symbol="SPY",
    sec_type=SecType.STK,
    side="BOT",
    shares=Decimal(40),
    price=Decimal("450.21"),
    cum_qty=Decimal(40),
    avg_price=Decimal("450.21"),
    time=T0,
    exchange="ARCA",
    order_ref="intent-1",
    last_liquidity=2,
)


@pytest.mark.parametrize("v", ALL)
def test_exec_details(v: int) -> None:
    fields = out.encode_exec_details(70, EXEC, v, instrument=SPY)
    if v in IBAPI_VERSIONS:
        req_id, contract, ex = one_call(ibapi_decode(fields, v), "execDetails")
        assert ex.time == "20260105 15:30:01 UTC"
        _check_exec(req_id, contract, ex)
    req_id, contract, ex = one_call(async_decode(fields, v), "execDetails")
    assert ex.time == T0
    _check_exec(req_id, contract, ex)
    if v >= 178:
        assert ex.pendingPriceRevision is False
    for args in _both(lambda v: out.encode_exec_details_end(70, v), "execDetailsEnd"):
        assert args == (70,)


def _check_exec(req_id: int, contract: Any, ex: Any) -> None:
    assert req_id == 70
    assert (contract.conId, contract.symbol, contract.secType, contract.currency) == (
        756733,
        "SPY",
        "STK",
        "USD",
    )
    assert (ex.execId, ex.orderId, ex.clientId, ex.permId, ex.acctNumber) == (
        EXEC.exec_id,
        41,
        3,
        1_000_001,
        "DU1234567",
    )
    assert (ex.side, ex.shares, ex.price, ex.cumQty, ex.avgPrice) == ("BOT", 40, 450.21, 40, 450.21)
    assert (ex.exchange, ex.orderRef, ex.lastLiquidity) == ("ARCA", "intent-1", 2)


def test_exec_details_option_without_instrument() -> None:
    ex = Execution(
        **{**{f: getattr(EXEC, f) for f in EXEC.__dataclass_fields__}, "sec_type": SecType.OPT}
    )
    _, contract, _ = one_call(async_decode(out.encode_exec_details(1, ex, 178), 178), "execDetails")
    assert contract.multiplier == "100"


def test_commission_report() -> None:
    rep = CommissionReport(EXEC.exec_id, Decimal("1.0025"), "USD", None)
    for (r,) in _both(lambda v: out.encode_commission_report(rep, v), "commissionReport"):
        assert (r.execId, _commission(r), r.currency) == (EXEC.exec_id, 1.0025, "USD")
        assert r.realizedPNL == UNSET_DOUBLE
    rep = CommissionReport(EXEC.exec_id, Decimal("1"), "USD", Decimal("-12.5"))
    for (r,) in _both(lambda v: out.encode_commission_report(rep, v), "commissionReport"):
        assert r.realizedPNL == -12.5


# --------------------------------------------------------------------------------------------------
# positions, account, pnl


def test_positions() -> None:
    for account, contract, pos, avg in _both(
        lambda v: out.encode_position("DU1234567", SPY_C, Decimal(-3), Decimal("512.5"), v),
        "position",
    ):
        assert (account, contract.conId, contract.secType, contract.right) == (
            "DU1234567",
            900001,
            "OPT",
            "C",
        )
        assert (contract.lastTradeDateOrContractMonth, contract.multiplier) == ("20260105", "100")
        assert float(contract.strike) == 450.0
        assert (pos, avg) == (-3, 512.5)
    for args in _both(lambda v: out.encode_position_end(v), "positionEnd"):
        assert args == ()

    def multi(v: int) -> list[str]:
        return out.encode_position_multi(
            80, "DU1234567", "", SPY, Decimal(100), Decimal("450.2"), v
        )

    for req_id, account, model, contract, pos, avg in _both(multi, "positionMulti"):
        assert (req_id, account, model, contract.conId, pos, avg) == (
            80,
            "DU1234567",
            "",
            756733,
            100,
            450.2,
        )
    for args in _both(lambda v: out.encode_position_multi_end(80, v), "positionMultiEnd"):
        assert args == (80,)


def test_account_messages() -> None:
    def summary(v: int) -> list[str]:
        return out.encode_account_summary(81, "DU1234567", "NetLiquidation", "100000.00", "USD", v)

    for args in _both(summary, "accountSummary"):
        assert args == (81, "DU1234567", "NetLiquidation", "100000.00", "USD")
    for args in _both(lambda v: out.encode_account_summary_end(81, v), "accountSummaryEnd"):
        assert args == (81,)

    def value(v: int) -> list[str]:
        return out.encode_update_account_value("CashBalance", "5000", "USD", "DU1234567", v)

    for args in _both(value, "updateAccountValue"):
        assert args == ("CashBalance", "5000", "USD", "DU1234567")

    def portfolio(v: int) -> list[str]:
        return out.encode_update_portfolio(
            SPY,
            Decimal(100),
            Decimal("451"),
            Decimal("45100"),
            Decimal("450.2"),
            Decimal("80"),
            Decimal("0"),
            "DU1234567",
            v,
        )

    for contract, *rest in _both(portfolio, "updatePortfolio"):
        assert (contract.conId, contract.primaryExchange) == (756733, "ARCA")
        assert tuple(rest) == (100, 451.0, 45100.0, 450.2, 80.0, 0.0, "DU1234567")
    for args in _both(lambda v: out.encode_update_account_time(T0, v), "updateAccountTime"):
        assert args == ("15:30",)
    for args in _both(
        lambda v: out.encode_account_download_end("DU1234567", v), "accountDownloadEnd"
    ):
        assert args == ("DU1234567",)

    def upd_multi(v: int) -> list[str]:
        return out.encode_account_update_multi(82, "DU1234567", "", "NetLiquidation", "1", "USD", v)

    for args in _both(upd_multi, "accountUpdateMulti"):
        assert args == (82, "DU1234567", "", "NetLiquidation", "1", "USD")
    for args in _both(
        lambda v: out.encode_account_update_multi_end(82, v), "accountUpdateMultiEnd"
    ):
        assert args == (82,)


def test_pnl() -> None:
    def pnl(v: int) -> list[str]:
        return out.encode_pnl(90, Decimal("-12.5"), Decimal("80"), Decimal("-92.5"), v)

    for args in _both(pnl, "pnl"):
        assert args == (90, -12.5, 80.0, -92.5)

    def single(v: int) -> list[str]:
        return out.encode_pnl_single(
            91, Decimal(100), Decimal("5"), Decimal("80"), Decimal("0"), Decimal("45100"), v
        )

    for args in _both(single, "pnlSingle"):
        assert args == (91, 100, 5.0, 80.0, 0.0, 45100.0)


def test_decimal_formatting_never_uses_exponents() -> None:
    fields = out.encode_tick_price(1, 1, Decimal("1E+2"), Decimal("1E+3"), 178)
    assert fields[4:6] == ["100", "1000"]
    assert out.encode_pnl(1, Decimal("1E-7"), Decimal(0), Decimal(0), 178)[2] == "0.0000001"
