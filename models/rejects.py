"""Reject reason codes and the `Reject` value: every way an intent can be refused.

The codes are a public contract: producers and dashboards match on them, so a code is never renamed
or reused for another meaning; new ways to fail get new codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RejectReason(StrEnum):
    """Stable reason codes carried by `signals.exec.reject` entries and `intents.reject_reason`."""

    # The payload as a whole.
    MALFORMED_JSON = "MALFORMED_JSON"
    NOT_AN_OBJECT = "NOT_AN_OBJECT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    MISSING_FIELD = "MISSING_FIELD"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    INVALID_TYPE = "INVALID_TYPE"
    INVALID_VALUE = "INVALID_VALUE"
    # Identity and enums.
    INVALID_SIGNAL_ID = "INVALID_SIGNAL_ID"
    UNKNOWN_STRATEGY = "UNKNOWN_STRATEGY"
    UNKNOWN_SIDE = "UNKNOWN_SIDE"
    UNKNOWN_URGENCY = "UNKNOWN_URGENCY"
    UNKNOWN_TIME_IN_FORCE = "UNKNOWN_TIME_IN_FORCE"
    UNKNOWN_EXPIRY_POLICY = "UNKNOWN_EXPIRY_POLICY"
    UNKNOWN_RISK_TAG = "UNKNOWN_RISK_TAG"
    # Numbers.
    INVALID_NUMBER = "INVALID_NUMBER"
    NON_FINITE_NUMBER = "NON_FINITE_NUMBER"
    NUMBER_OUT_OF_RANGE = "NUMBER_OUT_OF_RANGE"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    FRACTIONAL_QUANTITY = "FRACTIONAL_QUANTITY"
    INVALID_PRICE = "INVALID_PRICE"
    INVALID_SLIPPAGE = "INVALID_SLIPPAGE"
    # Instruments.
    INVALID_INSTRUMENT = "INVALID_INSTRUMENT"
    MALFORMED_OCC_SYMBOL = "MALFORMED_OCC_SYMBOL"
    OPTION_EXPIRED = "OPTION_EXPIRED"
    STRATEGY_INSTRUMENT_MISMATCH = "STRATEGY_INSTRUMENT_MISMATCH"
    EXPIRY_POLICY_NOT_APPLICABLE = "EXPIRY_POLICY_NOT_APPLICABLE"
    # Time.
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    GTD_WITHOUT_DATE = "GTD_WITHOUT_DATE"
    GOOD_TILL_NOT_ALLOWED = "GOOD_TILL_NOT_ALLOWED"
    GOOD_TILL_IN_PAST = "GOOD_TILL_IN_PAST"
    # Decided by the intake task against the ledger.
    DUPLICATE_SIGNAL = "DUPLICATE_SIGNAL"
    CONCURRENCY_LIMIT = "CONCURRENCY_LIMIT"
    # `params` its strategy does not know, or values it refuses (the field is named).
    UNKNOWN_PARAM = "UNKNOWN_PARAM"
    INVALID_PARAMS = "INVALID_PARAMS"
    # A combo's `legs` that are not a combo (count, ratio, action, repeats, wrong strategy).
    INVALID_LEGS = "INVALID_LEGS"
    # Reserved for the contract-cache and risk checks that plug into the pipeline later.
    UNKNOWN_CONTRACT = "UNKNOWN_CONTRACT"
    RISK_LIMIT = "RISK_LIMIT"
    # Pre-trade gates of `models.risk` other than a configured limit.
    INSTRUMENT_HALTED = "INSTRUMENT_HALTED"
    MARKET_CLOSED = "MARKET_CLOSED"
    SIDE_POSITION_MISMATCH = "SIDE_POSITION_MISMATCH"
    PRICE_BAND = "PRICE_BAND"
    POSSIBLE_DUPLICATE = "POSSIBLE_DUPLICATE"
    # Account headroom from the risk connection (client 2): too little free, or not knowable.
    MARGIN_HEADROOM = "MARGIN_HEADROOM"
    ACCOUNT_DATA_UNAVAILABLE = "ACCOUNT_DATA_UNAVAILABLE"
    # Trading states (`models.strategy_state`): the strategy (or the desk) is halted / reduce-only.
    STRATEGY_HALTED = "STRATEGY_HALTED"
    STRATEGY_REDUCING = "STRATEGY_REDUCING"


@dataclass(frozen=True, slots=True)
class Reject:
    """Why one submission was refused.

    `signal_id` is "" when the payload did not carry a usable one; `field` names the offending
    field when there is one, so a producer can fix its payload without reading the message.
    """

    reason: RejectReason
    message: str
    signal_id: str = ""
    field: str | None = None

    def with_signal_id(self, signal_id: str) -> Reject:
        """Return a copy naming `signal_id` (rejects are built before the id is known)."""
        return Reject(self.reason, self.message, signal_id, self.field)
