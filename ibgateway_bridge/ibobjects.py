"""epm command specs → ibapi `Contract`/`Order` objects (the only place they are built).

Prices and quantities stay Decimal: ibapi writes fields with `str()`, so `Decimal("101.25")`
reaches the socket as "101.25" exactly (a float could not promise that).
"""

from __future__ import annotations

import inspect
from typing import Any

from ibapi.contract import ComboLeg, Contract
from ibapi.order import Order

from ibgateway_bridge.commands import ContractSpec, ModifyOrder, PlaceOrder


def to_ib_contract(spec: ContractSpec) -> Contract:
    contract = Contract()
    if spec.con_id is not None:
        contract.conId = spec.con_id
    contract.symbol = spec.symbol or ""
    contract.secType = spec.sec_type
    contract.exchange = spec.exchange
    contract.currency = spec.currency
    contract.lastTradeDateOrContractMonth = spec.expiry or ""
    if spec.strike is not None:
        contract.strike = spec.strike
    contract.right = {"CALL": "C", "PUT": "P"}.get(spec.right or "", spec.right or "")
    contract.multiplier = spec.multiplier or ""
    contract.localSymbol = spec.local_symbol or ""
    contract.primaryExchange = spec.primary_exchange or ""
    contract.tradingClass = spec.trading_class or ""
    if spec.combo_legs:
        legs = []
        for leg_spec in spec.combo_legs:
            leg = ComboLeg()
            leg.conId = leg_spec.con_id
            leg.ratio = leg_spec.ratio
            leg.action = leg_spec.action
            leg.exchange = leg_spec.exchange
            legs.append(leg)
        contract.comboLegs = legs
    return contract


def to_ib_order(command: PlaceOrder | ModifyOrder) -> Order:
    spec = command.order
    order = Order()
    order.orderId = command.ib_order_id
    order.action = spec.action
    order.totalQuantity = spec.quantity
    order.orderType = spec.order_type
    if spec.lmt_price is not None:
        order.lmtPrice = spec.lmt_price
    if spec.aux_price is not None:
        order.auxPrice = spec.aux_price
    if spec.trailing_percent is not None:
        order.trailingPercent = spec.trailing_percent
    order.tif = spec.tif
    order.account = spec.account or ""
    if spec.parent_id is not None:
        order.parentId = spec.parent_id
    order.transmit = spec.transmit
    order.ocaGroup = spec.oca_group or ""
    order.goodTillDate = spec.good_till_date or ""
    order.outsideRth = spec.outside_rth
    order.whatIf = spec.what_if
    # Our id travels as orderRef so fills map back to the order after any restart (STYLE).
    order.orderRef = command.client_order_id
    # 9.81 sends these by default as true; current gateways reject orders carrying them (10268).
    order.eTradeOnly = False
    order.firmQuoteOnly = False
    return order


def _cancel_extra(method: Any) -> list[Any]:
    """The extra argument a cancel takes in this ibapi: none (9.81), a manual-cancel time string
    (10.1x-10.2x) or an `OrderCancel` (10.3x and later)."""
    params = list(inspect.signature(method).parameters)
    if not params or params[-1] in ("orderId",):
        return []
    if params[-1] == "orderCancel":
        from ibapi.order_cancel import OrderCancel  # only in 10.3x+

        return [OrderCancel()]
    return [""]


def cancel_order(client: Any, order_id: int) -> None:
    """`cancelOrder` across ibapi versions."""
    client.cancelOrder(order_id, *_cancel_extra(client.cancelOrder))


def global_cancel(client: Any) -> None:
    """`reqGlobalCancel` across ibapi versions."""
    client.reqGlobalCancel(*_cancel_extra(client.reqGlobalCancel))
