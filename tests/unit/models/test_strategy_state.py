"""Trading states, pure: transitions (who may loosen, rules only tighten, monotone version), the
intake and child gates each state allows, the post-trade rules and the breakers' causes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from epm.limits import load_limits
from models.intent import Side
from models.limits import Limits, parse_limits
from models.rejects import RejectReason
from models.strategy_state import (
    GLOBAL_SCOPE,
    BreakerFacts,
    StrategyFacts,
    TradingState,
    TransitionRefused,
    admission_refusal,
    breaker_causes,
    child_refusal,
    effective,
    initial,
    post_trade_causes,
    reduces,
    resume_refusal,
    strictest,
    transition,
)

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
D = Decimal
A, R, H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED


def _limits(**strategy: str) -> Limits:
    doc = load_limits().model_dump(mode="json", exclude_none=True)
    doc["strategies"] = {"Momentum_EQ": strategy}
    return parse_limits(doc)


def test_a_change_needs_an_actor_and_a_reason_and_bumps_the_version() -> None:
    start = initial("Momentum_EQ")
    with pytest.raises(TransitionRefused, match="actor"):
        transition(start, H, actor=" ", reason="x", at=NOW, by_rule=False)
    with pytest.raises(TransitionRefused, match="reason"):
        transition(start, H, actor="alice", reason="", at=NOW, by_rule=False)
    change = transition(start, H, actor="alice", reason="news", at=NOW, by_rule=False)
    assert change is not None
    assert (change.after.state, change.after.version, change.after.actor) == (H, 1, "alice")
    # Already there: nothing to do (a repeated command or rule is idempotent).
    assert transition(change.after, H, actor="bob", reason="again", at=NOW, by_rule=True) is None


def test_rules_only_tighten_an_operator_may_loosen() -> None:
    halted = transition(initial("s"), H, actor="rule", reason="dd", at=NOW, by_rule=True)
    assert halted is not None
    with pytest.raises(TransitionRefused, match="only tighten"):
        transition(halted.after, R, actor="rule", reason="x", at=NOW, by_rule=True)
    back = transition(halted.after, A, actor="alice", reason="ok", at=NOW, by_rule=False)
    assert back is not None and back.after.state is A and back.after.version == 2


@given(st.lists(st.tuples(st.sampled_from(list(TradingState)), st.booleans()), max_size=20))
def test_versions_only_grow_and_rules_never_loosen(steps: list[tuple[TradingState, bool]]) -> None:
    record = initial("s")
    rank = {A: 0, R: 1, H: 2}
    for to, by_rule in steps:
        try:
            change = transition(record, to, actor="a", reason="r", at=NOW, by_rule=by_rule)
        except TransitionRefused:
            assert by_rule and rank[to] < rank[record.state]
            continue
        if change is None:
            assert to is record.state
            continue
        assert change.after.version == record.version + 1
        assert not by_rule or rank[to] > rank[record.state]
        record = change.after


def test_the_effective_state_is_the_stricter_of_strategy_and_desk() -> None:
    own = transition(initial("s"), R, actor="a", reason="r", at=NOW, by_rule=False)
    desk = transition(initial(GLOBAL_SCOPE), H, actor="a", reason="326", at=NOW, by_rule=True)
    assert own is not None and desk is not None
    assert effective(own.after, initial(GLOBAL_SCOPE)).state is R
    assert effective(own.after, desk.after).scope == GLOBAL_SCOPE


@pytest.mark.parametrize(
    ("side", "qty", "position", "expected"),
    [
        (Side.SELL, D(100), D(600), True),
        (Side.SELL, D(600), D(600), True),  # to flat
        (Side.SELL, D(700), D(600), False),  # crosses
        (Side.BUY, D(100), D(600), False),  # grows
        (Side.BUY_TO_COVER, D(50), D(-100), True),
        (Side.SELL_SHORT, D(50), D(-100), False),
        (Side.SELL, D(1), D(0), False),  # flat: nothing to reduce
        (Side.SELL, D(1), None, False),  # unknown: fails closed
    ],
)
def test_reduces(side: Side, qty: Decimal, position: Decimal | None, expected: bool) -> None:
    assert reduces(side, qty, position) is expected


def test_intake_gate_per_state() -> None:
    active = initial("s")
    kwargs = {"signal_id": "sig", "side": Side.BUY, "quantity": D(10), "position": D(600)}
    assert admission_refusal(active, **kwargs) is None  # type: ignore[arg-type]
    reducing = transition(active, R, actor="rule", reason="limit", at=NOW, by_rule=True)
    halted = transition(active, H, actor="rule", reason="drawdown", at=NOW, by_rule=True)
    assert reducing is not None and halted is not None
    refused = admission_refusal(reducing.after, **kwargs)  # type: ignore[arg-type]
    assert refused is not None and refused.reason is RejectReason.STRATEGY_REDUCING
    assert "REDUCING (limit)" in refused.message and "600" in refused.message
    sell = {**kwargs, "side": Side.SELL}
    assert admission_refusal(reducing.after, **sell) is None  # type: ignore[arg-type]
    stopped = admission_refusal(halted.after, **sell)  # type: ignore[arg-type]
    assert stopped is not None and stopped.reason is RejectReason.STRATEGY_HALTED
    assert "drawdown" in stopped.message


def test_child_gate_cancels_entries_and_holds_exits_while_halted() -> None:
    halted = transition(initial("s"), H, actor="a", reason="dd", at=NOW, by_rule=True)
    reducing = transition(initial("s"), R, actor="a", reason="lim", at=NOW, by_rule=True)
    assert halted is not None and reducing is not None
    common = {"side": Side.BUY, "quantity": D(10), "position": D(0)}
    entry = child_refusal(halted.after, **common, exit_child=False)  # type: ignore[arg-type]
    assert entry is not None and entry[0] == "cancel" and entry[1].startswith("STRATEGY_HALTED")
    exit_ = child_refusal(halted.after, **common, exit_child=True)  # type: ignore[arg-type]
    assert exit_ is not None and exit_[0] == "hold"
    grows = child_refusal(reducing.after, **common, exit_child=False)  # type: ignore[arg-type]
    assert grows is not None and grows[0] == "cancel"
    shrink = {"side": Side.SELL, "quantity": D(10), "position": D(50)}
    assert child_refusal(reducing.after, **shrink, exit_child=True) is None  # type: ignore[arg-type]
    assert child_refusal(initial("s"), **common, exit_child=False) is None  # type: ignore[arg-type]


def test_post_trade_rules_position_limit_reduces_drawdown_halts() -> None:
    limits = _limits(max_position_quantity="500", max_intraday_drawdown="1000")
    calm = StrategyFacts("Momentum_EQ", {"AAPL": D(500)}, D("-1000"))
    assert post_trade_causes(calm, limits) == []  # at the limit is not beyond it
    big = StrategyFacts("Momentum_EQ", {"AAPL": D(-501)}, D(0))
    (cause,) = post_trade_causes(big, limits)
    assert (cause.state, cause.code, cause.numbers["position"]) == (R, "POSITION_LIMIT", "-501")
    both = StrategyFacts("Momentum_EQ", {"AAPL": D(501)}, D("-1000.01"))
    worst = strictest(post_trade_causes(both, limits))
    assert worst is not None and (worst.state, worst.code) == (H, "DRAWDOWN_LIMIT")
    assert worst.numbers == {"loss": "1000.01", "max_intraday_drawdown": "1000"}
    unmarked = StrategyFacts("Momentum_EQ", {}, None)
    assert post_trade_causes(unmarked, limits) == []


def test_breakers_326_lasting_disconnect_and_critical_recon() -> None:
    ok = BreakerFacts({"client1": "READY"}, None, timedelta(seconds=30), {"executions": "ok"}, NOW)
    assert breaker_causes(ok) == []
    short = BreakerFacts(
        {"client1": "DISCONNECTED"}, NOW - timedelta(seconds=30), timedelta(seconds=30), {}, NOW
    )
    assert breaker_causes(short) == []  # not beyond the limit yet
    facts = BreakerFacts(
        {"client1": "ID_IN_USE", "client2": "READY"},
        NOW - timedelta(seconds=31),
        timedelta(seconds=30),
        {"executions": "critical", "positions": "ok"},
        NOW,
    )
    codes = [c.code for c in breaker_causes(facts)]
    assert codes == ["CLIENT_ID_COLLISION", "LASTING_DISCONNECT", "CRITICAL_RECON"]
    assert all(c.scope == GLOBAL_SCOPE and c.state is H for c in breaker_causes(facts))


def test_resume_is_refused_while_a_stricter_cause_stands() -> None:
    causes = breaker_causes(
        BreakerFacts({"client1": "ID_IN_USE"}, None, timedelta(seconds=30), {}, NOW)
    )
    refusal = resume_refusal(GLOBAL_SCOPE, A, causes)
    assert refusal is not None and "CLIENT_ID_COLLISION" in refusal
    assert resume_refusal("Momentum_EQ", A, causes) is None  # another scope's cause
    reducing_cause = post_trade_causes(
        StrategyFacts("Momentum_EQ", {"AAPL": D(900)}, D(0)), _limits(max_position_quantity="500")
    )
    assert resume_refusal("Momentum_EQ", A, reducing_cause) is not None
    assert resume_refusal("Momentum_EQ", R, reducing_cause) is None  # HALTED → REDUCING is fine


_quantities = st.decimals(min_value=D(1), max_value=D(10_000), places=0)
_positions = st.one_of(st.none(), st.decimals(min_value=D(-10_000), max_value=D(10_000), places=0))


@given(
    st.sampled_from(list(TradingState)),
    st.sampled_from(list(Side)),
    _quantities,
    _positions,
    st.booleans(),
)
def test_halted_and_reducing_let_nothing_through_but_their_policy(
    to: TradingState, side: Side, qty: Decimal, position: Decimal | None, desk: bool
) -> None:
    change = transition(
        initial(GLOBAL_SCOPE if desk else "s"), to, actor="a", reason="r", at=NOW, by_rule=True
    )
    state = initial("s") if change is None else change.after
    signed = qty if side in (Side.BUY, Side.BUY_TO_COVER) else -qty
    refused = admission_refusal(state, signal_id="sig", side=side, quantity=qty, position=position)
    if state.state is H:
        assert refused is not None and refused.reason is RejectReason.STRATEGY_HALTED
    elif state.state is R and refused is None:
        # Admitted while reduce-only: strictly smaller, same side of flat (or flat).
        assert position is not None
        after = position + signed
        assert abs(after) < abs(position) and (after == 0 or (after > 0) == (position > 0))
    elif state.state is A:
        assert refused is None
    held = D(0) if position is None else position
    child = child_refusal(state, side=side, quantity=qty, position=held, exit_child=False)
    if state.state is H:
        assert child is not None and child[0] == "cancel"
    elif state.state is R and child is None:
        assert abs(held + signed) <= abs(held)
