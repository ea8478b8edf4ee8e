"""End-of-day attribution (blueprint §9.3): the book split by signal as of a session's close,
and what each signal made that day.

Each position's fills up to the close are replayed within the position by its strategy's
method (`models.attribution.attribute`: FIFO unless configured otherwise), each signal's open
quantity marked at the position's mark at the close; financing goes to the signal still
holding the position (else its last signal), as in the views. The figures are cumulative
(since the position opened); the day's part is the difference with the previous day's
document, per strategy and signal, so the days add up.
The document records the method of each strategy in it (a strategy whose method changed since
the previous day has its signals' figures recomputed by the new one, so that day's change per
signal includes the reallocation; the strategy's total is unaffected).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from models.attribution import AttributionMethods, SignalFill, attribute
from models.fills import ZERO, exact
from models.pnl import UNATTRIBUTED_SIGNAL, PnlLine, aggregate, line_for

FIGURES = ("realized", "unrealized", "fees", "financing", "net")


@dataclass(frozen=True, slots=True)
class PositionAtClose:
    """What a position's attribution needs beside its fills: contract facts, the mark at the
    close (None: never marked), and its financing charged up to the close."""

    con_id: int
    strategy: str
    symbol: str | None
    multiplier: Decimal
    mark: Decimal | None
    financing: Decimal


def _text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if value == ZERO:
        return "0"
    return format(value.normalize(), "f")


def _number(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@exact
def signal_lines(
    positions: Iterable[PositionAtClose],
    fills: Mapping[tuple[int, str], Sequence[SignalFill]],
    methods: AttributionMethods | None = None,
) -> list[PnlLine]:
    """One line per (position, signal) as of the close, each position split by its strategy's
    method (`methods`; None: FIFO for all)."""
    chosen = methods or AttributionMethods()
    out: list[PnlLine] = []
    for p in sorted(positions, key=lambda x: (x.strategy, x.con_id)):
        method = chosen.for_strategy(p.strategy)
        split = attribute(fills.get((p.con_id, p.strategy), ()), method)
        shares = sorted(split.shares.values(), key=lambda s: s.signal_id)
        if not shares:
            continue
        holder = next((s.signal_id for s in shares if s.open_quantity != ZERO), None)
        charged = holder or shares[-1].signal_id
        for share in shares:
            out.append(
                line_for(
                    con_id=p.con_id,
                    strategy=p.strategy,
                    symbol=p.symbol,
                    quantity=share.open_quantity,
                    avg_cost=split.position.avg_price,
                    multiplier=p.multiplier,
                    realized=share.realized,
                    fees=share.fees,
                    financing=p.financing if share.signal_id == charged else ZERO,
                    mark=p.mark,
                    signal_id=share.signal_id,
                )
            )
    return out


def _key(strategy: str, signal: str) -> str:
    return f"{strategy}\x00{signal}"


@exact
def day_document(
    day: date,
    cutoff: datetime,
    lines: Sequence[PnlLine],
    previous: Mapping[str, Any] | None,
    methods: AttributionMethods | None = None,
) -> dict[str, Any]:
    """The day's document: per (strategy, signal) the cumulative figures and the day's change
    against `previous` (the last earlier day's document; None: the first, all of it is the
    day's), and the position lines they are made of. Decimals as exact text.

    `methods` (None: FIFO for all) must be the one `lines` were split with: the document says
    which method each strategy's rows were attributed by (`method` of a row, `methods` per
    strategy), and `method` at the top is the one of any strategy not configured.
    """
    chosen = methods or AttributionMethods()
    before: dict[str, Mapping[str, Any]] = {}
    if previous is not None:
        for prior_row in previous.get("rows", []):
            before[_key(prior_row["strategy"], prior_row["signal_id"])] = prior_row
    rows: list[dict[str, Any]] = []
    totals = aggregate(lines, lambda x: _key(x.strategy, x.signal_id or UNATTRIBUTED_SIGNAL))
    seen: set[str] = set()
    for total in totals:
        seen.add(total.key)
        first = total.members[0]
        figures = {
            "realized": total.realized,
            "unrealized": total.unrealized,
            "fees": total.fees,
            "financing": total.financing,
            "net": total.net,
        }
        old = before.get(total.key, {})
        row: dict[str, Any] = {
            "strategy": first.strategy,
            "signal_id": first.signal_id or UNATTRIBUTED_SIGNAL,
            "method": chosen.for_strategy(first.strategy).value,
            **{k: _text(v) for k, v in figures.items()},
            "positions": total.lines,
            "unmarked": total.unknown_marks,
        }
        for name, value in figures.items():
            # A signal new since the previous day (or the first document) started from zero.
            prior = _number(old.get(name)) if old else ZERO
            row[f"day_{name}"] = None if value is None or prior is None else _text(value - prior)
        rows.append(row)
    # A signal gone from the book since the previous day (its position's fills corrected away)
    # keeps a row, so the day's changes still add up.
    for key in sorted(set(before) - seen):
        old = before[key]
        gone: dict[str, Any] = {
            "strategy": old["strategy"],
            "signal_id": old["signal_id"],
            "method": chosen.for_strategy(old["strategy"]).value,
            **{k: "0" for k in FIGURES},
            "positions": 0,
            "unmarked": 0,
        }
        for name in FIGURES:
            prior = _number(old.get(name))
            gone[f"day_{name}"] = None if prior is None else _text(-prior)
        rows.append(gone)
    return {
        "day": day.isoformat(),
        "cutoff": cutoff.isoformat(),
        "method": chosen.default.value,
        "methods": {
            strategy: chosen.for_strategy(strategy).value
            for strategy in sorted({row["strategy"] for row in rows})
        },
        "previous_day": None if previous is None else previous.get("day"),
        "rows": rows,
        "positions": [
            {
                "conid": line.con_id,
                "symbol": line.symbol,
                "strategy": line.strategy,
                "signal_id": line.signal_id or UNATTRIBUTED_SIGNAL,
                "method": chosen.for_strategy(line.strategy).value,
                "quantity": _text(line.quantity),
                "avg_cost": _text(line.avg_cost),
                "mark": _text(line.mark),
                "realized": _text(line.realized),
                "unrealized": _text(line.unrealized),
                "fees": _text(line.fees),
                "financing": _text(line.financing),
                "net": _text(line.net),
            }
            for line in lines
        ],
    }
