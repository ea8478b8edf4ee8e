"""Properties of intent validation: total on any input, deterministic, and normalization-stable."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.intent import Intent, RiskTag, Side, TimeInForce, Urgency, validate_intent
from models.rejects import Reject, RejectReason
from models.strategies import STRATEGIES, ExpiryPolicy

TODAY = date(2025, 11, 21)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)

FIELDS = [
    "signal_id",
    "strategy",
    "instrument",
    "side",
    "quantity",
    "urgency",
    "time_in_force",
    "good_till",
    "max_slippage_bps",
    "target_price",
    "expiry_policy",
    "risk_tags",
    "created_at",
]


@st.composite
def valid_intents(draw: st.DrawFn) -> dict[str, Any]:
    """Payloads that must be admitted: every field drawn from its legal values."""
    option = draw(st.booleans())
    strategy = draw(
        st.sampled_from(
            ["0DTE_Scalp", "Spread_Roll", "Gamma_Rebalance"]
            if option
            else ["Momentum_EQ", "Gamma_Rebalance"]
        )
    )
    if option:
        root = draw(st.sampled_from(["SPY", "QQQ", "SPXW", "AAPL"]))
        expiry = draw(st.dates(min_value=TODAY, max_value=date(2030, 12, 31)))
        right = draw(st.sampled_from("CP"))
        strike = draw(st.integers(min_value=1, max_value=99_999_999))
        instrument = f"{root:<6}{expiry:%y%m%d}{right}{strike:08d}"
        if draw(st.booleans()):
            instrument = instrument.replace(" ", "")
    else:
        instrument = draw(st.sampled_from(["AAPL", "MSFT", "NVDA", "BRK.B", "TSLA"]))
    tif = draw(st.sampled_from(TimeInForce))
    payload: dict[str, Any] = {
        "signal_id": draw(st.from_regex(r"[A-Za-z0-9_:.\-]{1,40}", fullmatch=True)),
        "strategy": strategy,
        "instrument": instrument,
        "side": draw(st.sampled_from(Side)).value,
        "quantity": draw(
            st.integers(min_value=1, max_value=10_000_000).map(
                lambda n: draw(st.sampled_from([n, str(n), f"{n}.0", Decimal(n)]))
            )
        ),
        "urgency": draw(st.sampled_from(Urgency)).value,
        "time_in_force": tif.value,
    }
    if tif is TimeInForce.GTD:
        payload["good_till"] = f"{draw(st.dates(min_value=TODAY)).isoformat()}T20:00:00+00:00"
    if draw(st.booleans()):
        payload["target_price"] = str(
            draw(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999"), places=2))
        )
    if draw(st.booleans()):
        payload["max_slippage_bps"] = draw(st.integers(min_value=0, max_value=10_000))
    if draw(st.booleans()):
        policies = [ExpiryPolicy.NONE, ExpiryPolicy.CLOSE_BEFORE_MARKET_CLOSE]
        if option:
            policies.append(ExpiryPolicy.HOLD_TO_EXPIRY)
        payload["expiry_policy"] = draw(st.sampled_from(policies)).value
    if draw(st.booleans()):
        payload["risk_tags"] = [
            t.value for t in draw(st.lists(st.sampled_from(RiskTag), max_size=8))
        ]
    return payload


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_values_are_admitted_or_refused_never_raised(payload: object) -> None:
    result = validate_intent(payload, today=TODAY)
    assert isinstance(result, Intent | Reject)
    if isinstance(result, Reject):
        assert isinstance(result.reason, RejectReason) and result.message


@settings(max_examples=200)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_arbitrary_text_never_raises(payload: str | bytes) -> None:
    assert isinstance(validate_intent(payload, today=TODAY), Intent | Reject)


@settings(max_examples=300)
@given(valid_intents())
def test_valid_intents_are_admitted_and_their_payload_is_a_fixed_point(
    payload: dict[str, Any],
) -> None:
    intent = validate_intent(payload, today=TODAY)
    assert isinstance(intent, Intent), intent
    normalized = intent.to_payload()
    again = validate_intent(json.dumps(normalized), today=TODAY)
    assert isinstance(again, Intent) and again.to_payload() == normalized
    assert again == intent
    assert intent.strategy in STRATEGIES


@settings(max_examples=400)
@given(
    valid_intents(),
    st.sampled_from([*FIELDS, "extra_field"]),
    st.sampled_from(["replace", "delete"]),
    json_values,
)
def test_mutated_valid_intents_never_raise_and_refusals_name_a_code(
    payload: dict[str, Any], field: str, how: str, value: object
) -> None:
    mutated = dict(payload)
    if how == "delete":
        mutated.pop(field, None)
    else:
        mutated[field] = value
    first = validate_intent(mutated, today=TODAY)
    assert isinstance(first, Intent | Reject)
    if isinstance(first, Reject):
        assert isinstance(first.reason, RejectReason) and first.message
        assert first.signal_id in ("", mutated.get("signal_id"))
    # Deterministic: the same input gives the same verdict.
    assert validate_intent(mutated, today=TODAY) == first
