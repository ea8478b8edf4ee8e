"""Intake's admission decision (`models.admission`), without a store: each way a submission is
admitted, refused (with its reason code) or answered as a duplicate, and the properties that
make intake idempotent on `signal_id`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.admission import (
    AdmissionOutcome,
    Admit,
    Decision,
    Duplicate,
    Guard,
    Refuse,
    Screened,
    StoredSubmission,
    decide,
    screen,
    unscreenable,
)
from models.intent import Intent, Side, Urgency
from models.rejects import Reject, RejectReason

TODAY = date(2025, 11, 21)
RECEIVED = datetime(2025, 11, 21, 15, 0, tzinfo=UTC)
ROOMY = Guard("0DTE_Scalp", active=0, limit=100)


def intent(signal_id: str = "sig-1", **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "signal_id": signal_id,
        "strategy": "0DTE_Scalp",
        "instrument": "SPY   251121C00450000",
        "side": "BUY",
        "quantity": "10",
        "urgency": "Immediate",
        "time_in_force": "DAY",
        "target_price": "1.25",
    }
    payload.update(changes)
    return payload


def screened(payload: object, today: date = TODAY) -> Screened:
    return screen(payload, today=today)


def stored(decision: Decision, *, row_id: int = 7, status: str | None = None) -> StoredSubmission:
    """The row the store would hold after saving `decision` (what a resubmission finds)."""
    if isinstance(decision, Admit):
        return StoredSubmission(
            id=row_id,
            signal_id=decision.intent.signal_id,
            status=status or "VALIDATED",
            reject_reason=None,
            reject_message=None,
            payload=decision.intent.to_payload(),
            received_at=RECEIVED,
        )
    assert isinstance(decision, Refuse) and decision.record is not None
    return StoredSubmission(
        id=row_id,
        signal_id=decision.reject.signal_id,
        status="REJECTED",
        reject_reason=decision.reject.reason,
        reject_message=decision.reject.message,
        payload=dict(decision.record),
        received_at=RECEIVED,
    )


def first(payload: object, guard: Guard = ROOMY) -> Decision:
    """The decision for a first submission (no prior row)."""
    return decide(screened(payload), prior=None, guard=guard)


def again(payload: object, prior: StoredSubmission, *, today: date = TODAY) -> Decision:
    """The decision for a resubmission that finds `prior`; the stored form of a refused
    submission is, in these tests, its decoded data."""
    s = screened(payload, today)
    return decide(s, prior=prior, guard=ROOMY, stored_form=s.data)


def answer(decision: Decision, saved_id: int | None = None) -> AdmissionOutcome:
    """The decision's outcome, `saved_id` being the row a first submission was stored as."""
    if isinstance(decision, Duplicate):
        return decision.outcome()
    if isinstance(decision, Admit):
        assert saved_id is not None
        return decision.outcome(saved_id)
    return decision.outcome(saved_id)


# Screening.


def test_screen_admits_a_valid_object_keyed_on_its_signal_id() -> None:
    s = screened(intent())
    assert isinstance(s.verdict, Intent)
    assert s.signal_id == "sig-1" and s.keyed
    assert s.data == intent()


