"""The few messages the server writes for the connection life cycle itself.

The protocol part (`tws_sim.protocol`) owns the codec (framing, requests, callbacks). Before a
client is registered the server must still say nextValidId / managedAccounts / 326 / farm notices;
these three small encoders keep the connection life cycle independent of the request codec.
"""

from __future__ import annotations

from tws_sim.protocol.framing import MIN_SERVER_VERSION as MIN_SERVER_VERSION

START_API = "71"

# Outgoing message ids the server writes itself before/without the request codec.
OUT_ERROR = "4"
OUT_NEXT_VALID_ID = "9"
OUT_MANAGED_ACCOUNTS = "15"


def error_fields(req_id: int, code: int, message: str, server_version: int) -> list[str]:
    """error (4): version 2, reqId, code, text; advancedOrderRejectJson from v166."""
    fields = [OUT_ERROR, "2", str(req_id), str(code), message]
    if server_version >= 166:
        fields.append("")
    return fields


def next_valid_id_fields(order_id: int) -> list[str]:
    return [OUT_NEXT_VALID_ID, "1", str(order_id)]


def managed_accounts_fields(accounts: str) -> list[str]:
    return [OUT_MANAGED_ACCOUNTS, "1", accounts]
