"""Netting per underlying (blueprint §8.4): the book's delta, gamma, vega and theta by underlying.

Each position contributes quantity x multiplier x its greek: a share of stock is one delta and
nothing else; an option carries its model greeks (IB's `model_*` ticks in `md:{conid}`), per
unit of underlying, so a contract of 100 with delta 0.5 is 50 deltas. A position whose greeks
are missing, or older than `GREEKS_MAX_AGE`, is left out of the sums and named in
`missing_greeks` / `stale_greeks`: a partial figure is never passed off as a whole one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from models.fills import ZERO, exact

GREEKS_MAX_AGE = timedelta(minutes=5)
OPTION_TYPES = frozenset({"OPT", "FOP"})
# Types that are one delta per unit (x multiplier) and carry no other greek.
LINEAR_TYPES = frozenset({"STK", "ETF", "FUT"})


@dataclass(frozen=True, slots=True)
class HeldPosition:
    """A non-flat position with what netting needs of its contract."""

    con_id: int
    strategy: str
    underlying: str
    sec_type: str
    quantity: Decimal
    multiplier: Decimal

    @property
    def name(self) -> str:
        return f"{self.con_id}:{self.strategy}"


@dataclass(frozen=True, slots=True)
class Greeks:
    """An option's model greeks per unit of underlying, and when they were published."""

    delta: Decimal | None
    gamma: Decimal | None
    vega: Decimal | None
    theta: Decimal | None
    as_of: datetime | None

    def values(self) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
        """(delta, gamma, vega, theta), or None when any is missing."""
        d, g, v, t = self.delta, self.gamma, self.vega, self.theta
        if d is None or g is None or v is None or t is None:
            return None
        return d, g, v, t


@dataclass(slots=True)
class UnderlyingNet:
    """One underlying's netted greeks, with the positions they leave out and why."""

    underlying: str
    net_delta: Decimal = ZERO
    net_gamma: Decimal = ZERO
    net_vega: Decimal = ZERO
    net_theta: Decimal = ZERO
    positions: int = 0
    missing_greeks: list[str] = field(default_factory=list)
    stale_greeks: list[str] = field(default_factory=list)
    by_strategy: dict[str, Decimal] = field(default_factory=dict)  # net delta per strategy

    @property
    def complete(self) -> bool:
        return not self.missing_greeks and not self.stale_greeks


@exact
def net_by_underlying(
    positions: Iterable[HeldPosition], greeks: Mapping[int, Greeks], now: datetime
) -> dict[str, UnderlyingNet]:
    """Net every position's greeks into its underlying (flat positions contribute nothing)."""
    out: dict[str, UnderlyingNet] = {}
    for p in sorted(positions, key=lambda h: (h.underlying, h.con_id, h.strategy)):
        if p.quantity == ZERO:
            continue
        net = out.get(p.underlying)
        if net is None:
            net = out[p.underlying] = UnderlyingNet(p.underlying)
        net.positions += 1
        units = p.quantity * p.multiplier
        if p.sec_type not in OPTION_TYPES:
            if p.sec_type not in LINEAR_TYPES:
                net.missing_greeks.append(p.name)
                continue
            net.net_delta += units
            net.by_strategy[p.strategy] = net.by_strategy.get(p.strategy, ZERO) + units
            continue
        g = greeks.get(p.con_id)
        values = None if g is None else g.values()
        if g is None or values is None:
            net.missing_greeks.append(p.name)
            continue
        if g.as_of is None or now - g.as_of > GREEKS_MAX_AGE:
            net.stale_greeks.append(p.name)
            continue
        g_delta, g_gamma, g_vega, g_theta = values
        delta = units * g_delta
        net.net_delta += delta
        net.net_gamma += units * g_gamma
        net.net_vega += units * g_vega
        net.net_theta += units * g_theta
        net.by_strategy[p.strategy] = net.by_strategy.get(p.strategy, ZERO) + delta
    return out


def _number(text: str | None) -> Decimal | None:
    if text is None or not text.strip():
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        return None
    return value if value.is_finite() else None


def greeks_from_fields(fields: Mapping[str, str]) -> Greeks:
    """The model greeks of an `md:{conid}` hash (`model_delta` …), timed by its `ts`."""
    stamp = fields.get("ts")
    try:
        as_of = datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        as_of = None
    if as_of is not None and as_of.tzinfo is None:
        as_of = None
    return Greeks(
        delta=_number(fields.get("model_delta")),
        gamma=_number(fields.get("model_gamma")),
        vega=_number(fields.get("model_vega")),
        theta=_number(fields.get("model_theta")),
        as_of=as_of,
    )