def test_screen_decodes_json_text_with_decimals_never_floats() -> None:
    s = screened(json.dumps(intent(quantity=10.5, target_price=1.1)))
    assert isinstance(s.data, dict)
    assert s.data["target_price"] == Decimal("1.1") and isinstance(s.data["target_price"], Decimal)
    assert isinstance(s.verdict, Reject) and s.verdict.reason is RejectReason.FRACTIONAL_QUANTITY


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("{garbage", RejectReason.MALFORMED_JSON),
        (b"\xff\xfe", RejectReason.MALFORMED_JSON),
        ("x" * 70_000, RejectReason.PAYLOAD_TOO_LARGE),
        ("[1, 2]", RejectReason.NOT_AN_OBJECT),
        ([1, 2], RejectReason.NOT_AN_OBJECT),
        ({"strategy": "0DTE_Scalp"}, RejectReason.MISSING_FIELD),
        ({**intent(), "signal_id": "has space"}, RejectReason.INVALID_SIGNAL_ID),
    ],
)
def test_submissions_without_a_usable_signal_id_are_refused_and_not_recorded(
    payload: object, reason: RejectReason
) -> None:
    s = screened(payload)
    assert not s.keyed
    decision = decide(s, prior=None, guard=None)
    assert isinstance(decision, Refuse) and decision.record is None
    assert decision.reject.reason is reason
    outcome = decision.outcome(None)
    assert (outcome.status, outcome.intent_id, outcome.duplicate) == ("REJECTED", None, False)
    assert outcome.published == Reject(reason, decision.reject.message, "", decision.reject.field)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"quantity": "-3"}, RejectReason.INVALID_QUANTITY),
        ({"quantity": "2.5"}, RejectReason.FRACTIONAL_QUANTITY),
        ({"quantity": "NaN"}, RejectReason.NON_FINITE_NUMBER),
        ({"strategy": "Martingale"}, RejectReason.UNKNOWN_STRATEGY),
        ({"side": "HODL"}, RejectReason.UNKNOWN_SIDE),
        ({"instrument": "SPY   251120C00450000"}, RejectReason.OPTION_EXPIRED),
        ({"time_in_force": "GTD"}, RejectReason.GTD_WITHOUT_DATE),
        ({"strategy": "Momentum_EQ"}, RejectReason.STRATEGY_INSTRUMENT_MISMATCH),
        ({"extra": "x"}, RejectReason.UNKNOWN_FIELD),
    ],
)
def test_an_invalid_intent_with_a_signal_id_is_refused_with_its_code_and_recorded(
    changes: dict[str, Any], reason: RejectReason
) -> None:
    payload = intent("sig-bad", **changes)
    decision = first(payload)
    assert isinstance(decision, Refuse)
    assert decision.reject.reason is reason and decision.reject.signal_id == "sig-bad"
    assert decision.record == payload and decision.intent is None
    outcome = decision.outcome(12)
    assert (outcome.status, outcome.reason, outcome.intent_id) == ("REJECTED", reason, 12)
    assert outcome.published is not None and outcome.published.reason is reason


def test_unscreenable_submission_is_an_invalid_value_refusal_under_its_signal_id() -> None:
    s = unscreenable(json.dumps(intent("sig-bug")), "KeyError")
    assert s.keyed
    assert isinstance(s.verdict, Reject)
    assert s.verdict.reason is RejectReason.INVALID_VALUE
    assert s.verdict.signal_id == "sig-bug" and "KeyError" in s.verdict.message
    assert isinstance(decide(s, prior=None, guard=None), Refuse)
    assert not unscreenable("{nope", "KeyError").keyed


# Admission and the concurrency guard.


def test_a_valid_intent_under_its_guard_is_admitted_with_the_instrument_as_submitted() -> None:
    decision = first(intent(instrument="SPY251121C00450000"), Guard("0DTE_Scalp", 4, 5))
    assert isinstance(decision, Admit)
    assert decision.instrument_text == "SPY251121C00450000"
    assert decision.intent.instrument.text == "SPY   251121C00450000"
    outcome = decision.outcome(3)
    assert outcome == AdmissionOutcome("VALIDATED", "sig-1", intent_id=3)
    assert outcome.published is None and not outcome.refused


