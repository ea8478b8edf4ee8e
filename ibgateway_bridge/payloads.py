"""The JSON payloads the bridge hands to Celery tasks: raw IB fields, snake_case, exact types.

One builder per callback. Each takes the ibapi objects (9.81 or 10.x: only attributes are read, so
either package's classes work) plus the receive time, and returns a dict of JSON primitives:
Decimal as `str`, times as ISO-8601 UTC `str`, unset values as `None`. The ledger tasks
(`tasks.ledger.record_*`) validate these shapes; the key names are the contract between the two.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ibgateway_bridge.translate import (
    TranslationError,
    TwsZone,
    decimal_str,
    exec_action,
    iso_utc,
    parse_execution_time,
    parse_ib_time,
    to_decimal,
    to_int,
    to_str,
)

Payload = dict[str, Any]

# Task names the bridge publishes to, sent by name so the bridge never imports the ledger.
TASK_RECORD_EXECUTION = "tasks.ledger.record_execution"
TASK_RECORD_COMMISSION = "tasks.ledger.record_commission"
TASK_RECORD_ORDER_STATUS = "tasks.ledger.record_order_status"
TASK_RECORD_OPEN_ORDER = "tasks.ledger.record_open_order"
TASK_RECORD_ORDER_ERROR = "tasks.ledger.record_order_error"
TASK_RECORD_ORDER_REPLACED = "tasks.ledger.record_order_replaced"
TASK_RECORD_CONTRACT = "tasks.ledger.record_contract"
# Several callbacks in one message: `[{"kind": "execution", "payload": {...}}, ...]`.
TASK_RECORD_BATCH = "tasks.ledger.record_batch"


def _attr(obj: object, name: str, default: object = None) -> Any:
    return getattr(obj, name, default)


def contract_fields(contract: object) -> Payload:
    """The contract part every order/fill payload repeats."""
    return {
        "con_id": to_int(_attr(contract, "conId")) or None,
        "symbol": to_str(_attr(contract, "symbol")),
        "sec_type": to_str(_attr(contract, "secType")),
        "local_symbol": to_str(_attr(contract, "localSymbol")),
        "expiry": to_str(_attr(contract, "lastTradeDateOrContractMonth")),
        "strike": decimal_str(_nonzero(to_decimal(_attr(contract, "strike")))),
        "right": to_str(_attr(contract, "right")),
        "multiplier": to_str(_attr(contract, "multiplier")),
        "exchange": to_str(_attr(contract, "exchange")),
        "primary_exchange": to_str(_attr(contract, "primaryExchange")),
        "currency": to_str(_attr(contract, "currency")),
        "trading_class": to_str(_attr(contract, "tradingClass")),
    }


def _required_text(obj: object, name: str) -> str:
    value = to_str(_attr(obj, name))
    if value is None:
        raise TranslationError(f"MISSING_{name.upper()}", obj)
    return value


def _nonzero(value: Any) -> Any:
    return None if value == 0 else value


def execution_payload(
    req_id: int,
    contract: object,
    execution: object,
    client_id: int,
    received_at: datetime,
    server_zone: TwsZone | None = None,
) -> Payload:
    """execDetails → `tasks.ledger.record_execution` payload; idempotency key: `exec_id`.

    `req_id` is -1 for a live fill and the request id for a `reqExecutions` reply (recovery).
    `server_zone` is the gateway's zone from the connection handshake: a zone-less execution
    time is TWS local time in it. `time_zone_source` says where the zone came from ("named" in
    the time itself, "session" from the handshake, "unknown"); unknown leaves `time` None (the
    wall-clock time stays in `time_raw`) rather than guessing New York.
    """
    exec_id = _required_text(execution, "execId")
    when, zone_source, zone_name = parse_execution_time(_attr(execution, "time"), server_zone)
    side = str(_attr(execution, "side", ""))
    exec_client = to_int(_attr(execution, "clientId"))
    return {
        "exec_id": exec_id,
        "req_id": req_id,
        "ib_order_id": to_int(_attr(execution, "orderId")),
        "client_id": exec_client if exec_client is not None else client_id,
        "perm_id": to_int(_attr(execution, "permId")),
        **contract_fields(contract),
        "side": side,
        "action": exec_action(side),
        "shares": decimal_str(to_decimal(_attr(execution, "shares"))),
        "price": decimal_str(to_decimal(_attr(execution, "price"))),
        "cum_qty": decimal_str(to_decimal(_attr(execution, "cumQty"))),
        "avg_price": decimal_str(to_decimal(_attr(execution, "avgPrice"))),
        "exec_exchange": to_str(_attr(execution, "exchange")),
        "account": to_str(_attr(execution, "acctNumber")),
        "order_ref": to_str(_attr(execution, "orderRef")),
        "liquidation": to_int(_attr(execution, "liquidation")),
        "last_liquidity": to_int(_attr(execution, "lastLiquidity")),
        "time": iso_utc(when),
        "time_raw": to_str(_attr(execution, "time")),
        "time_zone": zone_name,
        "time_zone_source": zone_source,
        "received_at": iso_utc(received_at),
    }


def _state_commission(order_state: object) -> object:
    """OrderState's commission: `commission` in ibapi 9.81, `commissionAndFees` in 10.x."""
    amount = _attr(order_state, "commission")
    return _attr(order_state, "commissionAndFees") if amount is None else amount


