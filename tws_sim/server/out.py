"""The server's calls into the protocol encoders, shaped the way the server holds its data.

`tws_sim.protocol.outgoing` encodes one message per function from wire-level arguments; the
server speaks in quotes, depth rows, trade prints, snapshots and (value, currency) maps. This thin
adapter keeps that translation in one place, so the driver and handlers read as routing logic.
Every function returns the fields of one message for the session's negotiated version `v`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tws_sim.protocol import outgoing as enc
from tws_sim.types import (
    Bar,
    CommissionReport,
    DepthLevel,
    Execution,
    Greeks,
    Instrument,
    OrderSnapshot,
    Quote,
    TradePrinted,
)

if TYPE_CHECKING:
    from tws_sim.market import Catalog

# snapshotPermissions in tickReqParams: 3 = snapshot and regulatory snapshot allowed.
SNAPSHOT_PERMISSIONS = 3
TBT_LAST, TBT_ALL_LAST = 1, 2


def error(req_id: int, code: int, message: str, v: int) -> list[str]:
    """error (4): an order's errors carry its order id as reqId, notices carry -1."""
    return enc.encode_error(req_id, code, message, v)


def next_valid_id(order_id: int, v: int) -> list[str]:
    return enc.encode_next_valid_id(order_id, v)


def managed_accounts(account: str, v: int) -> list[str]:
    """The server holds one account; the message carries a comma-separated list of them."""
    return enc.encode_managed_accounts([account], v)


def tick_price(req_id: int, tick_type: int, price: Decimal, size: Decimal, v: int) -> list[str]:
    return enc.encode_tick_price(req_id, tick_type, price, size, v)


def tick_size(req_id: int, tick_type: int, size: Decimal, v: int) -> list[str]:
    return enc.encode_tick_size(req_id, tick_type, size, v)


def tick_generic(req_id: int, tick_type: int, value: int, v: int) -> list[str]:
    return enc.encode_tick_generic(req_id, tick_type, value, v)


def tick_option(
    req_id: int, tick_type: int, greeks: Greeks, price: Decimal | None, v: int
) -> list[str]:
    """Bid/ask computations carry the bid/ask as optPrice; the model one the model price."""
    if price is not None and price > 0:
        greeks = replace(greeks, opt_price=float(price))
    return enc.encode_tick_option_computation(req_id, tick_type, greeks, v)


def tick_req_params(req_id: int, min_tick: Decimal, v: int) -> list[str]:
    return enc.encode_tick_req_params(req_id, min_tick, "", SNAPSHOT_PERMISSIONS, v)


def market_data_type(req_id: int, data_type: int, v: int) -> list[str]:
    return enc.encode_market_data_type(req_id, data_type, v)


def tick_snapshot_end(req_id: int, v: int) -> list[str]:
    return enc.encode_tick_snapshot_end(req_id, v)


def tbt_bid_ask(req_id: int, q: Quote, v: int) -> list[str]:
    return enc.encode_tick_by_tick_bid_ask(req_id, q.ts, q.bid, q.ask, q.bid_size, q.ask_size, v)


def tbt_mid_point(req_id: int, q: Quote, v: int) -> list[str]:
    return enc.encode_tick_by_tick_mid_point(req_id, q.ts, q.mid, v)


def tbt_last(req_id: int, ev: TradePrinted, all_last: bool, v: int) -> list[str]:
    kind = TBT_ALL_LAST if all_last else TBT_LAST
    return enc.encode_tick_by_tick_last(req_id, kind, ev.ts, ev.price, ev.size, ev.exchange, v)


def depth_l2(req_id: int, row: DepthLevel, operation: int, v: int) -> list[str]:
    return enc.encode_update_mkt_depth_l2(
        req_id, row.position, row.market_maker, operation, row.side, row.price, row.size, False, v
    )


def realtime_bar(req_id: int, bar: Bar, v: int) -> list[str]:
    return enc.encode_realtime_bar(req_id, bar, v)


def historical_data(
    req_id: int,
    bars: list[Bar],
    start: datetime,
    end: datetime,
    format_date: int,
    bar_s: int,
    v: int,
) -> list[str]:
    return enc.encode_historical_data(
        req_id, start, end, bars, v, format_date=format_date or 1, daily=bar_s >= 86_400
    )


def historical_data_update(
    req_id: int, bar: Bar, format_date: int, daily: bool, v: int
) -> list[str]:
    return enc.encode_historical_data_update(
        req_id, bar, v, format_date=format_date or 1, daily=daily
    )