@pytest.mark.parametrize(("active", "limit"), [(5, 5), (9, 5), (1, 1)])
def test_a_full_guard_refuses_with_concurrency_limit_and_keeps_the_intent(
    active: int, limit: int
) -> None:
    payload = intent("sig-guard")
    decision = first(payload, Guard("0DTE_Scalp", active, limit))
    assert isinstance(decision, Refuse)
    assert decision.reject.reason is RejectReason.CONCURRENCY_LIMIT
    assert decision.reject.message == (
        f"0DTE_Scalp already has {active} active intents (limit {limit})"
    )
    assert decision.record == payload
    assert decision.intent is not None and decision.intent.quantity == Decimal("10")
    outcome = decision.outcome(8)
    assert outcome.published is not None
    assert outcome.published.reason is RejectReason.CONCURRENCY_LIMIT


def test_admitting_without_the_guard_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="guard"):
        decide(screened(intent()), prior=None, guard=None)


def test_an_intent_without_an_object_to_record_is_a_caller_error() -> None:
    verdict = screened(intent()).verdict
    with pytest.raises(ValueError, match="signal_id"):
        decide(Screened("not a mapping", verdict), prior=None, guard=ROOMY)


# Duplicates: the row stored under the signal_id decides.


@pytest.mark.parametrize(
    "resubmitted",
    [
        intent(),
        json.dumps(intent()),
        intent(instrument="SPY251121C00450000", quantity=10),
        intent(quantity=Decimal("10.0")),
    ],
)
def test_the_same_intent_again_gets_the_first_outcome(resubmitted: object) -> None:
    prior = stored(first(intent()))
    decision = again(resubmitted, prior)
    assert decision == Duplicate(prior, None)
    outcome = decision.outcome()
    assert outcome == AdmissionOutcome("VALIDATED", "sig-1", intent_id=7, duplicate=True)
    assert outcome.published is None


def test_a_resubmission_is_judged_as_of_the_first_submissions_day() -> None:
    prior = stored(first(intent()))
    later = TODAY + timedelta(days=3)  # the option expired since: still the same intent
    assert isinstance(screened(intent(), later).verdict, Reject)
    assert again(intent(), prior, today=later) == Duplicate(prior, None)


def test_the_resubmission_answers_wherever_the_intent_is_now() -> None:
    prior = stored(first(intent()), status="WORKING")
    outcome = answer(again(intent(), prior))
    assert (outcome.status, outcome.duplicate, outcome.published) == ("WORKING", True, None)


@pytest.mark.parametrize(
    "other",
    [
        intent(quantity="11"),
        intent(side="SELL"),
        intent(quantity="-1"),
        {"signal_id": "sig-1"},
    ],
)
def test_a_used_signal_id_with_another_payload_is_duplicate_signal_and_the_first_stands(
    other: dict[str, Any],
) -> None:
    prior = stored(first(intent()))
    decision = again(other, prior)
    assert isinstance(decision, Duplicate) and decision.conflict is not None
    assert decision.conflict.reason is RejectReason.DUPLICATE_SIGNAL
    assert decision.conflict.field == "signal_id"
    assert "intent 7 (VALIDATED)" in decision.conflict.message
    outcome = decision.outcome()
    assert (outcome.status, outcome.intent_id, outcome.duplicate) == ("REJECTED", 7, True)
    assert outcome.published is not None
    assert outcome.published.reason is RejectReason.DUPLICATE_SIGNAL


def test_a_refused_submission_again_gets_its_first_refusal_published_again() -> None:
    payload = intent("sig-bad", quantity="-3")
    prior = stored(first(payload), row_id=9)
    decision = again(payload, prior)
    assert decision == Duplicate(prior, None)
    outcome = decision.outcome()
    assert (outcome.status, outcome.reason, outcome.intent_id) == (
        "REJECTED",
        RejectReason.INVALID_QUANTITY,
        9,
    )
    assert outcome.published == Reject(
        RejectReason.INVALID_QUANTITY, prior.reject_message or "", "sig-bad"
    )


def test_a_refused_signal_id_reused_for_a_valid_intent_is_duplicate_signal() -> None:
    prior = stored(first(intent("sig-bad", quantity="-3")))
    decision = again(intent("sig-bad"), prior)
    assert isinstance(decision, Duplicate) and decision.conflict is not None
    assert decision.conflict.reason is RejectReason.DUPLICATE_SIGNAL


