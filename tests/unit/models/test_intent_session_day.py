"""Option expiry on a venue's session day (`checks_on_session_day`): an accelerated simulator
trades a session whose date the wall clock may have left; its 0DTE contracts are live there."""

from __future__ import annotations

from datetime import date

from models.intent import DEFAULT_CHECKS, Intent, checks_on_session_day, validate_intent
from models.rejects import Reject, RejectReason
from tests.unit.models.test_intent import option_intent

WALL_DAY = date(2025, 11, 22)  # the wall clock (UTC) has moved on to the next day
SESSION_DAY = date(2025, 11, 21)  # the session the venue is trading


def test_a_0dte_contract_of_the_venues_session_is_admitted_although_the_wall_date_passed() -> None:
    zero_dte = option_intent(instrument="SPY   251121C00450000")
    on_wall = validate_intent(zero_dte, today=WALL_DAY)
    assert isinstance(on_wall, Reject) and on_wall.reason is RejectReason.OPTION_EXPIRED
    on_session = validate_intent(
        zero_dte, today=WALL_DAY, checks=checks_on_session_day(SESSION_DAY)
    )
    assert isinstance(on_session, Intent)


def test_the_session_day_still_refuses_what_expired_before_it_and_keeps_the_other_checks() -> None:
    yesterday = option_intent(instrument="SPY   251120C00450000")
    result = validate_intent(yesterday, today=WALL_DAY, checks=checks_on_session_day(SESSION_DAY))
    assert isinstance(result, Reject) and result.reason is RejectReason.OPTION_EXPIRED
    checks = checks_on_session_day(SESSION_DAY)
    assert len(checks) == len(DEFAULT_CHECKS) and checks[1:] == DEFAULT_CHECKS[1:]
