"""0DTE_Scalp: aggressive entry on SPY/QQQ same-day options.

Immediate and High urgency sweep (the default rule); Normal pegs to the mid; Passive, rare for a
scalp, still runs a TWAP.

Flat before the close: a 0DTE position in an option expiring today is closed from 5 minutes
before the session's close (15:55 ET, 12:55 on an early-close day) unless the intent that opened
it said `hold_to_expiry` (expiry policy or params): `must_flatten` decides, `flatten_payload`
is the intent that does it (an Immediate sweep through the usual path, idempotent per attempt).

Scaling exit: an exit (SELL, BUY_TO_COVER) with `params.tranches` > 1 and no template named goes
out in that many tranches, `tranche_spacing_s` apart, each a sweep (`models.planners.tranches`).
The flat-by-close intent is never scaled: five minutes is what is left of the option's life.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from models.child_orders import Template
from models.intent import Intent, Side
from models.planners import tranches
from models.playbook_params import ScalpParams
from models.playbooks.choice import Plan, Refusal, action_of, default_plan

EXIT_SIDES = (Side.SELL, Side.BUY_TO_COVER)


def plan(intent: Intent, now: datetime) -> Plan | Refusal:
    params = intent.strategy_params
    if (
        isinstance(params, ScalpParams)
        and params.tranches > 1
        and params.template is None
        and intent.side in EXIT_SIDES
    ):
        spacing = timedelta(seconds=params.tranche_spacing_s)
        children = tranches(
            action_of(intent), intent.quantity, now, count=params.tranches, spacing=spacing
        )
        reason = (
            f"0DTE_Scalp, scaling exit: {params.tranches} tranches every "
            f"{params.tranche_spacing_s}s, each a sweep"
        )
        return Plan(Template.SWEEP, reason, tuple(children))
    return default_plan(intent, now, "0DTE_Scalp, ")


# Flat this long before the session's close (blueprint §4.3: 15:55 ET on a regular day).
FLAT_BEFORE_CLOSE = timedelta(minutes=5)
FLATTEN_MAX_SLIPPAGE_BPS = Decimal(1000)


def flat_by(close: datetime) -> datetime:
    """When a 0DTE position must be flat: 5 minutes before the session's close."""
    return close - FLAT_BEFORE_CLOSE


def must_flatten(
    *, expiry: date | None, today: date, now: datetime, close: datetime | None, hold: bool
) -> bool:
    """Whether a 0DTE position is to be closed now: its option expires today, the session's
    flat-by time has come, and nobody asked to hold it to expiry."""
    if hold or close is None or expiry is None:
        return False
    return expiry == today and now >= flat_by(close)


def flatten_payload(
    *, today: date, con_id: int, attempt: int, occ: str, quantity: Decimal
) -> dict[str, object]:
    """The intent that closes a 0DTE position of `quantity` (signed: long > 0)."""
    return {
        "signal_id": f"flat-{today:%Y%m%d}-{con_id}-{attempt}",
        "strategy": "0DTE_Scalp",
        "instrument": occ,
        "side": "SELL" if quantity > 0 else "BUY_TO_COVER",
        "quantity": str(abs(quantity)),
        "urgency": "Immediate",
        "time_in_force": "DAY",
        "expiry_policy": "close_before_market_close",
        # Getting flat before expiry is not optional: a same-day option's spread is often wider
        # than the strategy's entry band, so the close may pay up to this much.
        "max_slippage_bps": str(FLATTEN_MAX_SLIPPAGE_BPS),
    }
