"""Combo margin before sending (§6.4): does a what-if's initial margin change fit the account?

A BAG's margin depends on how its legs offset, which only the venue knows, so before the combo is
sent a what-if copy asks it. The answer's `initMarginChange` must leave the account's available
funds at or above the headroom floor (`account.min_margin_headroom` of net liquidation, the
floor intake's headroom gate uses). Anything short of a usable answer refuses: no answer within
the timeout, an answer without the figure, or an account summary that cannot be trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from models.risk import AccountFacts

# How long a what-if may take to answer before the combo is refused (IB answers in well under a
# second; a silent venue must not leave the roll waiting, nor let it go unchecked).
WHAT_IF_TIMEOUT = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: str


@dataclass(frozen=True, slots=True)
class Fits:
    numbers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refused:
    code: str
    message: str
    numbers: dict[str, str] = field(default_factory=dict)


def _number(value: str | None) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    # IB sends Double.MAX_VALUE for a figure it has not computed.
    return number if number.is_finite() and abs(number) < Decimal("1e300") else None


def verdict(
    answer: Mapping[str, str],
    account: AccountFacts,
    headroom_share: Decimal,
    asked_at: datetime,
    now: datetime,
    timeout: timedelta = WHAT_IF_TIMEOUT,
) -> Waiting | Fits | Refused:
    """The combo's margin decision from the venue's what-if `answer` (empty while none came)."""
    if not answer:
        if now - asked_at > timeout:
            return Refused(
                "WHAT_IF_TIMEOUT",
                f"the venue did not answer the combo's what-if within "
                f"{timeout.total_seconds():g} s",
                {"asked_at": asked_at.isoformat()},
            )
        return Waiting("waiting for the venue's what-if margin")
    change = _number(answer.get("initMarginChange"))
    if change is None:
        return Refused(
            "WHAT_IF_NO_MARGIN",
            f"the what-if answered no initMarginChange ({answer.get('warning') or 'no warning'})",
            {"initMarginChange": str(answer.get("initMarginChange"))},
        )
    if not account.live:
        return Refused("ACCOUNT_DATA_UNAVAILABLE", f"margin cannot be checked: {account.why}")
    net_liq, available = account.net_liquidation, account.available_funds
    if net_liq is None or available is None or net_liq <= 0:
        return Refused(
            "ACCOUNT_DATA_UNAVAILABLE",
            "margin cannot be checked: no positive NetLiquidation and AvailableFunds",
        )
    floor = headroom_share * net_liq
    after = available - change
    numbers = {
        "init_margin_change": str(change),
        "available_funds": str(available),
        "net_liquidation": str(net_liq),
        "min_margin_headroom": str(headroom_share),
        "floor": str(floor),
        "available_after": str(after),
    }
    if after < floor:
        return Refused(
            "COMBO_MARGIN",
            f"the combo's initial margin change {change} would leave available funds {after}, "
            f"below the headroom floor {floor} ({headroom_share} of net liquidation {net_liq})",
            numbers,
        )
    return Fits(numbers)
