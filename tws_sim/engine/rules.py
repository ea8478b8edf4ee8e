"""Venue rules taken from a scenario: reject limits, delayed commissions, corrections, combos
(refused, or filled a few units at a time).

The scenario (`tws_sim.market.Scenario`) holds faults as data, timed relative to the simulation
start (`at` ET time or `after_s`); the engine acts on the ones that concern the venue.
`VenueRules` is the engine's own, resolved reading of them (aware UTC windows), so the matching
code never depends on the scenario file's shape; `VenueRules.from_scenario` is the one adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Window:
    """A window of simulated time, [start, end) (None = unbounded on that side)."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, now: datetime) -> bool:
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)


ALWAYS = Window()
COMBO_UNFILLABLE = "Order rejected - reason: combo order cannot be filled at this time"


@dataclass(frozen=True, slots=True)
class RejectRule:
    """Reject orders for `symbol` ("" = any) above `max_qty` / `max_notional` with IB `code`."""

    max_qty: Decimal | None = None
    max_notional: Decimal | None = None
    symbol: str = ""
    code: int = 201
    message: str = ""
    window: Window = ALWAYS


@dataclass(frozen=True, slots=True)
class ComboRule:
    """BAG orders touching `symbols` (empty = any) are rejected as unfillable."""

    symbols: tuple[str, ...] = ()
    code: int = 201
    message: str = COMBO_UNFILLABLE
    window: Window = ALWAYS


@dataclass(frozen=True, slots=True)
class ComboSliceRule:
    """BAG orders touching `symbols` (empty = any) fill at most `max_units` combo units per
    execution and at most once every `interval_s` simulated seconds, however much the legs
    show: a thin complex-order book, so a client sees its combo fill over several executions."""

    max_units: Decimal = Decimal(1)
    interval_s: float = 1.0
    symbols: tuple[str, ...] = ()
    window: Window = ALWAYS


@dataclass(frozen=True, slots=True)
class CommissionDelay:
    """Commission reports of executions inside `window` are delivered `delay_s` later."""

    delay_s: float
    window: Window = ALWAYS


@dataclass(frozen=True, slots=True)
class CorrectionRule:
    """Correct the `nth` execution of `symbol` ("" = any) at or after `start`, right after it.

    The correction moves the price by `price_delta` and, when `shares` is given, replaces the
    executed quantity.
    """

    nth: int = 1
    price_delta: Decimal = Decimal(0)
    shares: Decimal | None = None
    symbol: str = ""
    start: datetime | None = None


@dataclass(frozen=True, slots=True)
class VenueRules:
    """What the venue does beyond plain matching; the defaults are a well-behaved paper account."""

    rejects: tuple[RejectRule, ...] = ()
    combos: tuple[ComboRule, ...] = ()
    combo_slices: tuple[ComboSliceRule, ...] = ()
    commission_delays: tuple[CommissionDelay, ...] = ()
    duplicate_status: tuple[Window, ...] = ()
    corrections: tuple[CorrectionRule, ...] = ()
    starting_cash: Decimal = Decimal("1000000")

    @classmethod
    def from_scenario(cls, scenario: object | None, start: datetime | None) -> VenueRules:
        """Resolve the venue faults of `scenario` against the simulation `start`.

        Faults are the scenario's models (`kind` plus fields, `begins(start)` / `ends(start)`)
        or plain mappings with the same keys and optional aware `start` / `end` datetimes. Kinds
        for other parts are ignored here: disconnect, md_farm_drop, and duplicate_order_status,
        which the server applies on the wire to every orderStatus it writes (`duplicate_status`
        stays available for an explicit `VenueRules`, e.g. a venue driven without the server).
        """
        if scenario is None:
            return cls()
        rejects: list[RejectRule] = []
        combos: list[ComboRule] = []
        slices: list[ComboSliceRule] = []
        delays: list[CommissionDelay] = []
        corrections: list[CorrectionRule] = []
        for fault in _get(scenario, "faults") or ():
            kind = str(_get(fault, "kind") or "")
            window = _window(fault, start)
            if kind == "reject_rule":
                qty = _get(fault, "max_qty")
                notional = _get(fault, "max_notional")
                rejects.append(
                    RejectRule(
                        max_qty=None if qty is None else Decimal(str(qty)),
                        max_notional=None if notional is None else Decimal(str(notional)),
                        symbol=str(_get(fault, "symbol") or ""),
                        code=int(_get(fault, "code") or 201),
                        message=str(_get(fault, "message") or ""),
                        window=window,
                    )
                )
            elif kind == "combo_unfillable":
                message = _get(fault, "message")
                combos.append(
                    ComboRule(
                        symbols=tuple(_get(fault, "symbols") or ()),
                        code=int(_get(fault, "code") or 201),
                        message=str(message) if message else COMBO_UNFILLABLE,
                        window=window,
                    )
                )
            elif kind == "combo_partial_fills":
                interval = _get(fault, "interval_s")
                slices.append(
                    ComboSliceRule(
                        max_units=Decimal(str(_get(fault, "max_units") or 1)),
                        interval_s=1.0 if interval is None else float(interval),
                        symbols=tuple(_get(fault, "symbols") or ()),
                        window=window,
                    )
                )
            elif kind == "delayed_commissions":
                delays.append(CommissionDelay(float(_get(fault, "delay_s") or 5.0), window))
            elif kind == "execution_correction":
                shares = _get(fault, "shares")
                corrections.append(
                    CorrectionRule(
                        nth=int(_get(fault, "nth") or 1),
                        price_delta=Decimal(str(_get(fault, "price_delta") or 0)),
                        shares=None if shares is None else Decimal(str(shares)),
                        symbol=str(_get(fault, "symbol") or ""),
                        start=window.start,
                    )
                )
        kwargs: dict[str, Any] = {}
        cash = _get(scenario, "starting_cash")
        if cash is not None:
            kwargs["starting_cash"] = Decimal(str(cash))
        return cls(
            rejects=tuple(rejects),
            combos=tuple(combos),
            combo_slices=tuple(slices),
            commission_delays=tuple(delays),
            corrections=tuple(corrections),
            **kwargs,
        )

    def commission_delay(self, now: datetime) -> float:
        """Seconds to hold back a commission report of an execution at `now` (0 = none)."""
        for d in self.commission_delays:
            if d.window.contains(now):
                return d.delay_s
        return 0.0

    def duplicates_status(self, now: datetime) -> bool:
        """True when orderStatus messages at `now` are sent twice."""
        return any(w.contains(now) for w in self.duplicate_status)


def _get(obj: object, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _window(fault: object, start: datetime | None) -> Window:
    if isinstance(fault, Mapping):
        return Window(fault.get("start"), fault.get("end"))
    begins = getattr(fault, "begins", None)
    if start is None or begins is None:
        return ALWAYS
    ends = getattr(fault, "ends", None)
    return Window(begins(start), ends(start) if ends is not None else None)