def commission_payload(report: object, client_id: int, received_at: datetime) -> Payload:
    """commissionReport (10.x: commissionAndFeesReport) → `record_commission`; key `exec_id`."""
    amount = _attr(report, "commission")
    if amount is None:
        amount = _attr(report, "commissionAndFees")
    return {
        "exec_id": _required_text(report, "execId"),
        "client_id": client_id,
        "commission": decimal_str(to_decimal(amount)),
        "currency": to_str(_attr(report, "currency")),
        "realized_pnl": decimal_str(to_decimal(_attr(report, "realizedPNL"))),
        "yield": decimal_str(to_decimal(_attr(report, "yield_"))),
        "yield_redemption_date": to_int(_attr(report, "yieldRedemptionDate")) or None,
        "received_at": iso_utc(received_at),
    }


def order_status_payload(
    order_id: int,
    status: str,
    filled: object,
    remaining: object,
    avg_fill_price: object,
    perm_id: object,
    parent_id: object,
    last_fill_price: object,
    client_id: int,
    why_held: str,
    mkt_cap_price: object,
    received_at: datetime,
) -> Payload:
    """orderStatus → `record_order_status`; IB repeats these; the ledger makes repeats no-ops."""
    return {
        "ib_order_id": order_id,
        "client_id": to_int(client_id),
        "perm_id": to_int(perm_id) or None,
        "ib_status": status,
        "filled": decimal_str(to_decimal(filled)),
        "remaining": decimal_str(to_decimal(remaining)),
        "avg_fill_price": decimal_str(to_decimal(avg_fill_price)),
        "last_fill_price": decimal_str(to_decimal(last_fill_price)),
        "parent_id": to_int(parent_id) or None,
        "why_held": to_str(why_held),
        "mkt_cap_price": decimal_str(to_decimal(mkt_cap_price)),
        "received_at": iso_utc(received_at),
    }


def open_order_payload(
    order_id: int, contract: object, order: object, order_state: object, received_at: datetime
) -> Payload:
    """openOrder → `record_open_order`: the venue's view of one order (also the restart rebuild)."""
    ib_status = str(_attr(order_state, "status", ""))
    return {
        "ib_order_id": order_id,
        "client_id": to_int(_attr(order, "clientId")),
        "perm_id": to_int(_attr(order, "permId")) or None,
        **contract_fields(contract),
        "action": to_str(_attr(order, "action")),
        "total_quantity": decimal_str(to_decimal(_attr(order, "totalQuantity"))),
        "order_type": to_str(_attr(order, "orderType")),
        "lmt_price": decimal_str(to_decimal(_attr(order, "lmtPrice"))),
        "aux_price": decimal_str(to_decimal(_attr(order, "auxPrice"))),
        "tif": to_str(_attr(order, "tif")),
        "account": to_str(_attr(order, "account")),
        "order_ref": to_str(_attr(order, "orderRef")),
        "parent_id": to_int(_attr(order, "parentId")) or None,
        "oca_group": to_str(_attr(order, "ocaGroup")),
        "transmit": bool(_attr(order, "transmit", True)),
        "filled_quantity": decimal_str(to_decimal(_attr(order, "filledQuantity"))),
        "ib_status": ib_status,
        "commission": decimal_str(to_decimal(_state_commission(order_state))),
        "warning_text": to_str(_attr(order_state, "warningText")),
        "received_at": iso_utc(received_at),
    }


def error_payload(
    req_id: int,
    code: int,
    message: str,
    advanced_reject: str | None,
    error_time: object,
    client_id: int,
    received_at: datetime,
) -> Payload:
    """error → `record_order_error` when `req_id` is an order id (rejects, cancel confirmations)."""
    return {
        "ib_order_id": req_id,
        "client_id": client_id,
        "code": code,
        "message": message,
        "advanced_reject": to_str(advanced_reject),
        "error_time": iso_utc(parse_ib_time(error_time)) if error_time else None,
        "received_at": iso_utc(received_at),
    }


def contract_details_payload(details: object, received_at: datetime) -> Payload:
    """contractDetails → the contract cache (Redis) and `record_contract` (ledger `contracts`)."""
    contract = _attr(details, "contract")
    return {
        **contract_fields(contract),
        "long_name": to_str(_attr(details, "longName")),
        "min_tick": decimal_str(to_decimal(_attr(details, "minTick"))),
        "market_name": to_str(_attr(details, "marketName")),
        "order_types": to_str(_attr(details, "orderTypes")),
        "valid_exchanges": to_str(_attr(details, "validExchanges")),
        "time_zone_id": to_str(_attr(details, "timeZoneId")),
        "trading_hours": to_str(_attr(details, "tradingHours")),
        "liquid_hours": to_str(_attr(details, "liquidHours")),
        "under_con_id": to_int(_attr(details, "underConId")) or None,
        "price_magnifier": to_int(_attr(details, "priceMagnifier")),
        "received_at": iso_utc(received_at),
    }