def test_a_guard_refusal_again_is_its_first_refusal_even_with_room_now() -> None:
    payload = intent("sig-guard")
    prior = stored(first(payload, Guard("0DTE_Scalp", 2, 2)))
    outcome = answer(decide(screened(payload), prior=prior, guard=ROOMY, stored_form=payload))
    assert outcome.reason is RejectReason.CONCURRENCY_LIMIT and outcome.duplicate


def test_a_prior_wins_over_a_full_guard() -> None:
    prior = stored(first(intent()))
    full = Guard("0DTE_Scalp", 100, 1)
    assert decide(screened(intent()), prior=prior, guard=full) == Duplicate(prior, None)


def test_outcome_dict_has_the_stable_keys_and_json_primitives() -> None:
    outcome = Refuse(Reject(RejectReason.CONCURRENCY_LIMIT, "full", "s"), None).outcome(4)
    assert outcome.as_dict() == {
        "status": "REJECTED",
        "signal_id": "s",
        "intent_id": 4,
        "reason": "CONCURRENCY_LIMIT",
        "message": "full",
        "duplicate": False,
    }
    assert json.loads(json.dumps(outcome.as_dict())) == outcome.as_dict()


def test_a_refused_outcome_without_a_reason_code_is_refused_loudly() -> None:
    with pytest.raises(ValueError, match="reason"):
        _ = AdmissionOutcome("REJECTED", "s").published


# Properties.

valid_intents = st.builds(
    lambda sid, side, qty, urgency, option: intent(
        sid,
        side=side.value,
        quantity=str(qty),
        urgency=urgency.value,
        **({} if option else {"strategy": "Momentum_EQ", "instrument": "AAPL"}),
    ),
    st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True),
    st.sampled_from(Side),
    st.integers(1, 100_000),
    st.sampled_from(Urgency),
    st.booleans(),
)


@given(valid_intents, st.integers(0, 50), st.integers(1, 50))
def test_without_a_prior_an_intent_is_admitted_exactly_when_its_guard_has_room(
    payload: dict[str, Any], active: int, limit: int
) -> None:
    decision = first(payload, Guard(payload["strategy"], active, limit))
    if active < limit:
        assert isinstance(decision, Admit)
        verdict = screened(payload).verdict
        assert isinstance(verdict, Intent) and decision.intent == verdict
    else:
        assert isinstance(decision, Refuse)
        assert decision.reject.reason is RejectReason.CONCURRENCY_LIMIT


@given(valid_intents, st.integers(0, 3), st.booleans())
def test_whatever_was_decided_the_same_submission_again_gets_the_same_answer(
    payload: dict[str, Any], active: int, as_text: bool
) -> None:
    decision = first(payload, Guard(payload["strategy"], active, 2))
    prior = stored(decision)
    outcome = answer(again(json.dumps(payload) if as_text else payload, prior))
    expected = answer(decision, prior.id)
    assert outcome.as_dict() == {**expected.as_dict(), "duplicate": True}


@given(valid_intents, valid_intents)
def test_any_submission_under_a_stored_signal_id_is_a_duplicate_that_adds_nothing(
    stored_payload: dict[str, Any], other: dict[str, Any]
) -> None:
    prior = stored(first(stored_payload))
    resubmitted = {**other, "signal_id": stored_payload["signal_id"]}
    decision = again(resubmitted, prior)
    assert isinstance(decision, Duplicate)
    outcome = decision.outcome()
    assert outcome.intent_id == prior.id and outcome.duplicate
    same = screened(resubmitted).verdict
    assert (decision.conflict is None) == (
        isinstance(same, Intent) and same.to_payload() == prior.payload
    )
    assert outcome.refused == (outcome.published is not None)
