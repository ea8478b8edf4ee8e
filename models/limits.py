"""Risk limits as configuration: a versioned, validated document, pure.

The limits live in a TOML file (the shipped default is `epm/limits/default.toml`; `epm.limits`
reads files). This module only turns the decoded document into a `Limits` value, or refuses it
with a `LimitsInvalid` naming every offending field, so a bad file stops start-up with a message a
person can act on instead of trading under limits nobody meant.

Shape (version 1):
- `version`: the document's format version; an unknown one is refused, not guessed at.
- `defaults.instrument` / `instruments.<SYMBOL>`: per-order caps (`max_order_notional`,
  `max_order_quantity`); a symbol's table overrides only the fields it names.
- `defaults.strategy` / `strategies.<name>`: position caps in quantity, delta and gamma,
  `max_active_intents`, `max_intraday_drawdown` (a positive loss amount); same override rule.
- `account.min_margin_headroom`: the fraction of net liquidation that must stay free.

Amounts are `Decimal`, written as strings or integers: a TOML float is refused because it is a
binary approximation of what the operator typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

__all__ = [
    "SUPPORTED_VERSION",
    "AccountLimits",
    "InstrumentLimits",
    "Limits",
    "LimitsInvalid",
    "StrategyLimits",
    "instrument_limits",
    "parse_limits",
    "strategy_limits",
]

SUPPORTED_VERSION = 1


def _no_float(value: object) -> object:
    if isinstance(value, float):
        raise ValueError('write amounts as strings or integers (e.g. "2.5"), not TOML floats')
    return value


Amount = Annotated[Decimal, BeforeValidator(_no_float), Field(gt=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstrumentLimits(_Strict):
    """Per-order caps for one instrument (None in an override: inherit the default)."""

    max_order_notional: Amount | None = None
    max_order_quantity: Amount | None = None


class StrategyLimits(_Strict):
    """Per-strategy caps (None in an override: inherit the default)."""

    max_position_quantity: Amount | None = None
    max_position_delta: Amount | None = None
    max_position_gamma: Amount | None = None
    max_active_intents: Annotated[int, Field(gt=0)] | None = None
    max_intraday_drawdown: Amount | None = None
    # Seconds within which the same strategy, instrument and side under another signal id is a
    # possible duplicate (0: no check). Optional even in the defaults: unset means 5 (a limits
    # file that never heard of it still gets the check; the shipped file sets 0).
    duplicate_window_s: Annotated[int, Field(ge=0, le=3600)] | None = None


# Fields the defaults may leave unset (each has a documented fallback).
_OPTIONAL_IN_DEFAULTS = frozenset({"duplicate_window_s"})
DEFAULT_DUPLICATE_WINDOW_S = 5


class AccountLimits(_Strict):
    """Account-wide: the fraction of net liquidation that must stay free as margin headroom."""

    min_margin_headroom: Annotated[
        Decimal, BeforeValidator(_no_float), Field(ge=0, lt=1, allow_inf_nan=False)
    ]


class Defaults(_Strict):
    """The limits every instrument and strategy gets unless its own table says otherwise."""

    instrument: InstrumentLimits
    strategy: StrategyLimits


class Limits(_Strict):
    """A whole limits document, validated."""

    version: int
    defaults: Defaults
    account: AccountLimits
    instruments: dict[str, InstrumentLimits] = Field(default_factory=dict)
    strategies: dict[str, StrategyLimits] = Field(default_factory=dict)


class LimitsInvalid(ValueError):
    """The limits document does not validate; the message lists every problem, one a line."""


def _complete(model: BaseModel, where: str) -> list[str]:
    return [
        f"{where}.{name}: required in the defaults"
        for name, v in model
        if v is None and name not in _OPTIONAL_IN_DEFAULTS
    ]


def parse_limits(data: Mapping[str, Any], source: str = "limits") -> Limits:
    """Validate a decoded limits document; `source` (a file name) prefixes the message."""
    version = data.get("version")
    if version != SUPPORTED_VERSION:
        raise LimitsInvalid(
            f"{source}: version must be {SUPPORTED_VERSION} (got {version!r}); "
            "this epm does not know that format"
        )
    try:
        limits = Limits.model_validate(dict(data))
    except ValidationError as e:
        lines = [
            f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
            for err in e.errors()
        ]
        raise LimitsInvalid(f"{source} does not validate:\n  " + "\n  ".join(lines)) from None
    missing = _complete(limits.defaults.instrument, "defaults.instrument") + _complete(
        limits.defaults.strategy, "defaults.strategy"
    )
    if missing:
        raise LimitsInvalid(f"{source} does not validate:\n  " + "\n  ".join(missing))
    return limits


def instrument_limits(limits: Limits, symbol: str) -> InstrumentLimits:
    """The caps in force for `symbol`: its own table's fields over the defaults."""
    override = limits.instruments.get(symbol)
    base = limits.defaults.instrument
    if override is None:
        return base
    return base.model_copy(update=override.model_dump(exclude_none=True))


