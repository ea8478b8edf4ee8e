"""The ledger's decisions without a database: ids, stand-ins, views, adoption, positions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from models.ledger_reports import OpenOrderReport
from models.ledger_rules import (
    PREVIOUS_IB_ORDER_IDS,
    RecordedEvent,
    adopted_names,
    adopted_order,
    column_changes,
    commission_unchanged,
    details_leaving_id,
    follows_to,
    is_newest_view,
    is_stand_in,
    merged_details,
    open_order_progress,
    order_facts,
    positions_to_refresh,
    positions_touched,
    replacement_refusal,
    synthetic_client_order_id,
    view_stamp,
)
from models.orders import Order, OrderState

T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def _status(status: str, filled: str, remaining: str, at: datetime = T0) -> RecordedEvent:
    payload = {
        "order_id": 7,
        "client_id": 1,
        "ib_status": status,
        "filled": filled,
        "remaining": remaining,
        "received_at": at.isoformat(),
    }
    return RecordedEvent("STATUS", f"status:{status}:{filled}", payload, "PLACED", at, None)


def test_synthetic_ids_prefer_order_id_then_perm_id_then_the_callback_key() -> None:
    assert synthetic_client_order_id(3, 17, 900, "exec:x") == "ib:3:17"
    assert synthetic_client_order_id(None, 17, None, "exec:x") == "ib:0:17"
    # IB sends 0 (or -1) for "no id": those never name an order.
    assert synthetic_client_order_id(3, 0, 900, "exec:x") == "ib:perm:900"
    assert synthetic_client_order_id(3, -1, 0, "exec:x") == "ib:exec:x"


def test_only_orders_opened_from_callbacks_without_strategy_or_intent_are_stand_ins() -> None:
    assert is_stand_in("ib:1:7", {"origin": "order_status"}, None, None)
    assert not is_stand_in("ib:1:7", {"origin": "order_status"}, "Momentum_EQ", None)
    assert not is_stand_in("ib:1:7", {"origin": "order_status"}, None, 12)
    assert not is_stand_in("ib:1:7", {"origin": "placement"}, None, None)
    assert not is_stand_in("EPM-1", {"origin": "execution"}, None, None)
    assert not is_stand_in("ib:1:7", None, None, None)


def test_column_changes_fill_empty_columns_unless_the_view_is_newest() -> None:
    current = {"quantity": Decimal(100), "symbol": None, "tif": "DAY"}
    values = {"quantity": Decimal(150), "symbol": "AAPL", "tif": "DAY", "account": None}
    assert column_changes(current, values, overwrite=False) == {"symbol": "AAPL"}
    assert column_changes(current, values, overwrite=True) == {
        "quantity": Decimal(150),
        "symbol": "AAPL",
    }


def test_details_merge_and_the_ids_an_order_leaves() -> None:
    assert merged_details({"a": 1}, {"a": 1}) is None
    assert merged_details(None, {"a": 1}) == {"a": 1}
    assert merged_details({"a": 1}, {"b": 2}) == {"a": 1, "b": 2}
    assert merged_details({"a": 1}, None) is None
    moved = details_leaving_id({PREVIOUS_IB_ORDER_IDS: [5]}, 9, 12)
    assert moved[PREVIOUS_IB_ORDER_IDS] == [5, 9]
    assert PREVIOUS_IB_ORDER_IDS not in details_leaving_id({}, None, 12)


def test_an_order_follows_only_a_higher_id_of_its_own_client() -> None:
    assert follows_to(1, 10, 1, 11) == 11
    assert follows_to(1, 10, 1, 10) is None
    assert follows_to(1, 10, 1, 9) is None  # a late callback of an older id
    assert follows_to(1, 10, 2, 11) is None  # another client's id space
    assert follows_to(1, None, 1, 11) is None  # no id yet: backfilled, not followed
    assert follows_to(1, 10, 1, -1) is None


def test_a_replacement_to_the_current_or_an_older_id_is_refused() -> None:
    assert replacement_refusal(10, 11) is None
    assert replacement_refusal(None, 11) is None
    assert replacement_refusal(11, 11) == "order already on id 11"
    assert replacement_refusal(12, 11) == "order already on id 12, not older id 11"


def test_view_stamps_sort_by_receive_time_in_any_time_zone() -> None:
    earlier = view_stamp(T0, "open:ffff")
    later = view_stamp(
        (T0 + timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=-5))), "open:0000"
    )
    assert later > earlier
    assert is_newest_view(later, earlier)
    assert not is_newest_view(earlier, later)
    assert is_newest_view(earlier, None)


def test_open_order_progress_derives_what_is_left() -> None:
    def view(status: str | None, total: str | None, filled: str | None) -> OpenOrderReport:
        return OpenOrderReport.model_validate(
            {
                "order_id": 7,
                "total_quantity": total,
                "filled_quantity": filled,
                "ib_status": status,
                "received_at": T0.isoformat(),
            }
        )

    assert open_order_progress(view("Submitted", "100", "30")) == (Decimal(30), Decimal(70))
    assert open_order_progress(view("Filled", "100", "100")) == (Decimal(100), Decimal(0))
    assert open_order_progress(view("Submitted", None, None)) == (Decimal(0), Decimal(0))


def test_adopting_a_stand_in_carries_its_cancel_confirmation() -> None:
    ours = Order("EPM-1", Decimal(100), OrderState.PLACED)
    cancelled = _status("Cancelled", "0", "100")
    adopted = adopted_order(ours, [cancelled], (Decimal(0), None), T0)
    assert adopted.state is OrderState.CANCELLED
    # A stand-in with nothing to say leaves the order as it was.
    assert adopted_order(ours, [], (Decimal(0), None), T0).state is OrderState.PLACED


@given(st.permutations(["Submitted:0:100", "Submitted:40:60", "Filled:100:0"]))
def test_adoption_does_not_depend_on_the_order_the_stand_ins_events_are_replayed(
    order: list[str],
) -> None:
    ours = Order("EPM-1", Decimal(100), OrderState.PLACED)
    events = [_status(*item.split(":")) for item in order]
    adopted = adopted_order(ours, events, (Decimal(100), Decimal("10.5")), T0)
    assert adopted.state is OrderState.FILLED
    assert adopted.filled_qty == Decimal(100)


def test_order_facts_start_from_the_first_recorded_state_and_end_with_the_fills() -> None:
    order = Order("EPM-1", Decimal(150), OrderState.FILLED, filled_qty=Decimal(100))
    placed = RecordedEvent("PLACED", None, None, "VALIDATED", T0, None)
    noise = RecordedEvent("ORDER_ID_FOLLOWED", None, {"x": 1}, "PLACED", T0, None)
    start, facts = order_facts(
        order, [placed, noise, _status("Submitted", "0", "150")], (Decimal(100), None), T0
    )
    assert start is OrderState.VALIDATED
    assert facts[0].type.value == "PLACED"
    assert len(facts) == 3  # PLACED, the status, the final fill; the id move is no FSM fact


def test_moved_fills_touch_the_position_they_leave_and_the_one_they_join() -> None:
    touched = positions_touched([(265598, "UNATTRIBUTED"), (None, "UNATTRIBUTED")], "Momentum_EQ")
    assert touched == {
        (265598, "UNATTRIBUTED"),
        (265598, "Momentum_EQ"),
        (None, "UNATTRIBUTED"),
        (None, "Momentum_EQ"),
    }
    # Without a contract there is no position; the rest once each, in lock order.
    assert positions_to_refresh(touched | {(1, "Z")}) == [
        (1, "Z"),
        (265598, "Momentum_EQ"),
        (265598, "UNATTRIBUTED"),
    ]
    assert adopted_names(["ib:1:3"], ["ib:1:2", "ib:1:3"]) == ["ib:1:2", "ib:1:3"]


def test_a_commission_repeat_is_unchanged_only_against_ibs_own_figure() -> None:
    stored = {
        "estimated": False,
        "commission": Decimal("1.00"),
        "realized_pnl": None,
        "currency": "USD",
    }
    assert commission_unchanged(stored, Decimal("1.00"), None, "USD")
    assert not commission_unchanged(stored, Decimal("1.01"), None, "USD")
    assert not commission_unchanged({**stored, "estimated": True}, Decimal("1.00"), None, "USD")
    assert not commission_unchanged(None, Decimal("1.00"), None, "USD")
