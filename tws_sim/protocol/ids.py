"""Message ids of IB's socket protocol, named.

`In` are requests a client sends to the server (IB's "outgoing" from the client's side); `Out` are
messages the server sends to the client. Kept as plain int constants (not IntEnum members) on the
hot path: encoders put precomputed strings of them into frames, and the request decoder looks them
up in a dict.
"""

from __future__ import annotations

from typing import Final


class In:
    """Request ids (client → server)."""

    REQ_MKT_DATA: Final = 1
    CANCEL_MKT_DATA: Final = 2
    PLACE_ORDER: Final = 3
    CANCEL_ORDER: Final = 4
    REQ_OPEN_ORDERS: Final = 5
    REQ_ACCT_DATA: Final = 6
    REQ_EXECUTIONS: Final = 7
    REQ_IDS: Final = 8
    REQ_CONTRACT_DATA: Final = 9
    REQ_MKT_DEPTH: Final = 10
    CANCEL_MKT_DEPTH: Final = 11
    REQ_NEWS_BULLETINS: Final = 12
    CANCEL_NEWS_BULLETINS: Final = 13
    SET_SERVER_LOGLEVEL: Final = 14
    REQ_AUTO_OPEN_ORDERS: Final = 15
    REQ_ALL_OPEN_ORDERS: Final = 16
    REQ_MANAGED_ACCTS: Final = 17
    REQ_FA: Final = 18
    REPLACE_FA: Final = 19
    REQ_HISTORICAL_DATA: Final = 20
    EXERCISE_OPTIONS: Final = 21
    REQ_SCANNER_SUBSCRIPTION: Final = 22
    CANCEL_SCANNER_SUBSCRIPTION: Final = 23
    REQ_SCANNER_PARAMETERS: Final = 24
    CANCEL_HISTORICAL_DATA: Final = 25
    REQ_CURRENT_TIME: Final = 49
    REQ_REAL_TIME_BARS: Final = 50
    CANCEL_REAL_TIME_BARS: Final = 51
    REQ_FUNDAMENTAL_DATA: Final = 52
    CANCEL_FUNDAMENTAL_DATA: Final = 53
    REQ_CALC_IMPLIED_VOLAT: Final = 54
    REQ_CALC_OPTION_PRICE: Final = 55
    CANCEL_CALC_IMPLIED_VOLAT: Final = 56
    CANCEL_CALC_OPTION_PRICE: Final = 57
    REQ_GLOBAL_CANCEL: Final = 58
    REQ_MARKET_DATA_TYPE: Final = 59
    REQ_POSITIONS: Final = 61
    REQ_ACCOUNT_SUMMARY: Final = 62
    CANCEL_ACCOUNT_SUMMARY: Final = 63
    CANCEL_POSITIONS: Final = 64
    VERIFY_REQUEST: Final = 65
    VERIFY_MESSAGE: Final = 66
    QUERY_DISPLAY_GROUPS: Final = 67
    SUBSCRIBE_TO_GROUP_EVENTS: Final = 68
    UPDATE_DISPLAY_GROUP: Final = 69
    UNSUBSCRIBE_FROM_GROUP_EVENTS: Final = 70
    START_API: Final = 71
    VERIFY_AND_AUTH_REQUEST: Final = 72
    VERIFY_AND_AUTH_MESSAGE: Final = 73
    REQ_POSITIONS_MULTI: Final = 74
    CANCEL_POSITIONS_MULTI: Final = 75
    REQ_ACCOUNT_UPDATES_MULTI: Final = 76
    CANCEL_ACCOUNT_UPDATES_MULTI: Final = 77
    REQ_SEC_DEF_OPT_PARAMS: Final = 78
    REQ_SOFT_DOLLAR_TIERS: Final = 79
    REQ_FAMILY_CODES: Final = 80
    REQ_MATCHING_SYMBOLS: Final = 81
    REQ_MKT_DEPTH_EXCHANGES: Final = 82
    REQ_SMART_COMPONENTS: Final = 83
    REQ_NEWS_ARTICLE: Final = 84
    REQ_NEWS_PROVIDERS: Final = 85
    REQ_HISTORICAL_NEWS: Final = 86
    REQ_HEAD_TIMESTAMP: Final = 87
    REQ_HISTOGRAM_DATA: Final = 88
    CANCEL_HISTOGRAM_DATA: Final = 89
    CANCEL_HEAD_TIMESTAMP: Final = 90
    REQ_MARKET_RULE: Final = 91
    REQ_PNL: Final = 92
    CANCEL_PNL: Final = 93
    REQ_PNL_SINGLE: Final = 94
    CANCEL_PNL_SINGLE: Final = 95
    REQ_HISTORICAL_TICKS: Final = 96
    REQ_TICK_BY_TICK_DATA: Final = 97
    CANCEL_TICK_BY_TICK_DATA: Final = 98
    REQ_COMPLETED_ORDERS: Final = 99
    REQ_WSH_META_DATA: Final = 100
    CANCEL_WSH_META_DATA: Final = 101
    REQ_WSH_EVENT_DATA: Final = 102
    CANCEL_WSH_EVENT_DATA: Final = 103
    REQ_USER_INFO: Final = 104


