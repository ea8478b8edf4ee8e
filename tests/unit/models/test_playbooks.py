"""Playbooks: which template each strategy runs and why, and where an intent stands (issue 11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.child_orders import Action, Template, plan_from_json, plan_to_json
from models.intent import Intent, IntentStatus
from models.intent_progress import (
    ChildState,
    outcome_of,
    past_good_till,
    progress_of,
    slippage_breach,
    time_up,
)
from models.orders import OrderState
from models.planners import sweep, twap
from models.playbooks import Plan, Refusal, plan_intent

T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
D = Decimal


def intent(strategy: str = "Momentum_EQ", urgency: str = "Normal", **extra: object) -> Intent:
    instrument = "SPY   261203C00600000" if strategy in ("0DTE_Scalp", "Spread_Roll") else "AAPL"
    return Intent.model_validate(
        {
            "signal_id": "sig-1",
            "strategy": strategy,
            "instrument": instrument,
            "side": "BUY",
            "quantity": "1000",
            "urgency": urgency,
            "time_in_force": "DAY",
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("strategy", "urgency", "template"),
    [
        ("Momentum_EQ", "Immediate", Template.SWEEP),
        ("Momentum_EQ", "High", Template.SWEEP),
        ("Momentum_EQ", "Normal", Template.PEGGED_MID),
        ("Momentum_EQ", "Passive", Template.TWAP),
        ("0DTE_Scalp", "High", Template.SWEEP),
        ("0DTE_Scalp", "Normal", Template.PEGGED_MID),
        ("Gamma_Rebalance", "Immediate", Template.SWEEP),
        ("Gamma_Rebalance", "Normal", Template.TWAP),
        ("Gamma_Rebalance", "Passive", Template.TWAP),
    ],
)
def test_each_playbook_chooses_its_template_and_says_why(
    strategy: str, urgency: str, template: Template
) -> None:
    plan = plan_intent(intent(strategy, urgency), T0)
    assert isinstance(plan, Plan)
    assert plan.template is template
    assert strategy in plan.reason and urgency in plan.reason
    assert plan.children and all(c.template is template for c in plan.children)
    assert all(c.due_at >= T0 for c in plan.children)


def test_a_spread_roll_without_legs_is_refused_with_its_code() -> None:
    refused = plan_intent(intent("Spread_Roll"), T0)
    assert isinstance(refused, Refusal)
    assert refused.code == "COMBO_LEGS_REQUIRED"


def test_a_twap_runs_to_the_intents_good_till() -> None:
    until = T0 + timedelta(minutes=2)
    plan = plan_intent(
        intent(urgency="Passive", time_in_force="GTD", good_till=until.isoformat()), T0
    )
    assert isinstance(plan, Plan)
    assert plan.children[-1].due_at == until
    assert len(plan.children) == 9  # every 15 s from T0 to T0 + 2 min


def test_child_plans_survive_the_ledger_round_trip() -> None:
    children = [*twap(Action.BUY, D(1000), T0, T0 + timedelta(minutes=1)), *sweep(Action.SELL, T0)]
    for child in children:
        assert plan_from_json(plan_to_json(child)) == child


def child(state: OrderState, qty: str | None, filled: str = "0", sent: bool = True) -> ChildState:
    return ChildState(state, None if qty is None else D(qty), D(filled), sent)


def test_a_working_child_counts_as_done_for_the_next_slice() -> None:
    children = [
        child(OrderState.FILLED, "100", "100"),
        child(OrderState.PLACED, "100", "40"),  # may still fill 60
        child(OrderState.SCHEDULED, "50"),  # sent, not yet acknowledged
        child(OrderState.SCHEDULED, None, sent=False),  # not sized yet
        child(OrderState.CANCELLED, "100", "10"),
    ]
    progress = progress_of(children, D(1000), D(20))
    assert progress.filled == D(100 + 40 + 10) + D(60) + D(50)
    assert progress.remaining == D(740)


def test_an_intent_completes_when_filled_and_expires_when_its_plan_ends_short() -> None:
    done = outcome_of([child(OrderState.FILLED, "1000", "1000")], D(1000))
    assert done is not None and done.status is IntentStatus.COMPLETED
    short = outcome_of([child(OrderState.CANCELLED, "600", "600")], D(1000))
    assert short is not None and short.status is IntentStatus.EXPIRED
    assert "600 of 1000" in short.reason
    working = [
        child(OrderState.CANCELLED, "600", "600"),
        child(OrderState.SCHEDULED, None, sent=False),
    ]
    assert outcome_of(working, D(1000)) is None
    assert outcome_of([], D(1000)) is None


def test_good_till_ends_an_intent_at_its_time() -> None:
    assert past_good_till(T0, T0) and past_good_till(T0, T0 + timedelta(seconds=1))
    assert not past_good_till(T0, T0 - timedelta(seconds=1))
    assert not past_good_till(None, T0)


def test_a_day_intent_ends_at_its_sessions_close_and_gtd_at_good_till() -> None:
    close = T0 + timedelta(hours=6)
    assert time_up(time_in_force="DAY", good_till=None, day_close=close, now=close) is not None
    assert (
        time_up(
            time_in_force="DAY", good_till=None, day_close=close, now=close - timedelta(seconds=1)
        )
        is None
    )
    # Only DAY ends at the close; a GTC intent lives on.
    assert time_up(time_in_force="GTC", good_till=None, day_close=close, now=close) is None
    gtd = time_up(time_in_force="GTD", good_till=T0, day_close=None, now=T0)
    assert gtd is not None and "good_till" in gtd


def priced(avg: str, ref: str, filled: str = "100") -> ChildState:
    return ChildState(OrderState.FILLED, D(100), D(filled), True, D(avg), D(ref), "epm-1-sweep-1")


def test_a_fill_beyond_the_slippage_limit_is_a_breach_with_its_numbers() -> None:
    breach = slippage_breach([priced("100.30", "100.00")], buy=True, max_slippage_bps=D(20))
    assert breach is not None
    assert breach.slippage_bps == D(30) and breach.key == "epm-1-sweep-1"
    assert "30.00 bps > 20 bps" in breach.reason
    # Within the limit, better than the reference, a sell filled higher, no limit: no breach.
    assert slippage_breach([priced("100.10", "100.00")], buy=True, max_slippage_bps=D(20)) is None
    assert slippage_breach([priced("99.00", "100.00")], buy=True, max_slippage_bps=D(20)) is None
    assert slippage_breach([priced("100.50", "100.00")], buy=False, max_slippage_bps=D(5)) is None
    assert slippage_breach([priced("101", "100")], buy=True, max_slippage_bps=None) is None
    # A child with nothing filled says nothing about slippage.
    assert (
        slippage_breach([priced("0", "100", filled="0")], buy=True, max_slippage_bps=D(1)) is None
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(OrderState)),
            st.integers(min_value=0, max_value=500),
            st.integers(min_value=0, max_value=500),
        ),
        max_size=8,
    )
)
def test_progress_never_counts_more_in_flight_than_a_child_can_still_fill(
    rows: list[tuple[OrderState, int, int]],
) -> None:
    children = [ChildState(s, D(q), D(min(f, q)), True) for s, q, f in rows]
    progress = progress_of(children, D(10_000), D(20))
    assert progress.filled <= sum((D(q) for _s, q, _f in rows), D(0))
    assert progress.remaining >= 0


def test_params_arrive_as_an_object_or_as_its_json_text() -> None:
    from models.playbook_params import MomentumParams

    as_text = intent(params='{"trail_percent": "1.5"}')
    as_object = intent(params={"trail_percent": 1.5})
    assert as_text.params == as_object.params == {"trail_percent": "1.5"}
    params = as_text.strategy_params
    assert isinstance(params, MomentumParams) and params.trail_percent == D("1.5")
    # Intents without params keep their strategy's defaults.
    assert intent().params is None and intent().strategy_params.template is None


def test_params_name_a_template_and_a_bracket_needs_exits() -> None:
    plan = plan_intent(intent(urgency="Passive", params={"template": "SWEEP"}), T0)
    assert isinstance(plan, Plan) and plan.template is Template.SWEEP
    assert "params name SWEEP" in plan.reason
    refused = plan_intent(intent("Gamma_Rebalance", params={"template": "BRACKET"}), T0)
    assert isinstance(refused, Refusal) and refused.code == "INVALID_PARAMS"
    bracket = plan_intent(intent(params={"trail_amount": "0.5"}), T0)
    assert isinstance(bracket, Plan) and bracket.template is Template.BRACKET
    assert [c.key for c in bracket.children] == ["bracket-entry", "bracket-stop"]


def test_a_0dte_position_must_be_flat_from_five_minutes_before_the_close() -> None:
    from datetime import date

    from models.playbooks.zero_dte_scalp import flat_by, flatten_payload, must_flatten

    close = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)  # 16:00 ET
    today = date(2026, 12, 3)
    assert flat_by(close) == datetime(2026, 12, 3, 20, 55, tzinfo=UTC)
    at = flat_by(close)
    assert must_flatten(expiry=today, today=today, now=at, close=close, hold=False)
    assert not must_flatten(
        expiry=today, today=today, now=at - timedelta(seconds=1), close=close, hold=False
    )
    assert not must_flatten(expiry=today, today=today, now=at, close=close, hold=True)
    assert not must_flatten(expiry=date(2026, 12, 4), today=today, now=at, close=close, hold=False)
    assert not must_flatten(expiry=today, today=today, now=at, close=None, hold=False)
    short = flatten_payload(today=today, con_id=7, attempt=2, occ="X", quantity=D(-3))
    assert (short["side"], short["quantity"], short["signal_id"]) == (
        "BUY_TO_COVER",
        "3",
        "flat-20261203-7-2",
    )


def test_gamma_hedges_in_its_increments() -> None:
    plan = plan_intent(intent("Gamma_Rebalance", quantity="1000", params={"increment": "300"}), T0)
    assert isinstance(plan, Plan) and plan.template is Template.TWAP
    assert len(plan.children) == 4 and "4 hedge increments of at most 300" in plan.reason
    cumulative = [c.schedule_qty for c in plan.children[:-1]]
    assert cumulative == [D(250), D(500), D(750)]


def test_a_0dte_exit_with_tranches_scales_out_and_an_entry_sweeps() -> None:
    exit_ = plan_intent(
        intent("0DTE_Scalp", "High", side="SELL", params={"tranches": 2, "tranche_spacing_s": 30}),
        T0,
    )
    assert isinstance(exit_, Plan) and exit_.template is Template.SWEEP
    assert "scaling exit: 2 tranches every 30s" in exit_.reason
    assert [c.due_at for c in exit_.children if c.key.endswith("-1")] == [
        T0,
        T0 + timedelta(seconds=30),
    ]
    entry = plan_intent(intent("0DTE_Scalp", "High", params={"tranches": 2}), T0)
    assert isinstance(entry, Plan) and len(entry.children) == 4 and "tranche" not in entry.reason
