"""Combos (Spread_Roll): the net quote of a BAG, progress in combo units, the legged fallback's
leg order and the residual delta it leaves to hedge. Pure; the orders path loads the legs'
snapshots and fills and asks here.

A combo is bought as defined (each leg's action per combo unit) and sold reversed. Its bid is
what selling one unit brings in and its ask what buying one costs, so either may be negative (a
credit combo).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from models.fills import Side
from models.market import MarketSnapshot

ZERO = Decimal(0)
# IB reports USD combo executions (and streams combo quotes) under this conId.
BAG_CON_ID = 28812380


@dataclass(frozen=True, slots=True)
class ComboLeg:
    """One leg per combo unit: its contract, ratio and action (for a BUY of the combo)."""

    con_id: int
    ratio: int
    action: Side


def leg_actions(legs: Sequence[ComboLeg], combo_action: Side) -> list[Side]:
    """Each leg's action when the combo itself is bought or sold (a sale reverses every leg)."""
    return [leg.action if combo_action is Side.BUY else leg.action.opposite for leg in legs]


def combo_snapshot(
    legs: Sequence[ComboLeg], snapshots: Sequence[MarketSnapshot | None]
) -> MarketSnapshot | None:
    """The combo's net quote from its legs' quotes (None when any leg has no two-sided quote).

    As of the oldest leg quote (a stale leg makes the combo stale), halted if any leg is.
    """
    if not legs or len(snapshots) != len(legs) or any(s is None for s in snapshots):
        return None
    bid = ask = ZERO
    oldest: datetime | None = None
    halted = False
    for leg, snap in zip(legs, snapshots, strict=True):
        assert snap is not None
        if snap.bid is None or snap.ask is None:
            return None
        ratio = Decimal(leg.ratio)
        if leg.action is Side.BUY:
            ask += snap.ask * ratio
            bid += snap.bid * ratio
        else:
            ask -= snap.bid * ratio
            bid -= snap.ask * ratio
        oldest = snap.as_of if oldest is None else min(oldest, snap.as_of)
        halted = halted or snap.halted
    assert oldest is not None
    tick = min(s.min_tick for s in snapshots if s is not None)
    return MarketSnapshot(
        con_id=BAG_CON_ID, as_of=oldest, bid=bid, ask=ask, halted=halted, min_tick=tick
    )


def units_by_legs(filled: Sequence[Decimal], ratios: Sequence[int]) -> Decimal:
    """Whole combo units the legs' fills make up (the least-filled leg decides)."""
    if not filled or len(filled) != len(ratios):
        return ZERO
    return min(
        (f / Decimal(r)).to_integral_value(rounding="ROUND_FLOOR")
        for f, r in zip(filled, ratios, strict=True)
    )


def fallback_order(legs: Sequence[tuple[Side, int]], combo_action: Side) -> list[int]:
    """The order the legs go out in when the combo does not fill: the riskier leg first.

    Being short an option that is not yet covered is the risk a legged roll must not run, so the
    legs that buy go first (the new protection, or buying back the old short), then the legs
    that sell; within each, the larger ratio first. `legs` are (action, ratio) per combo unit
    bought; returns indexes into `legs`.
    """
    actions = [a if combo_action is Side.BUY else a.opposite for a, _r in legs]
    return sorted(range(len(legs)), key=lambda i: (actions[i] is not Side.BUY, -legs[i][1], i))


def residual_delta(
    fills: Sequence[tuple[Side, Decimal]],
    deltas: Sequence[Decimal | None],
    multipliers: Sequence[Decimal],
) -> Decimal | None:
    """The delta (in underlying shares) the filled legs add, or None when a delta is unknown.

    A hedge of minus this, in the underlying, leaves the roll delta neutral.
    """
    total = ZERO
    for (side, quantity), delta, multiplier in zip(fills, deltas, multipliers, strict=True):
        if quantity == 0:
            continue
        if delta is None:
            return None
        signed = quantity if side is Side.BUY else -quantity
        total += signed * multiplier * delta
    return total


def hedge_order(residual: Decimal) -> tuple[Side, Decimal] | None:
    """The underlying order that offsets `residual` delta, in whole shares (None under one)."""
    shares = abs(residual).to_integral_value(rounding="ROUND_HALF_EVEN")
    if shares < 1:
        return None
    return (Side.SELL if residual > 0 else Side.BUY), shares
