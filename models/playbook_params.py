"""Per-strategy intent parameters (`params`): one pydantic model per playbook.

An intent may carry `params`, checked against its strategy's model here: unknown keys are
refused (`UNKNOWN_PARAM`) and ill-typed or out-of-range values too (`INVALID_PARAMS`), each naming
the field, so a producer never has a parameter silently ignored. Every strategy may name the
child-order `template` to run instead of the playbook's choice by urgency.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.child_orders import Template

Positive = Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=6)]


class StrategyParams(BaseModel):
    """What every strategy's params may say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: Template | None = None
    # Route each child to one exchange when its depth alone covers it (`models.venue_choice`).
    route_by_depth: bool = False
    # TWAP: how many slices (instead of one per cadence), and the cadence in seconds (15).
    slices: int | None = Field(default=None, ge=1, le=500)
    cadence_s: int | None = Field(default=None, ge=1, le=3600)


class MomentumParams(StrategyParams):
    """Momentum_EQ: a trailing stop (by amount or percent) and an optional profit target, sent
    with the entry as one bracket (parent, OCA pair of exits)."""

    trail_amount: Positive | None = None
    trail_percent: Annotated[Decimal, Field(gt=0, lt=100, decimal_places=4)] | None = None
    profit_target: Positive | None = None

    @model_validator(mode="after")
    def _one_trail(self) -> MomentumParams:
        if self.trail_amount is not None and self.trail_percent is not None:
            raise ValueError("give trail_amount or trail_percent, not both")
        if self.profit_target is not None and not self.trails:
            raise ValueError(
                "a profit_target needs a trailing stop (trail_amount or trail_percent)"
            )
        return self

    @property
    def trails(self) -> bool:
        return self.trail_amount is not None or self.trail_percent is not None


class ScalpParams(StrategyParams):
    """0DTE_Scalp: an exit (SELL, BUY_TO_COVER) in `tranches` spaced `tranche_spacing_s` apart,
    and whether to hold to expiry instead of flat by the
    close."""

    tranches: int = Field(default=1, ge=1, le=10)
    # Between two tranches of the exit (session seconds).
    tranche_spacing_s: int = Field(default=60, ge=1, le=3600)
    hold_to_expiry: bool = False


class GammaParams(StrategyParams):
    """Gamma_Rebalance: the delta to hedge toward, the instrument hedged with, the child size."""

    target_delta: Annotated[Decimal, Field(max_digits=20, decimal_places=6)] | None = None
    hedge_instrument: str | None = Field(default=None, min_length=1, max_length=32)
    increment: Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=0)] | None = None


class RollParams(StrategyParams):
    """Spread_Roll: how long the combo may work before the legged fallback (seconds)."""

    combo_window_s: int = Field(default=30, ge=1, le=3600)


PARAMS: Mapping[str, type[StrategyParams]] = {
    "Momentum_EQ": MomentumParams,
    "0DTE_Scalp": ScalpParams,
    "Gamma_Rebalance": GammaParams,
    "Spread_Roll": RollParams,
}


class ParamsError(ValueError):
    """Params the strategy's model refuses: `code` UNKNOWN_PARAM or INVALID_PARAMS, `field`."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


def parse_params(strategy: str, raw: Mapping[str, object] | None) -> StrategyParams:
    """The strategy's params model for `raw` (defaults when absent); raises `ParamsError`."""
    model = PARAMS.get(strategy, StrategyParams)
    try:
        return model.model_validate(dict(raw or {}))
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        field = f"params.{where}" if where else "params"
        if first["type"] == "extra_forbidden":
            return _raise("UNKNOWN_PARAM", field, f"{strategy} has no parameter {where!r}")
        detail = str(first["msg"]).removeprefix("Value error, ")
        return _raise("INVALID_PARAMS", field, f"{field}: {detail}")


def _raise(code: str, field: str, message: str) -> StrategyParams:
    raise ParamsError(code, field, message)