def current_time(now: datetime, v: int) -> list[str]:
    return enc.encode_current_time(now, v)


def contract_data(req_id: int, inst: Instrument, catalog: Catalog, v: int) -> list[str]:
    trading, liquid, tz = catalog.trading_hours(inst.con_id)
    return enc.encode_contract_data(
        req_id, inst, v, trading_hours=trading, liquid_hours=liquid, time_zone_id=tz or "US/Eastern"
    )


def contract_data_end(req_id: int, v: int) -> list[str]:
    return enc.encode_contract_data_end(req_id, v)


def sec_def_opt_params(
    req_id: int,
    exchange: str,
    con_id: int,
    trading_class: str,
    multiplier: str,
    expirations: tuple[str, ...],
    strikes: tuple[Decimal, ...],
    v: int,
) -> list[str]:
    return enc.encode_sec_def_opt_params(
        req_id, exchange, con_id, trading_class, multiplier, expirations, strikes, v
    )


def sec_def_opt_params_end(req_id: int, v: int) -> list[str]:
    return enc.encode_sec_def_opt_params_end(req_id, v)


def open_order(snap: OrderSnapshot, inst: Instrument | None, v: int) -> list[str]:
    return enc.encode_open_order(snap, v, inst)


def order_status(snap: OrderSnapshot, v: int) -> list[str]:
    return enc.encode_order_status(snap, v)


def open_order_end(v: int) -> list[str]:
    return enc.encode_open_order_end(v)


def completed_order(snap: OrderSnapshot, inst: Instrument | None, v: int) -> list[str]:
    return enc.encode_completed_order(snap, v, inst)


def completed_orders_end(v: int) -> list[str]:
    return enc.encode_completed_orders_end(v)


def exec_details(req_id: int, ex: Execution, inst: Instrument | None, v: int) -> list[str]:
    return enc.encode_exec_details(req_id, ex, v, inst)


def exec_details_end(req_id: int, v: int) -> list[str]:
    return enc.encode_exec_details_end(req_id, v)


def commission_report(report: CommissionReport, v: int) -> list[str]:
    return enc.encode_commission_report(report, v)


def position(account: str, inst: Instrument, qty: Decimal, avg_cost: Decimal, v: int) -> list[str]:
    return enc.encode_position(account, inst, qty, avg_cost, v)


def position_end(v: int) -> list[str]:
    return enc.encode_position_end(v)


def position_multi(
    req_id: int, account: str, model: str, inst: Instrument, qty: Decimal, avg: Decimal, v: int
) -> list[str]:
    return enc.encode_position_multi(req_id, account, model, inst, qty, avg, v)


def position_multi_end(req_id: int, v: int) -> list[str]:
    return enc.encode_position_multi_end(req_id, v)


def account_summary(
    req_id: int, account: str, tag: str, value: str, currency: str, v: int
) -> list[str]:
    return enc.encode_account_summary(req_id, account, tag, value, currency, v)


def account_summary_end(req_id: int, v: int) -> list[str]:
    return enc.encode_account_summary_end(req_id, v)


def update_account_value(tag: str, value: str, currency: str, account: str, v: int) -> list[str]:
    return enc.encode_update_account_value(tag, value, currency, account, v)


def update_portfolio(
    account: str,
    inst: Instrument,
    qty: Decimal,
    price: Decimal,
    value: Decimal,
    avg_cost: Decimal,
    unrealized: Decimal,
    realized: Decimal,
    v: int,
) -> list[str]:
    return enc.encode_update_portfolio(
        inst, qty, price, value, avg_cost, unrealized, realized, account, v
    )


def update_account_time(now: datetime, v: int) -> list[str]:
    return enc.encode_update_account_time(now, v)


def account_download_end(account: str, v: int) -> list[str]:
    return enc.encode_account_download_end(account, v)


def account_update_multi(
    req_id: int, account: str, model: str, tag: str, value: str, currency: str, v: int
) -> list[str]:
    return enc.encode_account_update_multi(req_id, account, model, tag, value, currency, v)


def account_update_multi_end(req_id: int, v: int) -> list[str]:
    return enc.encode_account_update_multi_end(req_id, v)


def pnl(req_id: int, values: tuple[Decimal, ...], v: int) -> list[str]:
    daily, unrealized, realized = values
    return enc.encode_pnl(req_id, daily, unrealized, realized, v)


def pnl_single(req_id: int, values: tuple[Decimal, ...], v: int) -> list[str]:
    pos, daily, unrealized, realized, value = values
    return enc.encode_pnl_single(req_id, pos, daily, unrealized, realized, value, v)
