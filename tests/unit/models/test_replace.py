"""Structural replace decisions: what IB can modify in place, and when the replacement may go."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models.orders import OrderState
from models.replace import (
    Changes,
    Drop,
    Modify,
    Refused,
    Send,
    Structural,
    Terms,
    Wait,
    classify,
    replacement_gate,
)

PEG = Terms("BUY", Decimal(100), "LMT", Decimal("10.00"), "DAY", "SMART")
PLACED = OrderState.PLACED
D = Decimal


def test_a_price_change_is_a_modify_in_place() -> None:
    decided = classify(PEG, PLACED, D(0), Changes(limit_price=D("10.05")))
    assert decided == Modify(Terms("BUY", D(100), "LMT", D("10.05"), "DAY", "SMART"))


def test_a_size_change_is_a_modify_in_place() -> None:
    decided = classify(PEG, OrderState.PARTIAL_FILLED, D(30), Changes(quantity=D(80)))
    assert isinstance(decided, Modify) and decided.terms.quantity == D(80)


@pytest.mark.parametrize(
    ("changes", "changed"),
    [
        (Changes(tif="IOC", limit_price=D("10.10")), ("tif",)),
        (Changes(route="ARCA"), ("route",)),
        (Changes(order_type="MKT"), ("order_type",)),
        (Changes(order_type="MKT", tif="IOC"), ("order_type", "tif")),
    ],
)
def test_type_tif_or_route_is_structural(changes: Changes, changed: tuple[str, ...]) -> None:
    decided = classify(PEG, PLACED, D(0), changes)
    assert isinstance(decided, Structural)
    assert decided.changed == changed


def test_a_market_replacement_drops_the_limit() -> None:
    decided = classify(PEG, PLACED, D(0), Changes(order_type="MKT"))
    assert isinstance(decided, Structural) and decided.terms.limit_price is None


@pytest.mark.parametrize(
    ("state", "filled", "changes", "code"),
    [
        (OrderState.FILLED, D(100), Changes(tif="IOC"), "NOT_WORKING"),
        (OrderState.CANCEL_REQUESTED, D(0), Changes(tif="IOC"), "NOT_WORKING"),
        (PLACED, D(0), Changes(action="SELL"), "SIDE_CHANGE"),
        (PLACED, D(0), Changes(order_type="STP"), "ORDER_TYPE"),
        (PLACED, D(0), Changes(tif="FOK"), "TIF"),
        (PLACED, D(0), Changes(limit_price=D(0)), "LIMIT_PRICE"),
        (PLACED, D(0), Changes(order_type="MKT", limit_price=D(10)), "LIMIT_PRICE"),
        (OrderState.PARTIAL_FILLED, D(40), Changes(quantity=D(40)), "QUANTITY"),
        (PLACED, D(0), Changes(limit_price=D("10.00")), "NO_CHANGE"),
        (PLACED, D(0), Changes(), "NO_CHANGE"),
    ],
)
def test_refusals_name_why(state: OrderState, filled: Decimal, changes: Changes, code: str) -> None:
    decided = classify(PEG, state, filled, changes)
    assert isinstance(decided, Refused) and decided.code == code, decided


def test_a_market_order_turned_limit_needs_a_price() -> None:
    market = Terms("SELL", D(5), "MKT", None, "DAY", "SMART")
    decided = classify(market, PLACED, D(0), Changes(order_type="LMT"))
    assert isinstance(decided, Refused) and decided.code == "LIMIT_PRICE"


@pytest.mark.parametrize(
    "state", [OrderState.PLACED, OrderState.PARTIAL_FILLED, OrderState.CANCEL_REQUESTED]
)
def test_the_replacement_waits_while_the_old_order_may_still_trade(state: OrderState) -> None:
    assert isinstance(replacement_gate(state, D(100), D(0), None), Wait)


def test_the_replacement_asks_for_what_the_old_one_did_not_fill() -> None:
    assert replacement_gate(OrderState.CANCELLED, D(100), D(30), None) == Send(D(70))


def test_a_fill_ib_counted_before_the_ledger_booked_it_still_counts() -> None:
    # orderStatus Cancelled said filled=40 while only 30 of its executions are booked yet.
    assert replacement_gate(OrderState.CANCELLED, D(100), D(30), D(40)) == Send(D(60))
    assert replacement_gate(OrderState.CANCELLED, D(100), D(45), D(40)) == Send(D(55))


def test_nothing_is_sent_when_the_old_order_filled_before_its_cancel() -> None:
    assert isinstance(replacement_gate(OrderState.FILLED, D(100), D(100), D(100)), Drop)
    assert isinstance(replacement_gate(OrderState.CANCELLED, D(100), D(0), D(100)), Drop)
