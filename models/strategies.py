"""The strategy registry: the playbooks of blueprint §4.3, one entry each.

A strategy name is valid iff it is a key of `STRATEGIES`; adding a strategy is adding one
`StrategySpec` here (and its playbook when the orders queue lands), nothing else (NOTES: "a new
strategy is a new playbook, not a code change elsewhere").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from models.instruments import InstrumentKind


class ExpiryPolicy(StrEnum):
    """What happens to the resulting position as the session or the option's life ends."""

    CLOSE_BEFORE_MARKET_CLOSE = "close_before_market_close"
    HOLD_TO_EXPIRY = "hold_to_expiry"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """What epm knows about a strategy before any market data: its playbook and its limits.

    `instrument_kinds` is what the playbook can trade; an intent for anything else is refused at
    intake rather than failing later in the orders queue. `default_expiry_policy` applies when the
    intent names none (0DTE must be flat before the close, blueprint §4.3).
    """

    name: str
    playbook: str
    description: str
    instrument_kinds: frozenset[InstrumentKind]
    default_expiry_policy: ExpiryPolicy
    default_max_slippage_bps: Decimal


_SPECS = (
    StrategySpec(
        name="0DTE_Scalp",
        playbook="aggressive_entry_scaling_exit",
        description="Aggressive entry, scaling exit, mandatory flat by 15:55 ET; SPY/QQQ options",
        instrument_kinds=frozenset({InstrumentKind.OPTION}),
        default_expiry_policy=ExpiryPolicy.CLOSE_BEFORE_MARKET_CLOSE,
        default_max_slippage_bps=Decimal("50"),
    ),
    StrategySpec(
        name="Spread_Roll",
        playbook="combo_roll_delta_neutral",
        description="Multi-leg order via combination id, delta neutral, bracket orders",
        instrument_kinds=frozenset({InstrumentKind.OPTION}),
        default_expiry_policy=ExpiryPolicy.NONE,
        default_max_slippage_bps=Decimal("30"),
    ),
    StrategySpec(
        name="Momentum_EQ",
        playbook="smart_route_trailing_stop",
        description="Equity smart-routing with a trailing stop; Mag 7 equities",
        instrument_kinds=frozenset({InstrumentKind.STOCK}),
        default_expiry_policy=ExpiryPolicy.NONE,
        default_max_slippage_bps=Decimal("20"),
    ),
    StrategySpec(
        name="Gamma_Rebalance",
        playbook="gex_hedge_increments",
        description="Hedge increments tied to spot GEX levels; drives partial fills",
        instrument_kinds=frozenset({InstrumentKind.STOCK, InstrumentKind.OPTION}),
        default_expiry_policy=ExpiryPolicy.NONE,
        default_max_slippage_bps=Decimal("25"),
    ),
)

STRATEGIES: Mapping[str, StrategySpec] = MappingProxyType({s.name: s for s in _SPECS})


def get_strategy(name: str) -> StrategySpec | None:
    """Return the registered strategy called `name` (names are case-sensitive), or None."""
    return STRATEGIES.get(name)
