"""Scenario files: instruments, start prices and vols, regimes, jumps, halts and faults (YAML).

A scenario is data. The market reads instruments, regimes, jumps and halts; the engine and the
server read `faults` and act on them. Times are either an ET wall time on the session date
(`at: "14:00"`, quoted: unquoted `14:00` is a base-60 integer in YAML 1.1) or an offset from the
simulation start (`after_s: 90`), so a fault drill works whatever `--start` is. A file may say
`extends: default` to take the shipped default's keys (instruments …) and replace some of them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ET = ZoneInfo("America/New_York")
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the bad field."""


def _parse_et_time(value: object) -> time | None:
    if value is None:
        return None
    if isinstance(value, time):
        return value
    if isinstance(value, int):
        raise ValueError(
            f"time {value!r} looks like an unquoted HH:MM (YAML reads it as base 60); "
            "quote it, e.g. at: '14:00'"
        )
    if not isinstance(value, str):
        raise ValueError(f"expected an ET time 'HH:MM[:SS]', got {value!r}")
    try:
        return time.fromisoformat(value.strip())
    except ValueError as e:
        raise ValueError(f"expected an ET time 'HH:MM[:SS]', got {value!r}") from e


def _resolve_extends(data: dict[str, object], source: str, depth: int) -> dict[str, object]:
    """Merge `extends: <shipped name>` bases: the file's top-level keys replace the base's."""
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str) or depth > 4:
        raise ScenarioError(f"{source}: extends must name a shipped scenario (max 5 levels)")
    base_path = SCENARIO_DIR / f"{base_name}.yaml"
    try:
        base = yaml.safe_load(base_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ScenarioError(f"{source}: cannot extend {base_name!r}: {e}") from e
    if not isinstance(base, dict):
        raise ScenarioError(f"{source}: base scenario {base_name!r} is not a mapping")
    merged = _resolve_extends(base, str(base_path), depth + 1)
    merged.update(data)
    return merged


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Timed(_Model):
    """Something that starts at an ET time on the session date or `after_s` after the start."""

    at: time | None = None
    after_s: float | None = Field(default=None, ge=0)

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: object) -> time | None:
        return _parse_et_time(value)

    @model_validator(mode="after")
    def _one_anchor(self) -> _Timed:
        if self.at is not None and self.after_s is not None:
            raise ValueError("give either 'at' (ET time) or 'after_s', not both")
        return self

    def begins(self, start: datetime) -> datetime:
        """Resolve the start of this item against the simulation start (aware UTC).

        With neither `at` nor `after_s` the item is active from the simulation start.
        """
        if self.at is not None:
            session_day = start.astimezone(ET).date()
            return datetime.combine(session_day, self.at, tzinfo=ET).astimezone(UTC)
        return start + timedelta(seconds=self.after_s or 0.0)


class _Window(_Timed):
    duration_s: float | None = Field(default=None, gt=0)

    def ends(self, start: datetime) -> datetime | None:
        """End of the window (None = until the simulation ends)."""
        if self.duration_s is None:
            return None
        return self.begins(start) + timedelta(seconds=self.duration_s)

    def active(self, now: datetime, start: datetime) -> bool:
        """True when `now` is inside [begins, ends)."""
        end = self.ends(start)
        return self.begins(start) <= now and (end is None or now < end)


class InstrumentSpec(_Model):
    """A stock and how it moves: start price, annual vol, spread and size profile.

    `con_id`, `long_name`, `primary_exchange` default to the built-in table for the ten default
    symbols; a new symbol must give them. `iv` is the ATM implied vol of its options (defaults
    to 1.1 × vol). `spread_ticks` is the calm-market quoted spread; it widens with the regime's
    vol multiplier.
    """

    symbol: str
    price: Decimal = Field(gt=0)
    vol: float = Field(default=0.25, gt=0, le=5)
    iv: float | None = Field(default=None, gt=0, le=5)
    dividend_yield: float = Field(default=0.0, ge=0, le=0.5)
    spread_ticks: int = Field(default=1, ge=1, le=100)
    lot_size: int = Field(default=100, ge=1)
    avg_size_lots: float = Field(default=5.0, gt=0)
    trades_per_s: float = Field(default=1.0, ge=0, le=4)
    avg_trade_size: float = Field(default=150.0, gt=0)
    daily_volume: int = Field(default=20_000_000, ge=0)
    con_id: int | None = Field(default=None, gt=0)
    long_name: str | None = None
    primary_exchange: str | None = None
    industry: str | None = None
    category: str | None = None
    options: bool = True
    daily_expiries: bool | None = None  # None = the built-in table (SPY, QQQ, IWM have dailies)
    strike_step: Decimal | None = Field(default=None, gt=0)
    strikes_each_side: int = Field(default=20, ge=1, le=200)
    weeks: int = Field(default=4, ge=1, le=12)

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        value = value.strip().upper()
        if not value or len(value) > 6 or not value.replace(".", "").isalnum():
            raise ValueError(f"bad symbol {value!r}")
        return value


