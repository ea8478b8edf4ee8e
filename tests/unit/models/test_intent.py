"""The intent model: every field, its normalization, and the reject code of each way to be bad."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from models.instruments import OptionContract, StockContract
from models.intent import (
    DEFAULT_CHECKS,
    IntakeContext,
    Intent,
    RiskTag,
    Side,
    TimeInForce,
    Urgency,
    validate_intent,
)
from models.rejects import Reject, RejectReason
from models.strategies import STRATEGIES, ExpiryPolicy, get_strategy

TODAY = date(2025, 11, 21)


def option_intent(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "signal_id": "sig-1",
        "strategy": "0DTE_Scalp",
        "instrument": "SPY   251121C00450000",
        "side": "BUY",
        "quantity": 10,
        "urgency": "Immediate",
        "time_in_force": "DAY",
    }
    base.update(changes)
    return base


def stock_intent(**changes: Any) -> dict[str, Any]:
    return option_intent(strategy="Momentum_EQ", instrument="AAPL", **changes)


def admitted(payload: object) -> Intent:
    result = validate_intent(payload, today=TODAY)
    assert isinstance(result, Intent), result
    return result


def refused(payload: object) -> Reject:
    result = validate_intent(payload, today=TODAY)
    assert isinstance(result, Reject), result
    return result


def test_minimal_option_intent_is_admitted_with_strategy_defaults() -> None:
    intent = admitted(option_intent())
    assert isinstance(intent.instrument, OptionContract)
    assert intent.quantity == Decimal("10")
    assert intent.side is Side.BUY and intent.urgency is Urgency.IMMEDIATE
    assert intent.time_in_force is TimeInForce.DAY
    assert intent.expiry_policy is ExpiryPolicy.CLOSE_BEFORE_MARKET_CLOSE
    assert intent.max_slippage_bps == STRATEGIES["0DTE_Scalp"].default_max_slippage_bps
    assert intent.risk_tags == () and intent.target_price is None


def test_full_intent_keeps_every_field() -> None:
    intent = admitted(
        stock_intent(
            side="SELL_SHORT",
            quantity="250",
            urgency="Passive",
            time_in_force="GTD",
            good_till="2025-11-24T16:00:00-05:00",
            max_slippage_bps="12.5",
            target_price="187.25",
            expiry_policy="close_before_market_close",
            risk_tags=["hedged", "earnings", "hedged"],
            created_at="2025-11-21T14:30:00Z",
        )
    )
    assert isinstance(intent.instrument, StockContract)
    assert intent.good_till == datetime(2025, 11, 24, 21, 0, tzinfo=UTC)
    assert intent.created_at == datetime(2025, 11, 21, 14, 30, tzinfo=UTC)
    assert intent.max_slippage_bps == Decimal("12.5")
    assert intent.target_price == Decimal("187.25")
    assert intent.risk_tags == (RiskTag.EARNINGS, RiskTag.HEDGED)
    assert intent.wire_action == "SELL"


@pytest.mark.parametrize(
    ("side", "action"),
    [("BUY", "BUY"), ("BUY_TO_COVER", "BUY"), ("SELL", "SELL"), ("SELL_SHORT", "SELL")],
)
def test_side_maps_to_ib_wire_action(side: str, action: str) -> None:
    assert admitted(option_intent(side=side)).wire_action == action


def test_payload_is_json_with_decimal_strings_and_round_trips() -> None:
    intent = admitted(option_intent(quantity="10.000", target_price=Decimal("1.50")))
    payload = intent.to_payload()
    assert payload["quantity"] == "10"
    assert payload["target_price"] == "1.5"
    assert payload["instrument"] == "SPY   251121C00450000"
    assert json.loads(json.dumps(payload)) == payload
    assert Intent.model_validate(payload) == intent


def test_compact_and_padded_occ_give_the_same_normalized_intent() -> None:
    padded = admitted(option_intent()).to_payload()
    compact = admitted(option_intent(instrument="SPY251121C00450000")).to_payload()
    assert padded == compact


def test_json_text_numbers_decode_exactly() -> None:
    text = json.dumps(option_intent(target_price="x")).replace('"x"', "0.1")
    assert admitted(text).target_price == Decimal("0.1")
    assert admitted(text.encode()).target_price == Decimal("0.1")


def test_float_prices_convert_through_their_shortest_text() -> None:
    assert admitted(option_intent(target_price=0.1)).target_price == Decimal("0.1")


def test_exponent_quantity_that_is_whole_is_admitted() -> None:
    assert admitted(option_intent(quantity="1E+2")).to_payload()["quantity"] == "100"


def test_option_expiring_today_is_admitted_and_yesterdays_is_not() -> None:
    assert admitted(option_intent(instrument="SPY   251121P00450000"))
    reject = refused(option_intent(instrument="SPY   251120P00450000"))
    assert reject.reason is RejectReason.OPTION_EXPIRED
    assert reject.signal_id == "sig-1" and reject.field == "instrument"


PAYLOAD_CASES: list[tuple[object, RejectReason]] = [
    ("{not json", RejectReason.MALFORMED_JSON),
    (b"\xff\xfe", RejectReason.MALFORMED_JSON),
    ("", RejectReason.MALFORMED_JSON),
    ("[1, 2]", RejectReason.NOT_AN_OBJECT),
    (42, RejectReason.NOT_AN_OBJECT),
    (None, RejectReason.NOT_AN_OBJECT),
    ("x" * 70_000, RejectReason.PAYLOAD_TOO_LARGE),
    ("[" * 100_000, RejectReason.PAYLOAD_TOO_LARGE),
    ("[" * 60_000, RejectReason.MALFORMED_JSON),
    ({1: "x", **option_intent()}, RejectReason.UNKNOWN_FIELD),
]


@pytest.mark.parametrize(("payload", "reason"), PAYLOAD_CASES)
def test_bad_payloads_are_refused_with_their_code(payload: object, reason: RejectReason) -> None:
    reject = refused(payload)
    assert reject.reason is reason
    assert reject.message


FIELD_CASES: list[tuple[dict[str, Any], RejectReason, str | None]] = [
    ({"signal_id": None}, RejectReason.INVALID_TYPE, "signal_id"),
    ({"signal_id": ""}, RejectReason.INVALID_SIGNAL_ID, "signal_id"),
    ({"signal_id": "has space"}, RejectReason.INVALID_SIGNAL_ID, "signal_id"),
    ({"signal_id": "x" * 129}, RejectReason.INVALID_SIGNAL_ID, "signal_id"),
    ({"strategy": "YOLO"}, RejectReason.UNKNOWN_STRATEGY, "strategy"),
    ({"strategy": "0dte_scalp"}, RejectReason.UNKNOWN_STRATEGY, "strategy"),
    ({"strategy": 7}, RejectReason.INVALID_TYPE, "strategy"),
    ({"instrument": "SPY 251121C00450000"}, RejectReason.MALFORMED_OCC_SYMBOL, "instrument"),
    ({"instrument": "spy"}, RejectReason.INVALID_INSTRUMENT, "instrument"),
    ({"instrument": ["SPY"]}, RejectReason.INVALID_TYPE, "instrument"),
    ({"side": "buy"}, RejectReason.UNKNOWN_SIDE, "side"),
    ({"side": 1}, RejectReason.INVALID_TYPE, "side"),
    ({"quantity": 0}, RejectReason.INVALID_QUANTITY, "quantity"),
    ({"quantity": -5}, RejectReason.INVALID_QUANTITY, "quantity"),
    ({"quantity": "2.5"}, RejectReason.FRACTIONAL_QUANTITY, "quantity"),
    ({"quantity": 1e-9}, RejectReason.FRACTIONAL_QUANTITY, "quantity"),
    ({"quantity": float("nan")}, RejectReason.NON_FINITE_NUMBER, "quantity"),
    ({"quantity": float("inf")}, RejectReason.NON_FINITE_NUMBER, "quantity"),
    ({"quantity": "Infinity"}, RejectReason.NON_FINITE_NUMBER, "quantity"),
    ({"quantity": Decimal("NaN")}, RejectReason.NON_FINITE_NUMBER, "quantity"),
    ({"quantity": 10**400}, RejectReason.NUMBER_OUT_OF_RANGE, "quantity"),
    ({"quantity": "1e999999"}, RejectReason.NUMBER_OUT_OF_RANGE, "quantity"),
    ({"quantity": "ten"}, RejectReason.INVALID_NUMBER, "quantity"),
    ({"quantity": "1_000"}, RejectReason.INVALID_NUMBER, "quantity"),
    ({"quantity": " 10"}, RejectReason.INVALID_NUMBER, "quantity"),
    ({"quantity": True}, RejectReason.INVALID_TYPE, "quantity"),
    ({"quantity": [10]}, RejectReason.INVALID_TYPE, "quantity"),
    ({"urgency": "ASAP"}, RejectReason.UNKNOWN_URGENCY, "urgency"),
    ({"time_in_force": "GTX"}, RejectReason.UNKNOWN_TIME_IN_FORCE, "time_in_force"),
    ({"time_in_force": "GTD"}, RejectReason.GTD_WITHOUT_DATE, None),
    ({"good_till": "2025-11-24T16:00:00Z"}, RejectReason.GOOD_TILL_NOT_ALLOWED, None),
    (
        {"time_in_force": "GTD", "good_till": "2025-11-24T16:00:00"},
        RejectReason.INVALID_TIMESTAMP,
        "good_till",
    ),
    (
        {"time_in_force": "GTD", "good_till": "2025-11-24"},
        RejectReason.INVALID_TIMESTAMP,
        "good_till",
    ),
    (
        {"time_in_force": "GTD", "good_till": "next tuesday"},
        RejectReason.INVALID_TIMESTAMP,
        "good_till",
    ),
    (
        {"time_in_force": "GTD", "good_till": "2025-11-20T16:00:00Z"},
        RejectReason.GOOD_TILL_IN_PAST,
        "good_till",
    ),
    ({"max_slippage_bps": -1}, RejectReason.INVALID_SLIPPAGE, "max_slippage_bps"),
    ({"max_slippage_bps": "0.00001"}, RejectReason.INVALID_SLIPPAGE, "max_slippage_bps"),
    ({"max_slippage_bps": 10001}, RejectReason.NUMBER_OUT_OF_RANGE, "max_slippage_bps"),
    ({"target_price": 0}, RejectReason.INVALID_PRICE, "target_price"),
    ({"target_price": "-1.5"}, RejectReason.INVALID_PRICE, "target_price"),
    ({"target_price": "1e-12"}, RejectReason.INVALID_PRICE, "target_price"),
    ({"target_price": "1e7"}, RejectReason.NUMBER_OUT_OF_RANGE, "target_price"),
    ({"target_price": "-inf"}, RejectReason.NON_FINITE_NUMBER, "target_price"),
    ({"expiry_policy": "never"}, RejectReason.UNKNOWN_EXPIRY_POLICY, "expiry_policy"),
    ({"risk_tags": ["earnings", "vibes"]}, RejectReason.UNKNOWN_RISK_TAG, "risk_tags"),
    ({"risk_tags": "earnings"}, RejectReason.INVALID_TYPE, "risk_tags"),
    ({"risk_tags": ["earnings"] * 17}, RejectReason.INVALID_VALUE, "risk_tags"),
    ({"created_at": 1732200000}, RejectReason.INVALID_TYPE, "created_at"),
    ({"created_at": "0001-01-01T00:00:00+05:00"}, RejectReason.INVALID_TIMESTAMP, "created_at"),
    ({"con_id": 123}, RejectReason.UNKNOWN_FIELD, "con_id"),
    ({"strategy": "Momentum_EQ"}, RejectReason.STRATEGY_INSTRUMENT_MISMATCH, "instrument"),
]


@pytest.mark.parametrize(("changes", "reason", "field"), FIELD_CASES)
def test_bad_fields_are_refused_with_a_specific_code(
    changes: dict[str, Any], reason: RejectReason, field: str | None
) -> None:
    reject = refused(option_intent(**changes))
    assert (reject.reason, reject.field) == (reason, field), reject.message
    expected_id = "sig-1" if "signal_id" not in changes else ""
    assert reject.signal_id == expected_id


@pytest.mark.parametrize(
    "field", ["signal_id", "strategy", "instrument", "side", "quantity", "urgency", "time_in_force"]
)
def test_each_required_field_missing_is_named(field: str) -> None:
    payload = option_intent()
    del payload[field]
    reject = refused(payload)
    assert (reject.reason, reject.field) == (RejectReason.MISSING_FIELD, field)


def test_hold_to_expiry_is_for_options_only() -> None:
    reject = refused(stock_intent(expiry_policy="hold_to_expiry"))
    assert reject.reason is RejectReason.EXPIRY_POLICY_NOT_APPLICABLE
    assert admitted(option_intent(expiry_policy="hold_to_expiry"))


def test_first_error_decides_deterministically() -> None:
    payload = option_intent(side="NOPE", quantity=-1, zzz=1)
    reasons = {refused(dict(reversed(list(payload.items())))).reason for _ in range(3)}
    assert reasons == {RejectReason.UNKNOWN_SIDE}


def test_messages_with_braces_in_user_data_do_not_break_formatting() -> None:
    reject = refused(option_intent(strategy="{0}{name}"))
    assert reject.reason is RejectReason.UNKNOWN_STRATEGY
    assert "{0}{name}" in reject.message


def test_custom_checks_run_after_the_defaults_and_the_first_reject_wins() -> None:
    seen: list[str] = []

    def unknown_contract(intent: Intent, context: IntakeContext) -> Reject | None:
        seen.append(intent.signal_id)
        return Reject(RejectReason.UNKNOWN_CONTRACT, "not in the contract cache", intent.signal_id)

    result = validate_intent(
        option_intent(), today=TODAY, checks=(*DEFAULT_CHECKS, unknown_contract)
    )
    assert isinstance(result, Reject) and result.reason is RejectReason.UNKNOWN_CONTRACT
    expired = option_intent(instrument="SPY   251120C00450000")
    result = validate_intent(expired, today=TODAY, checks=(*DEFAULT_CHECKS, unknown_contract))
    assert isinstance(result, Reject) and result.reason is RejectReason.OPTION_EXPIRED
    assert seen == ["sig-1"]


def test_registry_holds_the_four_playbooks_of_the_blueprint() -> None:
    assert set(STRATEGIES) == {"0DTE_Scalp", "Spread_Roll", "Momentum_EQ", "Gamma_Rebalance"}
    spec = get_strategy("Gamma_Rebalance")
    assert spec is not None and spec.playbook
    assert get_strategy("gamma_rebalance") is None
    assert len({s.playbook for s in STRATEGIES.values()}) == 4


def test_intent_is_frozen() -> None:
    intent = admitted(option_intent())
    with pytest.raises(ValueError):
        intent.quantity = Decimal(1)  # type: ignore[misc]