class Out:
    """Message ids (server → client)."""

    TICK_PRICE: Final = 1
    TICK_SIZE: Final = 2
    ORDER_STATUS: Final = 3
    ERR_MSG: Final = 4
    OPEN_ORDER: Final = 5
    ACCT_VALUE: Final = 6
    PORTFOLIO_VALUE: Final = 7
    ACCT_UPDATE_TIME: Final = 8
    NEXT_VALID_ID: Final = 9
    CONTRACT_DATA: Final = 10
    EXECUTION_DATA: Final = 11
    MARKET_DEPTH: Final = 12
    MARKET_DEPTH_L2: Final = 13
    NEWS_BULLETINS: Final = 14
    MANAGED_ACCTS: Final = 15
    RECEIVE_FA: Final = 16
    HISTORICAL_DATA: Final = 17
    BOND_CONTRACT_DATA: Final = 18
    SCANNER_PARAMETERS: Final = 19
    SCANNER_DATA: Final = 20
    TICK_OPTION_COMPUTATION: Final = 21
    TICK_GENERIC: Final = 45
    TICK_STRING: Final = 46
    TICK_EFP: Final = 47
    CURRENT_TIME: Final = 49
    REAL_TIME_BARS: Final = 50
    FUNDAMENTAL_DATA: Final = 51
    CONTRACT_DATA_END: Final = 52
    OPEN_ORDER_END: Final = 53
    ACCT_DOWNLOAD_END: Final = 54
    EXECUTION_DATA_END: Final = 55
    DELTA_NEUTRAL_VALIDATION: Final = 56
    TICK_SNAPSHOT_END: Final = 57
    MARKET_DATA_TYPE: Final = 58
    COMMISSION_REPORT: Final = 59
    POSITION_DATA: Final = 61
    POSITION_END: Final = 62
    ACCOUNT_SUMMARY: Final = 63
    ACCOUNT_SUMMARY_END: Final = 64
    POSITION_MULTI: Final = 71
    POSITION_MULTI_END: Final = 72
    ACCOUNT_UPDATE_MULTI: Final = 73
    ACCOUNT_UPDATE_MULTI_END: Final = 74
    SECURITY_DEFINITION_OPTION_PARAMETER: Final = 75
    SECURITY_DEFINITION_OPTION_PARAMETER_END: Final = 76
    TICK_REQ_PARAMS: Final = 81
    HISTORICAL_DATA_UPDATE: Final = 90
    PNL: Final = 94
    PNL_SINGLE: Final = 95
    TICK_BY_TICK: Final = 99
    COMPLETED_ORDER: Final = 101
    COMPLETED_ORDERS_END: Final = 102


#: every request id IB defines up to server version 178 (a known id the sim does not serve is
#: "unsupported", anything else is "unknown").
KNOWN_REQUEST_IDS: Final = frozenset(
    v for k, v in vars(In).items() if not k.startswith("_") and isinstance(v, int)
)


class Tick:
    """Tick type numbers used by tickPrice / tickSize / tickString / tickGeneric / greeks."""

    BID_SIZE: Final = 0
    BID: Final = 1
    ASK: Final = 2
    ASK_SIZE: Final = 3
    LAST: Final = 4
    LAST_SIZE: Final = 5
    HIGH: Final = 6
    LOW: Final = 7
    VOLUME: Final = 8
    CLOSE: Final = 9
    BID_OPTION_COMPUTATION: Final = 10
    ASK_OPTION_COMPUTATION: Final = 11
    LAST_OPTION_COMPUTATION: Final = 12
    MODEL_OPTION: Final = 13
    OPEN: Final = 14
    LAST_EXCH: Final = 84
    LAST_TIMESTAMP: Final = 45
    HALTED: Final = 49
    DELAYED_BID: Final = 66
    DELAYED_ASK: Final = 67
    DELAYED_LAST: Final = 68
    DELAYED_BID_SIZE: Final = 69
    DELAYED_ASK_SIZE: Final = 70
    DELAYED_LAST_SIZE: Final = 71


class TickByTickType:
    """tickType numbers in a tickByTick message (request strings map onto these)."""

    LAST: Final = 1
    ALL_LAST: Final = 2
    BID_ASK: Final = 3
    MID_POINT: Final = 4


#: reqTickByTickData's tickType strings → the number the tickByTick message carries.
TICK_BY_TICK_NAMES: Final = {
    "Last": TickByTickType.LAST,
    "AllLast": TickByTickType.ALL_LAST,
    "BidAsk": TickByTickType.BID_ASK,
    "MidPoint": TickByTickType.MID_POINT,
}