def strategy_limits(limits: Limits, strategy: str) -> StrategyLimits:
    """The caps in force for `strategy`: its own table's fields over the defaults."""
    override = limits.strategies.get(strategy)
    base = limits.defaults.strategy
    if override is None:
        return base
    return base.model_copy(update=override.model_dump(exclude_none=True))


# --- Operator overrides (`epm limits set`): one field of the document, addressed by a dotted path.

_INSTRUMENT_FIELDS = tuple(InstrumentLimits.model_fields)
_STRATEGY_FIELDS = tuple(StrategyLimits.model_fields)
_ACCOUNT_FIELDS = tuple(AccountLimits.model_fields)

PATH_FORMS = (
    "defaults.instrument.FIELD",
    "defaults.strategy.FIELD",
    "instruments.<TEXT>.FIELD",
    "strategies.<NAME>.FIELD",
    "account.FIELD",
)


def _fields_of(section: str, name: str | None) -> tuple[str, ...]:
    if section == "account":
        return _ACCOUNT_FIELDS
    kind = name if section == "defaults" else section
    return _INSTRUMENT_FIELDS if kind in ("instrument", "instruments") else _STRATEGY_FIELDS


def limit_path_parts(path: str) -> tuple[str, ...]:
    """Split and check an override path; `LimitsInvalid` names the forms and fields it allows.

    `instruments.<TEXT>` / `strategies.<NAME>` may name one not in the file (the override adds
    it); the name is everything between the section and the field, so it may hold dots.
    """
    parts = tuple(path.split("."))
    section = parts[0]
    shape_ok = (
        (section == "account" and len(parts) == 2)
        or (section == "defaults" and len(parts) == 3 and parts[1] in ("instrument", "strategy"))
        or (section in ("instruments", "strategies") and len(parts) >= 3)
    )
    if not shape_ok or any(p.strip() == "" for p in parts):
        raise LimitsInvalid(
            f"unknown limit path {path!r}; a path is one of: " + ", ".join(PATH_FORMS)
        )
    if section in ("instruments", "strategies"):
        parts = (section, ".".join(parts[1:-1]), parts[-1])
    name = parts[1] if len(parts) == 3 else None
    fields = _fields_of(section, name)
    if parts[-1] not in fields:
        raise LimitsInvalid(
            f"unknown limit field {parts[-1]!r} in {path!r}; {'.'.join(parts[:-1])} has: "
            + ", ".join(fields)
        )
    return parts


def with_overrides(limits: Limits, overrides: Mapping[str, str]) -> Limits:
    """`limits` with each `path → value` (text, as stored) applied, validated as a whole.

    The values go through the same validation as the file (so "abc", "-5", a fraction where a
    count is wanted are refused the same way); `LimitsInvalid` names the offending path.
    """
    if not overrides:
        return limits
    doc: dict[str, Any] = limits.model_dump(mode="json", exclude_none=True)
    for path, value in overrides.items():
        parts = limit_path_parts(path)
        node = doc
        for key in parts[:-1]:
            child = node.setdefault(key, {})
            node = child
        node[parts[-1]] = value
    return parse_limits(doc, "limits with overrides")
