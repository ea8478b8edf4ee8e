"""Venue choice from depth: SMART unless one exchange alone shows the whole child."""

from __future__ import annotations

import json
from decimal import Decimal

from models.child_orders import Action
from models.venue_choice import choose_route

D = Decimal


def book(asks: list[tuple[str, int, str]], bids: list[tuple[str, int, str]] = []) -> str:  # noqa: B006
    def rows(side: list[tuple[str, int, str]]) -> list[dict[str, str]]:
        return [{"price": p, "size": str(s), "mm": mm} for p, s, mm in side]

    return json.dumps({"ask": rows(asks), "bid": rows(bids)})


ASKS = [
    ("10.00", 100, "ARCA"),
    ("10.01", 300, "NSDQ"),
    ("10.02", 400, "ARCA"),
    ("10.05", 900, "BATS"),
]


def test_one_exchange_showing_the_whole_child_within_the_limit_gets_it() -> None:
    choice = choose_route(Action.BUY, D(450), D("10.02"), "SMART", book(ASKS))
    assert choice.route == "ARCA", choice
    assert "ARCA alone shows 500 of 800" in choice.why


def test_size_beyond_the_limit_does_not_count() -> None:
    # BATS's 900 is at 10.05, out of reach of a 10.02 limit; no one exchange has 600 within it.
    choice = choose_route(Action.BUY, D(600), D("10.02"), "SMART", book(ASKS))
    assert choice.route == "SMART"
    assert "deepest ARCA: 500 of 800" in choice.why
    assert choose_route(Action.BUY, D(600), D("10.05"), "SMART", book(ASKS)).route == "BATS"


def test_a_sell_reads_the_bids_down_to_its_limit() -> None:
    bids = [("9.99", 200, "IEX"), ("9.98", 500, "EDGX"), ("9.97", 100, "IEX")]
    depth = book(ASKS, bids)
    assert choose_route(Action.SELL, D(400), D("9.98"), "SMART", depth).route == "EDGX"
    assert choose_route(Action.SELL, D(400), D("9.99"), "SMART", depth).route == "SMART"
    assert choose_route(Action.SELL, D(250), D("9.97"), "SMART", depth).route == "EDGX"


def test_a_maker_code_is_routed_as_ib_routes_it_and_unknown_codes_never() -> None:
    depth = book([("10.00", 500, "NSDQ"), ("10.00", 900, "CDRG")])
    choice = choose_route(Action.BUY, D(500), D("10.00"), "SMART", depth)
    assert choice.route == "ISLAND", choice


def test_ties_go_to_the_first_exchange_by_name() -> None:
    depth = book([("10.00", 300, "NSDQ"), ("10.00", 300, "ARCA")])
    assert choose_route(Action.BUY, D(300), D("10.00"), "SMART", depth).route == "ARCA"


def test_without_depth_or_limit_or_with_a_planned_route_nothing_changes() -> None:
    assert choose_route(Action.BUY, D(1), D("10.00"), "SMART", None).route == "SMART"
    assert choose_route(Action.BUY, D(1), D("10.00"), "SMART", "not json").route == "SMART"
    assert choose_route(Action.BUY, D(1), D("10.00"), "SMART", '{"bid": []}').route == "SMART"
    assert choose_route(Action.BUY, D(1), None, "SMART", book(ASKS)).route == "SMART"
    assert choose_route(Action.BUY, D(1), D("10.00"), "ISLAND", book(ASKS)).route == "ISLAND"
    blank = book([("10.00", 500, "")])
    assert choose_route(Action.BUY, D(1), D("10.00"), "SMART", blank).route == "SMART"
