"""The runbooks' decisions: which safe action a stuck order, the gateway path and a depth line
need, from the facts the shell gathered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from models.runbook import (
    DepthLine,
    GatewayFacts,
    OrderAction,
    OrderFacts,
    assess_depth,
    assess_gateway,
    decide_order,
    venue_filled,
)

D = Decimal
NOW = datetime(2026, 12, 3, 15, tzinfo=UTC)


def facts(**changes: object) -> OrderFacts:
    base: dict[str, object] = {
        "client_order_id": "c-1",
        "ib_order_id": 7,
        "state": "PLACED",
        "quantity": D(100),
        "ledger_filled": D(0),
        "venue_filled": D(0),
        "venue_executions": 0,
        "sent": True,
        "cancel_asked": False,
    }
    return OrderFacts(**(base | changes))  # type: ignore[arg-type]


def test_fills_the_ledger_lacks_are_resynced_never_cancelled_even_when_terminal() -> None:
    assert decide_order(facts(venue_filled=D(40))).action == OrderAction.RESYNC
    assert decide_order(facts(state="CANCELLED", venue_filled=D(40))).action == OrderAction.RESYNC


def test_a_working_order_is_cancelled_a_done_or_unsent_one_left_alone() -> None:
    assert decide_order(facts()).action == OrderAction.CANCEL
    assert "not yet sent" in decide_order(facts(sent=False)).why
    for state in ("FILLED", "CANCELLED", "REJECTED", "CLOSED"):
        assert decide_order(facts(state=state)).action == OrderAction.NONE
    assert decide_order(facts(ib_order_id=None)).action == OrderAction.NONE


def test_an_unanswered_cancel_is_asked_again_with_a_resync() -> None:
    assert decide_order(facts(cancel_asked=True)).action == OrderAction.CANCEL_AND_RESYNC
    assert decide_order(facts(state="CANCEL_REQUESTED")).action == OrderAction.CANCEL_AND_RESYNC


def test_venue_fills_count_a_correction_once_and_match_by_ref_or_perm_id() -> None:
    execs = [
        {"exec_id": "0001.aa.01.01", "order_ref": "c-1", "shares": "30"},
        {"exec_id": "0001.aa.01.02", "order_ref": "c-1", "shares": "25"},  # corrects .01
        {"exec_id": "0001.bb.01.01", "order_ref": None, "perm_id": 99, "shares": "10"},
        {"exec_id": "0001.cc.01.01", "order_ref": "c-2", "shares": "500"},
    ]
    assert venue_filled(execs, "c-1", 99) == (D(35), 2)
    assert venue_filled(execs, "c-1", None) == (D(25), 1)


def test_the_gateway_needs_a_bridge_then_a_connection_then_a_resync() -> None:
    healthy = GatewayFacts("host:1", 4000, {"client1": "READY"}, NOW, [], True)
    assert assess_gateway(healthy, NOW) == ([], "resync")
    problems, action = assess_gateway(
        GatewayFacts(None, -2, {"client1": "READY"}, NOW - timedelta(minutes=1), [], None), NOW
    )
    assert action == "start_bridge" and len(problems) == 2
    problems, action = assess_gateway(
        GatewayFacts("host:1", 4000, {"client1": "CONNECTING"}, NOW, ["usfarm"], False), NOW
    )
    assert action == "wait"
    assert problems == [
        "client1 is CONNECTING",
        "market-data farm usfarm is broken",
        "the venue did not answer an executions request",
    ]


def test_depth_fails_on_an_error_on_none_or_on_staleness() -> None:
    lines = [
        DepthLine(3, ["a"], True, NOW - timedelta(seconds=5), None),
        DepthLine(2, ["a"], True, NOW - timedelta(minutes=5), None),
        DepthLine(1, ["a"], False, None, None),
        DepthLine(4, ["a"], True, NOW, "10092 not supported"),
    ]
    assert assess_depth(lines, NOW) == [
        (1, "no depth received"),
        (2, "depth not updated for over 2 min"),
        (4, "IB error 10092 not supported"),
    ]
