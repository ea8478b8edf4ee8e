"""The combo what-if verdict: fits, refused with the numbers, or fails closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from models.risk import AccountFacts
from models.what_if import Fits, Refused, Waiting, verdict

ASKED = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
ACCOUNT = AccountFacts(
    live=True,
    net_liquidation=Decimal(1_000_000),
    excess_liquidity=Decimal(1_000_000),
    available_funds=Decimal(900_000),
)
SHARE = Decimal("0.1")  # floor 100,000


def answer(change: str) -> dict[str, str]:
    return {"initMarginChange": change, "status": "PreSubmitted"}


def test_a_change_that_leaves_the_floor_free_fits_with_its_numbers() -> None:
    decided = verdict(answer("800000"), ACCOUNT, SHARE, ASKED, ASKED)
    assert isinstance(decided, Fits)
    assert decided.numbers["available_after"] == "100000"
    assert decided.numbers["floor"] == "100000.0"


def test_a_change_below_the_floor_is_refused_with_the_numbers() -> None:
    decided = verdict(answer("800000.01"), ACCOUNT, SHARE, ASKED, ASKED)
    assert isinstance(decided, Refused) and decided.code == "COMBO_MARGIN"
    assert decided.numbers["available_after"] == "99999.99"
    assert "below the headroom floor 100000.0" in decided.message


def test_no_answer_waits_then_fails_closed() -> None:
    assert isinstance(verdict({}, ACCOUNT, SHARE, ASKED, ASKED + timedelta(seconds=5)), Waiting)
    late = verdict({}, ACCOUNT, SHARE, ASKED, ASKED + timedelta(seconds=5.1))
    assert isinstance(late, Refused) and late.code == "WHAT_IF_TIMEOUT"


def test_an_answer_without_a_margin_figure_refuses() -> None:
    for raw in ("", "1.7976931348623157E308", "n/a"):
        decided = verdict(answer(raw), ACCOUNT, SHARE, ASKED, ASKED)
        assert isinstance(decided, Refused) and decided.code == "WHAT_IF_NO_MARGIN", raw


def test_an_untrusted_account_refuses() -> None:
    down = AccountFacts(live=False, why="the risk connection (client 2) is DISCONNECTED")
    decided = verdict(answer("10"), down, SHARE, ASKED, ASKED)
    assert isinstance(decided, Refused) and decided.code == "ACCOUNT_DATA_UNAVAILABLE"
    empty = AccountFacts(live=True, net_liquidation=Decimal(0), available_funds=Decimal(5))
    decided = verdict(answer("10"), empty, SHARE, ASKED, ASKED)
    assert isinstance(decided, Refused) and decided.code == "ACCOUNT_DATA_UNAVAILABLE"