class Regime(_Window):
    """A volatility regime over a window: vol × `vol_mult`, annual `drift`, Poisson jumps.

    `symbols` empty = every underlying. `jump_intensity` is jumps per hour; a jump is a log
    return ~ N(jump_mean, jump_std). `iv_mult` scales option implied vols (event premium).
    `spread_mult` widens stock quotes beyond what the vol multiplier alone does: on a headline
    the makers pull back and spreads blow out even before the tape gets busier.
    """

    name: str = ""
    symbols: tuple[str, ...] = ()
    vol_mult: float = Field(default=1.0, gt=0, le=50)
    iv_mult: float = Field(default=1.0, gt=0, le=20)
    spread_mult: float = Field(default=1.0, gt=0, le=50)
    drift: float = Field(default=0.0, ge=-50, le=50)
    jump_intensity: float = Field(default=0.0, ge=0, le=3600)
    jump_mean: float = Field(default=0.0, ge=-0.5, le=0.5)
    jump_std: float = Field(default=0.0, ge=0, le=0.5)


class Jump(_Timed):
    """A scheduled jump: the price is multiplied by exp(`size`) at the first grid step ≥ its time.

    `symbols` empty = every underlying.
    """

    symbols: tuple[str, ...] = ()
    size: float = Field(ge=-1, le=1)


class Halt(_Window):
    """A trading halt: tick 49 = `state` (1 halted, 2 volatility halt) until it ends."""

    symbol: str
    state: Literal[1, 2] = 1


class DisconnectFault(_Window):
    """Drop every socket at the start; with `refuse`, refuse new connections for `duration_s`."""

    kind: Literal["disconnect"]
    refuse: bool = True


class MdFarmDropFault(_Window):
    """Market-data farm broken (2103) for `duration_s`, then OK again (2104)."""

    kind: Literal["md_farm_drop"]
    farm: str = "usfarm"


class DelayedCommissionsFault(_Window):
    """Commission reports in the window are delivered `delay_s` after their execution."""

    kind: Literal["delayed_commissions"]
    delay_s: float = Field(default=5.0, gt=0)


class DuplicateOrderStatusFault(_Window):
    """orderStatus messages in the window are sent twice."""

    kind: Literal["duplicate_order_status"]


class ExecutionCorrectionFault(_Timed):
    """Correct the `nth` execution (1-based, counted from the window start) of `symbol` ("" = any).

    The correction re-issues the execution with the next exec-id suffix, the price moved by
    `price_delta` and the shares replaced by `shares` when given.
    """

    kind: Literal["execution_correction"]
    symbol: str = ""
    nth: int = Field(default=1, ge=1)
    price_delta: Decimal = Decimal("0")
    shares: Decimal | None = Field(default=None, gt=0)


class RejectRuleFault(_Window):
    """Reject (IB error `code`, 201 by default) orders for `symbol` ("" = any) above `max_qty`
    shares/contracts or `max_notional` dollars (quantity × price × multiplier)."""

    kind: Literal["reject_rule"]
    symbol: str = ""
    max_qty: Decimal | None = Field(default=None, gt=0)
    max_notional: Decimal | None = Field(default=None, gt=0)
    code: int = 201
    message: str = "Order rejected - reason: order size exceeds the account's size limit"

    @model_validator(mode="after")
    def _a_limit(self) -> RejectRuleFault:
        if self.max_qty is None and self.max_notional is None:
            raise ValueError("a reject_rule needs max_qty or max_notional")
        return self


class ComboUnfillableFault(_Window):
    """BAG orders whose legs touch `symbols` (empty = any) are rejected as unfillable."""

    kind: Literal["combo_unfillable"]
    symbols: tuple[str, ...] = ()
    code: int = 201
    message: str = "Order rejected - reason: combo order cannot be filled at this time"


