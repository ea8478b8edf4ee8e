"""Request decoding, checked against the bytes the real clients produce.

Every request is produced by the installed `ibapi` EClient (9.81: v157; a 10.x build in the
compatibility venv: v157, v176, v178) and ib_async's Client (v157, v176, v178) with their send
paths captured, then decoded by `tws_sim.protocol.incoming.decode`; every
field the client put on the wire must come back.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ib_async.contract as ac
import ib_async.order as ao
import ibapi.contract as ic
import ibapi.execution as iexe
import ibapi.order as io
import pytest
from ibapi.tag_value import TagValue as IbapiTagValue

from tests.sim.test_protocol_clients import (
    IBAPI_10,
    IBAPI_VERSIONS,
    CapturedAsync,
    CapturedIbapi,
    async_client,
    cancel_extra,
    ibapi_client,
    norm,
)
from tws_sim.protocol import incoming as inc
from tws_sim.protocol.fields import UNSET_DOUBLE, UNSET_INTEGER
from tws_sim.types import ComboLegSpec, SecType

Captured = CapturedIbapi | CapturedAsync

# (library, version) pairs: ibapi 9.81 speaks only v157, a 10.x ibapi and ib_async all three layouts
CLIENTS = [("ibapi", v) for v in IBAPI_VERSIONS] + [("ib_async", v) for v in (157, 176, 178)]


def _cap(lib: str, v: int) -> Captured:
    return ibapi_client(v) if lib == "ibapi" else async_client(v)


def _one(cap: Captured, v: int, client_id: int = 0) -> inc.Request:
    msgs = cap.take()
    assert len(msgs) == 1, msgs
    return inc.decode(msgs[0], v, client_id)


def _contract(lib: str, **kw: Any) -> Any:
    c = ic.Contract() if lib == "ibapi" else ac.Contract()
    for k, val in kw.items():
        setattr(c, k, val)
    return c


def _order(lib: str, **kw: Any) -> Any:
    o = io.Order() if lib == "ibapi" else ao.Order()
    for k, val in kw.items():
        setattr(o, k, val)
    return o


def _leg(lib: str, con_id: int, ratio: int, action: str) -> Any:
    leg = ic.ComboLeg() if lib == "ibapi" else ac.ComboLeg()
    leg.conId, leg.ratio, leg.action, leg.exchange = con_id, ratio, action, "SMART"
    return leg


def _tag(lib: str, tag: str, value: str) -> Any:
    return IbapiTagValue(tag, value) if lib == "ibapi" else ac.TagValue(tag, value)


def _order_leg(lib: str, price: float) -> Any:
    leg = io.OrderComboLeg() if lib == "ibapi" else ao.OrderComboLeg()
    leg.price = price
    return leg


SPY = {"conId": 756733, "symbol": "SPY", "secType": "STK", "exchange": "SMART", "currency": "USD"}


def _contract_fields(c: Any) -> dict[str, Any]:
    names = [
        "conId",
        "symbol",
        "secType",
        "lastTradeDateOrContractMonth",
        "strike",
        "right",
        "multiplier",
        "exchange",
        "primaryExchange",
        "currency",
        "localSymbol",
        "tradingClass",
    ]
    return {n: norm(getattr(c, n)) for n in names}


def _assert_contract(decoded: Any, sent: Any) -> None:
    got = _contract_fields(decoded)
    want = _contract_fields(sent)
    # clients send an unset strike as 0.0 / UNSET; we hold 0
    if want["strike"] is None:
        want["strike"] = 0.0
    assert got == want


# --------------------------------------------------------------------------------------------------
# simple requests


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_simple_requests(lib: str, v: int) -> None:
    cap = _cap(lib, v)
    c = cap.client
    c.reqCurrentTime()
    assert isinstance(_one(cap, v), inc.ReqCurrentTime)
    c.reqIds(-1)
    assert _one(cap, v) == inc.ReqIds(-1)
    c.reqOpenOrders()
    assert isinstance(_one(cap, v), inc.ReqOpenOrders)
    c.reqAllOpenOrders()
    assert isinstance(_one(cap, v), inc.ReqAllOpenOrders)
    c.reqAutoOpenOrders(True)
    assert _one(cap, v) == inc.ReqAutoOpenOrders(True)
    c.reqManagedAccts()
    assert isinstance(_one(cap, v), inc.ReqManagedAccts)
    c.reqGlobalCancel(*(cancel_extra() if lib == "ibapi" else []))
    assert isinstance(_one(cap, v), inc.ReqGlobalCancel)
    c.reqMarketDataType(3)
    assert _one(cap, v) == inc.ReqMarketDataType(3)
    c.setServerLogLevel(5)
    assert _one(cap, v) == inc.SetServerLogLevel(5)
    c.reqPositions()
    assert isinstance(_one(cap, v), inc.ReqPositions)
    c.cancelPositions()
    assert isinstance(_one(cap, v), inc.CancelPositions)
    c.reqAccountUpdates(True, "DU1234567")
    assert _one(cap, v) == inc.ReqAccountUpdates(True, "DU1234567")
    c.reqAccountUpdates(False, "")
    assert _one(cap, v) == inc.ReqAccountUpdates(False, "")
    c.reqAccountSummary(9, "All", "NetLiquidation,BuyingPower")
    r = _one(cap, v)
    assert r == inc.ReqAccountSummary(9, "All", "NetLiquidation,BuyingPower")
    assert isinstance(r, inc.ReqAccountSummary)
    assert r.tag_list == ("NetLiquidation", "BuyingPower")
    c.cancelAccountSummary(9)
    assert _one(cap, v) == inc.CancelAccountSummary(9)
    c.reqPositionsMulti(11, "DU1234567", "")
    assert _one(cap, v) == inc.ReqPositionsMulti(11, "DU1234567", "")
    c.cancelPositionsMulti(11)
    assert _one(cap, v) == inc.CancelPositionsMulti(11)
    c.reqAccountUpdatesMulti(12, "DU1234567", "", True)
    assert _one(cap, v) == inc.ReqAccountUpdatesMulti(12, "DU1234567", "", True)
    c.cancelAccountUpdatesMulti(12)
    assert _one(cap, v) == inc.CancelAccountUpdatesMulti(12)
    c.reqPnL(13, "DU1234567", "")
    assert _one(cap, v) == inc.ReqPnL(13, "DU1234567", "")
    c.cancelPnL(13)
    assert _one(cap, v) == inc.CancelPnL(13)
    c.reqPnLSingle(14, "DU1234567", "", 265598)
    assert _one(cap, v) == inc.ReqPnLSingle(14, "DU1234567", "", 265598)
    c.cancelPnLSingle(14)
    assert _one(cap, v) == inc.CancelPnLSingle(14)
    c.reqSecDefOptParams(15, "SPY", "", "STK", 756733)
    assert _one(cap, v) == inc.ReqSecDefOptParams(15, "SPY", "", "STK", 756733)
    c.reqCompletedOrders(False)
    assert _one(cap, v) == inc.ReqCompletedOrders(False)
    c.cancelMktData(16)
    assert _one(cap, v) == inc.CancelMktData(16)
    c.cancelHistoricalData(17)
    assert _one(cap, v) == inc.CancelHistoricalData(17)
    c.cancelRealTimeBars(18)
    assert _one(cap, v) == inc.CancelRealTimeBars(18)
    c.cancelTickByTickData(19)
    assert _one(cap, v) == inc.CancelTickByTickData(19)
    c.cancelMktDepth(20, True)
    assert _one(cap, v) == inc.CancelMktDepth(20, True)


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_start_api_and_cancel_order(lib: str, v: int) -> None:
    cap = _cap(lib, v)
    cap.client.clientId = 42
    cap.client.optCapab = "+PACEAPI"
    cap.client.startApi()
    assert _one(cap, v) == inc.StartApi(42, "+PACEAPI")
    if lib == "ibapi" and IBAPI_10:
        extra = cancel_extra()
        extra[0].manualOrderCancelTime = "20260105 10:00:00" if v >= 169 else ""
        cap.client.cancelOrder(77, *extra)
        assert _one(cap, v) == inc.CancelOrder(77, extra[0].manualOrderCancelTime)
    elif lib == "ibapi":
        cap.client.cancelOrder(77)
        assert _one(cap, v) == inc.CancelOrder(77, "")
    else:
        cap.client.cancelOrder(77, "20260105 10:00:00")
        # the manual cancel time exists on the wire only from v169
        expected = "20260105 10:00:00" if v >= 169 else ""
        assert _one(cap, v) == inc.CancelOrder(77, expected)


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_req_executions_with_filter(lib: str, v: int) -> None:
    cap = _cap(lib, v)
    f = iexe.ExecutionFilter() if lib == "ibapi" else _async_exec_filter()
    f.clientId = 3
    f.acctCode = "DU1234567"
    f.time = "20260105 14:30:00 US/Eastern"
    f.symbol = "SPY"
    f.secType = "STK"
    f.exchange = "SMART"
    f.side = "BUY"
    cap.client.reqExecutions(21, f)
    r = _one(cap, v)
    assert isinstance(r, inc.ReqExecutions)
    assert r.req_id == 21
    got = r.filter
    assert (got.clientId, got.acctCode, got.time, got.symbol, got.secType, got.exchange) == (
        3,
        "DU1234567",
        "20260105 14:30:00 US/Eastern",
        "SPY",
        "STK",
        "SMART",
    )
    assert got.side == "BUY"
    assert r.since == datetime(2026, 1, 5, 19, 30, tzinfo=UTC)


def _async_exec_filter() -> Any:
    from ib_async.objects import ExecutionFilter

    return ExecutionFilter()


def test_req_executions_empty_filter_and_bad_time() -> None:
    cap = ibapi_client(157)
    cap.client.reqExecutions(1, iexe.ExecutionFilter())
    r = _one(cap, 157)
    assert isinstance(r, inc.ReqExecutions)
    assert r.since is None
    f = iexe.ExecutionFilter()
    f.time = "yesterday"
    cap.client.reqExecutions(2, f)
    bad = _one(cap, 157)
    assert isinstance(bad, inc.BadRequest)
    assert (bad.req_id, bad.code) == (2, 321)


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_market_data_requests(lib: str, v: int) -> None:
    cap = _cap(lib, v)
    opt = _contract(
        lib,
        conId=0,
        symbol="SPY",
        secType="OPT",
        lastTradeDateOrContractMonth="20260105",
        strike=450.0,
        right="C",
        multiplier="100",
        exchange="SMART",
        currency="USD",
        tradingClass="SPY",
    )
    cap.client.reqMktData(30, opt, "100,101,106,mdoff", False, False, [])
    r = _one(cap, v)
    assert isinstance(r, inc.ReqMktData)
    assert (r.req_id, r.generic_tick_list, r.snapshot, r.regulatory_snapshot) == (
        30,
        "100,101,106,mdoff",
        False,
        False,
    )
    assert r.generic_ticks == frozenset({100, 101, 106})
    _assert_contract(r.contract, opt)

    stk = _contract(lib, **SPY, primaryExchange="ARCA")
    cap.client.reqMktData(31, stk, "", True, False, [])
    r = _one(cap, v)
    assert isinstance(r, inc.ReqMktData)
    assert r.snapshot is True
    _assert_contract(r.contract, stk)

    cap.client.reqContractDetails(32, opt)
    r = _one(cap, v)
    assert isinstance(r, inc.ReqContractDetails)
    assert r.req_id == 32
    assert r.include_expired is False
    _assert_contract(r.contract, opt)

    cap.client.reqMktDepth(33, stk, 5, True, [])
    r = _one(cap, v)
    assert r == inc.ReqMktDepth(33, r.contract, 5, True)
    _assert_contract(r.contract, stk)

    cap.client.reqTickByTickData(34, stk, "BidAsk", 0, False)
    r = _one(cap, v)
    assert isinstance(r, inc.ReqTickByTickData)
    assert (r.req_id, r.tick_type, r.number_of_ticks, r.ignore_size) == (34, "BidAsk", 0, False)
    _assert_contract(r.contract, stk)

    cap.client.reqRealTimeBars(35, stk, 5, "TRADES", True, [])
    r = _one(cap, v)
    assert isinstance(r, inc.ReqRealTimeBars)
    assert (r.req_id, r.bar_size, r.what_to_show, r.use_rth) == (35, 5, "TRADES", True)
    _assert_contract(r.contract, stk)

    cap.client.reqHistoricalData(
        36, stk, "20260105 16:00:00 US/Eastern", "1 D", "1 min", "TRADES", 1, 1, False, []
    )
    r = _one(cap, v)
    assert isinstance(r, inc.ReqHistoricalData)
    assert (
        r.req_id,
        r.end_date_time,
        r.duration,
        r.bar_size,
        r.what_to_show,
        r.use_rth,
        r.format_date,
        r.keep_up_to_date,
    ) == (36, "20260105 16:00:00 US/Eastern", "1 D", "1 min", "TRADES", True, 1, False)
    _assert_contract(r.contract, stk)


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_bag_market_data_request_keeps_legs(lib: str, v: int) -> None:
    cap = _cap(lib, v)
    bag = _contract(lib, symbol="SPY", secType="BAG", exchange="SMART", currency="USD")
    bag.comboLegs = [_leg(lib, 111, 1, "BUY"), _leg(lib, 222, 2, "SELL")]
    cap.client.reqMktData(40, bag, "", False, False, [])
    r = _one(cap, v)
    assert isinstance(r, inc.ReqMktData)
    assert [(leg.conId, leg.ratio, leg.action, leg.exchange) for leg in r.contract.comboLegs] == [
        (111, 1, "BUY", "SMART"),
        (222, 2, "SELL", "SMART"),
    ]


# --------------------------------------------------------------------------------------------------
# placeOrder

#: order attributes that placeOrder never carries (or carries only in cases the tests check apart)
NOT_ON_PLACE_ORDER_WIRE = {
    "orderId",
    "clientId",
    "permId",
    "basisPoints",
    "basisPointsType",
    "autoCancelDate",
    "filledQuantity",
    "refFuturesConId",
    "shareholder",
    "imbalanceOnly",
    "routeMarketableToBbo",
    "parentPermId",
    "conditions",
    "conditionsIgnoreRth",
    "conditionsCancelOrder",
    "softDollarTier",
    "orderMiscOptions",
    "orderComboLegs",
    "smartComboRoutingParams",
    "algoParams",
    "minTradeQty",
    "minCompeteSize",
    "competeAgainstBestOffset",
}


def _unsent_for_version(v: int) -> set[str]:
    out = set()
    if v >= 177:
        out.add("faProfile")
    if v < 158:
        out.add("duration")
    if v < 160:
        out.add("postToAts")
    if v < 162:
        out.add("autoCancelParent")
    if v < 166:
        out.add("advancedErrorOverride")
    if v < 169:
        out.add("manualOrderTime")
    if v < 170:
        out |= {"midOffsetAtWhole", "midOffsetAtHalf"}
    return out


def _order_attrs(o: Any) -> list[str]:
    if dataclasses.is_dataclass(o):
        return [f.name for f in dataclasses.fields(o)]
    return list(vars(o))


def _assert_order(decoded: Any, sent: Any, v: int) -> None:
    skip = NOT_ON_PLACE_ORDER_WIRE | _unsent_for_version(v)
    mismatches = {}
    for name in _order_attrs(sent):
        if name in skip:
            continue
        want = norm(getattr(sent, name))
        got = norm(getattr(decoded, name))
        if got != want:
            mismatches[name] = (got, want)
    assert not mismatches, mismatches
    # the pieces compared apart
    assert decoded.softDollarTier.name == sent.softDollarTier.name
    assert decoded.softDollarTier.val == sent.softDollarTier.val
    sent_legs = [norm(leg.price) for leg in (sent.orderComboLegs or [])]
    got_legs = [norm(leg.price) for leg in (decoded.orderComboLegs or [])]
    assert got_legs == sent_legs
    sent_params = [(t.tag, t.value) for t in (sent.smartComboRoutingParams or [])]
    got_params = [(t.tag, t.value) for t in (decoded.smartComboRoutingParams or [])]
    assert got_params == sent_params


def _place(lib: str, v: int, order_id: int, contract: Any, order: Any) -> inc.PlaceOrder:
    cap = _cap(lib, v)
    cap.client.placeOrder(order_id, contract, order)
    r = _one(cap, v, client_id=7)
    assert isinstance(r, inc.PlaceOrder), r
    assert r.order_id == order_id
    _assert_contract(r.contract, contract)
    _assert_order(r.order, order, v)
    assert r.request.client_id == 7
    assert r.request.order_id == order_id
    assert r.request.raw_order is r.order
    assert r.request.raw_contract is r.contract
    return r


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_place_limit_order(lib: str, v: int) -> None:
    o = _order(
        lib,
        action="BUY",
        totalQuantity=100,
        orderType="LMT",
        lmtPrice=450.25,
        tif="DAY",
        account="DU1234567",
        orderRef="intent-1",
        outsideRth=True,
    )
    r = _place(lib, v, 5, _contract(lib, **SPY), o)
    req = r.request
    assert (req.con_id, req.symbol, req.sec_type, req.action) == (756733, "SPY", SecType.STK, "BUY")
    assert req.total_qty == Decimal(100)
    assert (req.order_type, req.tif, req.route) == ("LMT", "DAY", "SMART")
    assert req.lmt_price == Decimal("450.25")
    assert req.aux_price is None
    assert req.trailing_percent is None
    assert req.trail_stop_price is None
    assert (req.account, req.order_ref, req.outside_rth, req.transmit) == (
        "DU1234567",
        "intent-1",
        True,
        True,
    )
    assert r.order.lmtPrice == Decimal("450.25")
    assert isinstance(r.order.totalQuantity, Decimal)
    assert r.order.auxPrice == UNSET_DOUBLE
    assert r.order.minQty == UNSET_INTEGER


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_place_stop_limit_gtc(lib: str, v: int) -> None:
    o = _order(
        lib,
        action="SELL",
        totalQuantity=50,
        orderType="STP LMT",
        lmtPrice=180.0,
        auxPrice=180.5,
        tif="GTC",
    )
    c = _contract(lib, conId=265598, symbol="AAPL", secType="STK", exchange="SMART", currency="USD")
    req = _place(lib, v, 6, c, o).request
    assert (req.order_type, req.tif, req.action) == ("STP LMT", "GTC", "SELL")
    assert (req.lmt_price, req.aux_price) == (Decimal("180.0"), Decimal("180.5"))


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_place_trailing_orders(lib: str, v: int) -> None:
    amount = _order(
        lib,
        action="SELL",
        totalQuantity=10,
        orderType="TRAIL",
        auxPrice=1.25,
        trailStopPrice=170.0,
    )
    req = _place(lib, v, 7, _contract(lib, **SPY), amount).request
    assert (req.aux_price, req.trail_stop_price, req.trailing_percent) == (
        Decimal("1.25"),
        Decimal("170.0"),
        None,
    )
    percent = _order(lib, action="SELL", totalQuantity=10, orderType="TRAIL", trailingPercent=0.5)
    req = _place(lib, v, 8, _contract(lib, **SPY), percent).request
    assert (req.aux_price, req.trailing_percent) == (None, Decimal("0.5"))


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_place_peg_mid(lib: str, v: int) -> None:
    o = _order(lib, action="BUY", totalQuantity=200, orderType="PEG MID", auxPrice=0.01)
    o.lmtPrice = 451.0
    if lib == "ib_async":
        o.midOffsetAtWhole = 0.02
        o.midOffsetAtHalf = 0.005
    r = _place(lib, v, 9, _contract(lib, **SPY), o)
    assert (r.request.order_type, r.request.aux_price) == ("PEG MID", Decimal("0.01"))
    if lib == "ib_async" and v >= 170:
        assert (r.order.midOffsetAtWhole, r.order.midOffsetAtHalf) == (
            Decimal("0.02"),
            Decimal("0.005"),
        )
    else:
        assert r.order.midOffsetAtWhole == UNSET_DOUBLE


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_place_bracket(lib: str, v: int) -> None:
    parent = _order(
        lib,
        action="BUY",
        totalQuantity=100,
        orderType="LMT",
        lmtPrice=450.0,
        transmit=False,
    )
    take_profit = _order(
        lib,
        action="SELL",
        totalQuantity=100,
        orderType="LMT",
        lmtPrice=455.0,
        parentId=20,
        transmit=False,
        ocaGroup="bracket-20",
        ocaType=3,
    )
    stop = _order(
        lib,
        action="SELL",
        totalQuantity=100,
        orderType="STP",
        auxPrice=445.0,
        parentId=20,
        transmit=True,
        ocaGroup="bracket-20",
        ocaType=3,
    )
    p = _place(lib, v, 20, _contract(lib, **SPY), parent).request
    tp = _place(lib, v, 21, _contract(lib, **SPY), take_profit).request
    st = _place(lib, v, 22, _contract(lib, **SPY), stop).request
    assert (p.parent_id, p.transmit) == (0, False)
    assert (tp.parent_id, tp.transmit, tp.oca_group, tp.oca_type) == (20, False, "bracket-20", 3)
    assert (st.parent_id, st.transmit, st.aux_price) == (20, True, Decimal("445.0"))


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_place_bag_combo(lib: str, v: int) -> None:
    bag = _contract(lib, symbol="SPY", secType="BAG", exchange="SMART", currency="USD")
    bag.comboLegs = [_leg(lib, 900001, 1, "BUY"), _leg(lib, 900002, 1, "SELL")]
    o = _order(lib, action="BUY", totalQuantity=2, orderType="LMT", lmtPrice=1.25)
    o.orderComboLegs = [_order_leg(lib, 1.5), _order_leg(lib, UNSET_DOUBLE)]
    o.smartComboRoutingParams = [_tag(lib, "NonGuaranteed", "1")]
    r = _place(lib, v, 30, bag, o)
    req = r.request
    assert (req.sec_type, req.con_id) == (SecType.BAG, 0)
    assert req.combo_legs == (
        ComboLegSpec(900001, 1, "BUY", "SMART"),
        ComboLegSpec(900002, 1, "SELL", "SMART"),
    )
    legs = r.contract.comboLegs
    assert [(x.conId, x.ratio, x.action, x.exchange, x.exemptCode) for x in legs] == [
        (900001, 1, "BUY", "SMART", -1),
        (900002, 1, "SELL", "SMART", -1),
    ]


@pytest.mark.parametrize(("lib", "v"), CLIENTS)
def test_place_gtd_order_time_zone(lib: str, v: int) -> None:
    o = _order(
        lib,
        action="BUY",
        totalQuantity=1,
        orderType="LMT",
        lmtPrice=10.0,
        tif="GTD",
        goodTillDate="20260105 16:00:00 US/Eastern",
    )
    req = _place(lib, v, 31, _contract(lib, **SPY), o).request
    assert req.good_till == datetime(2026, 1, 5, 21, 0, tzinfo=UTC)


def test_place_order_v178_fields_after_price_mgmt() -> None:
    cap = async_client(178)
    o = ao.Order(action="BUY", totalQuantity=1, orderType="LMT", lmtPrice=1.0)
    o.duration = 30
    o.postToAts = 1
    o.autoCancelParent = True
    o.advancedErrorOverride = "8229"
    o.manualOrderTime = "20260105 10:00:00"
    cap.client.placeOrder(40, ac.Contract(**SPY), o)
    r = _one(cap, 178)
    assert isinstance(r, inc.PlaceOrder)
    assert (r.order.duration, r.order.postToAts, r.order.autoCancelParent) == (30, 1, True)
    assert (r.order.advancedErrorOverride, r.order.manualOrderTime) == (
        "8229",
        "20260105 10:00:00",
    )


# --------------------------------------------------------------------------------------------------
# errors: never an exception


def test_unknown_and_unsupported_ids() -> None:
    u = inc.decode(["999", "1"], 178)
    assert isinstance(u, inc.UnknownMessage)
    assert u.error_code == 505
    assert isinstance(inc.decode(["abc"], 178), inc.UnknownMessage)
    assert isinstance(inc.decode([], 178), inc.UnknownMessage)
    cap = ibapi_client(157)
    cap.client.reqScannerParameters()
    s = _one(cap, 157)
    assert isinstance(s, inc.Unsupported)
    assert s.msg_id == 24
    assert s.error_code == 321
    cap.client.reqHeadTimeStamp(50, ic.Contract(), "TRADES", 1, 1)
    s = _one(cap, 157)
    assert isinstance(s, inc.Unsupported)
    assert s.req_id == 50


def test_truncated_and_garbage_fields_become_bad_requests() -> None:
    cap = async_client(178)
    o = ao.Order(action="BUY", totalQuantity=100, orderType="LMT", lmtPrice=1.0)
    cap.client.placeOrder(60, ac.Contract(**SPY), o)
    fields = cap.take()[0]
    for cut in (2, 10, 30, 60, len(fields) - 5):
        r = inc.decode(fields[:cut], 178)
        assert isinstance(r, inc.BadRequest), (cut, r)
        assert r.code == 320
        assert r.req_id == (60 if cut > 1 else -1)
    garbage = list(fields)
    garbage[17] = "lots"  # totalQuantity
    r = inc.decode(garbage, 178)
    assert isinstance(r, inc.BadRequest)
    assert (r.req_id, r.code) == (60, 320)
    assert "lots" in r.reason
    assert inc.decode(["1", "11", "x"], 178) == inc.BadRequest(1, -1, 320, r_reason("x"))


def r_reason(s: str) -> str:
    return f"not an integer: {s!r}"


def test_semantic_rejects() -> None:
    cap = async_client(178)
    c = ac.Contract(conId=1, symbol="ES", secType="FUT", exchange="CME", currency="USD")
    cap.client.placeOrder(61, c, ao.Order(action="BUY", totalQuantity=1, orderType="MKT"))
    r = _one(cap, 178)
    assert isinstance(r, inc.BadRequest)
    assert (r.req_id, r.code) == (61, 200)
    cap.client.placeOrder(62, ac.Contract(**SPY), ao.Order(action="HOLD", orderType="MKT"))
    r = _one(cap, 178)
    assert isinstance(r, inc.BadRequest)
    assert (r.req_id, r.code) == (62, 321)
    bag = ac.Contract(symbol="SPY", secType="BAG", exchange="SMART", currency="USD")
    bag.comboLegs = [ac.ComboLeg(conId=1, ratio=0, action="BUY", exchange="SMART")]
    cap.client.placeOrder(63, bag, ao.Order(action="BUY", totalQuantity=1, orderType="MKT"))
    r = _one(cap, 178)
    assert isinstance(r, inc.BadRequest)
    assert (r.req_id, r.code) == (63, 321)
    cap.client.reqMarketDataType(9)
    r = _one(cap, 178)
    assert isinstance(r, inc.BadRequest)
    assert r.code == 321
    assert "market data type" in r.error_text
