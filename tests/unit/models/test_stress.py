"""The stress run's mix, schedule and account (models/stress.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from models.stress import Outcome, arrival_offsets, build_intents, percentile, report


def test_the_same_seed_gives_the_same_intents_and_a_fixed_share_of_refusals() -> None:
    first = build_intents(1000, seed=7, run="r")
    assert first == build_intents(1000, seed=7, run="r")
    assert first != build_intents(1000, seed=8, run="r")
    kinds = Counter(i.kind for i in first)
    # 4 + 2 + 2 of every 100 slots, drawn at random: near 8 % in all.
    assert 50 <= kinds["oversize"] + kinds["negative"] + kinds["cover"] <= 110
    assert kinds["valid"] >= 880
    assert len({i.signal_id for i in first}) == 1000
    assert all(i.payload["quantity"] == "9000000" for i in first if i.kind == "oversize")
    assert all(i.payload["side"] == "BUY_TO_COVER" for i in first if i.kind == "cover")


def test_arrivals_are_evenly_spread_over_the_run() -> None:
    assert arrival_offsets(5, 2.0) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert arrival_offsets(3, 0) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        arrival_offsets(3, -1)
    with pytest.raises(ValueError):
        build_intents(0, seed=1, run="r")


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) is None


def test_the_account_names_every_intent_not_found_and_counts_refusals_by_reason() -> None:
    outcomes = [
        Outcome("a", "valid", 0.0, "COMPLETED", decided_s=0.01, first_fill_s=0.2),
        Outcome("b", "oversize", 0.1, "REJECTED", reason="RISK_LIMIT", decided_s=0.12),
        Outcome("c", "negative", 0.2, "REFUSED", reason="INVALID_QUANTITY", decided_s=0.21),
        Outcome("d", "valid", 0.3, "WORKING", decided_s=0.31),
        Outcome("e", "valid", 0.4, None),
    ]
    r = report(outcomes, sent_ids=["a", "b", "c", "d", "e"], max_backlog=3)
    assert (r.sent, r.accepted, r.rejected) == (5, 2, 2)
    assert r.rejected_by_reason == {"INVALID_QUANTITY": 1, "RISK_LIMIT": 1}
    assert r.unaccounted == ["e"]
    assert not r.all_accounted
    assert r.still_working == 1
    assert r.decided.n == 4
    assert r.first_fill.n == 1
    assert r.first_fill.p50_ms == pytest.approx(200.0)
    done = report(outcomes[:4], sent_ids=["a", "b", "c", "d"], max_backlog=0)
    assert done.all_accounted
    twice = report([*outcomes[:4], outcomes[0]], sent_ids=["a", "b", "c", "d"], max_backlog=0)
    assert twice.duplicated == ["a"]
    assert not twice.all_accounted