class ComboPartialFillsFault(_Window):
    """BAG orders whose legs touch `symbols` (empty = any) fill at most `max_units` combo units
    per execution, at most once every `interval_s` seconds (the rest as later fills)."""

    kind: Literal["combo_partial_fills"]
    symbols: tuple[str, ...] = ()
    max_units: int = Field(default=1, ge=1)
    interval_s: float = Field(default=1.0, ge=0)


Fault = Annotated[
    DisconnectFault
    | MdFarmDropFault
    | DelayedCommissionsFault
    | DuplicateOrderStatusFault
    | ExecutionCorrectionFault
    | RejectRuleFault
    | ComboUnfillableFault
    | ComboPartialFillsFault,
    Field(discriminator="kind"),
]


class Scenario(_Model):
    """A whole scenario: see `tws_sim/scenarios/*.yaml` for commented examples."""

    name: str = "unnamed"
    version: int = 1
    description: str = ""
    always_open: bool = False
    session_date: date | None = None
    start: time | None = None  # default ET start time when the command line gives none
    rate: float = Field(default=0.045, ge=-0.1, le=1)
    seed: int = 1
    starting_cash: Decimal | None = Field(default=None, gt=0)  # None = the engine's default
    instruments: tuple[InstrumentSpec, ...] = ()
    regimes: tuple[Regime, ...] = ()
    jumps: tuple[Jump, ...] = ()
    halts: tuple[Halt, ...] = ()
    faults: tuple[Fault, ...] = ()

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: object) -> time | None:
        return _parse_et_time(value)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if not self.instruments:
            raise ValueError("a scenario needs at least one instrument")
        symbols = [i.symbol for i in self.instruments]
        dupes = sorted({s for s in symbols if symbols.count(s) > 1})
        if dupes:
            raise ValueError(f"instrument listed twice: {', '.join(dupes)}")
        known = set(symbols)
        for group, items in (("regimes", self.regimes), ("jumps", self.jumps)):
            for item in items:
                unknown = [s for s in item.symbols if s not in known]
                if unknown:
                    raise ValueError(f"{group}: unknown symbol(s) {unknown}")
        for halt in self.halts:
            if halt.symbol not in known:
                raise ValueError(f"halts: unknown symbol {halt.symbol!r}")
        return self

    # ---------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a YAML (or JSON) scenario file.

        Raises `ScenarioError` naming the file and the offending field for a missing file,
        bad YAML or a value the model refuses.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ScenarioError(f"{p}: cannot read scenario file ({e.strerror})") from e
        return cls.from_text(text, source=str(p))

    @classmethod
    def from_text(cls, text: str, source: str = "<scenario>") -> Scenario:
        """Parse scenario YAML text (used by `load`; handy for tests and inline scenarios)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ScenarioError(f"{source}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ScenarioError(f"{source}: expected a mapping at the top level")
        data = _resolve_extends(data, source, depth=0)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in err['loc']) or '<root>'}: {err['msg']}"
                for err in e.errors()
            )
            raise ScenarioError(f"{source}: {problems}") from e

    @classmethod
    def default(cls) -> Scenario:
        """The shipped `default.yaml`: an always-open calm session of the ten default stocks."""
        return cls.load(SCENARIO_DIR / "default.yaml")

    @classmethod
    def named(cls, name: str) -> Scenario:
        """A shipped scenario by name (`default`, `fomc`, `faults`) or a path to a file."""
        candidate = SCENARIO_DIR / f"{name}.yaml"
        if candidate.exists():
            return cls.load(candidate)
        return cls.load(name)

    def instrument(self, symbol: str) -> InstrumentSpec | None:
        """The spec for `symbol`, or None."""
        for spec in self.instruments:
            if spec.symbol == symbol:
                return spec
        return None

    def faults_of(self, kind: str) -> list[Fault]:
        """Faults of one kind, in file order (e.g. `faults_of("reject_rule")`)."""
        return [f for f in self.faults if f.kind == kind]

    def default_start(self, session_day: date) -> datetime:
        """The simulation start for a session date: the scenario's `start` (ET), else 09:30 ET."""
        at = self.start or time(9, 30)
        return datetime.combine(session_day, at, tzinfo=ET).astimezone(UTC)
