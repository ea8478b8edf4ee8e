"""Use case: the books as an operator reads them (`epm positions`, `epm pnl`, `epm export`).

Load the positions, their financing, (for signals) the fills with their signal ids → the core
(`models.pnl.line_for`, `models.attribution.attribute`, `models.pnl.aggregate`) → rows of
strings. Unrealized P&L is recomputed from the stored mark (`positions_current.mark_price`,
written by the mark tick) against the ledger's *current* quantity and average cost, so a fill
committed since the last tick never shows beside an unrealized figure of the old quantity.
Per signal, each strategy's positions are split by its configured attribution method
(`EPM_ATTRIBUTION`, `EPM_ATTRIBUTION_DEFAULT`: FIFO unless configured), named in each row.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy.engine import Connection

from epm.settings import get_settings
from models.attribution import AttributionMethods, SignalFill, attribute
from models.fills import CENT, ZERO
from models.pnl import (
    UNATTRIBUTED_SIGNAL,
    PnlLine,
    Totals,
    aggregate,
    by_position,
    by_signal,
    by_strategy,
    line_for,
)
from store import books


class GroupBy(StrEnum):
    POSITION = "position"
    STRATEGY = "strategy"
    SIGNAL = "signal"


def money_text(value: Decimal | None) -> str | None:
    """Money as JSON shows it: exact, plain (no exponent), trailing zeros past the cent dropped
    ("50.0000000000" → "50.00", "1.0725" stays), None as null."""
    if value is None:
        return None
    if value == ZERO:
        return "0.00"
    plain = value.normalize()
    if -plain.as_tuple().exponent < 2:  # type: ignore[operator]
        plain = plain.quantize(CENT)
    return format(plain, "f")


def quantity_text(value: Decimal | None) -> str | None:
    """A quantity without trailing zeros ("100", "-2", "0.5"), None as null."""
    if value is None:
        return None
    if value == ZERO:
        return "0"
    return format(value.normalize(), "f")


def financing_of(conn: Connection) -> dict[tuple[int, str], Decimal]:
    """Financing per position; charges not tied to one position are left out of positions."""
    out: dict[tuple[int, str], Decimal] = {}
    for con_id, strategy, amount in books.financing(conn):
        if con_id is None or strategy is None:
            continue
        key = (int(con_id), strategy)
        out[key] = out.get(key, ZERO) + amount
    return out


def position_lines(conn: Connection) -> tuple[list[PnlLine], list[books.PositionRow]]:
    """One line per position, marked at its stored mark."""
    rows = books.positions(conn)
    financing = financing_of(conn)
    lines = [
        line_for(
            con_id=r.con_id,
            strategy=r.strategy,
            symbol=r.symbol,
            quantity=r.quantity,
            avg_cost=r.avg_price,
            multiplier=r.multiplier,
            realized=r.realized_pl,
            fees=r.commissions,
            financing=financing.get((r.con_id, r.strategy), ZERO),
            mark=r.mark_price,
        )
        for r in rows
    ]
    return lines, rows


def signal_lines(conn: Connection, methods: AttributionMethods | None = None) -> list[PnlLine]:
    """Each position split by signal by its strategy's method (`models.attribution`; `methods`
    None: as the settings configure them); the position's financing goes to the signals still
    holding it, else to its last signal."""
    chosen = methods or get_settings().attribution_methods()
    lines, _ = position_lines(conn)
    by_key = {(line.con_id, line.strategy): line for line in lines}
    grouped: dict[tuple[int, str], list[SignalFill]] = {}
    for f in books.signal_fills(conn, by_key):
        grouped.setdefault((f.con_id, f.strategy), []).append(SignalFill(f.record, f.signal_id))
    out: list[PnlLine] = []
    for key, line in by_key.items():
        split = attribute(grouped.get(key, []), chosen.for_strategy(line.strategy))
        shares = sorted(split.shares.values(), key=lambda s: s.signal_id)
        if not shares:
            out.append(line)
            continue
        holder = next((s.signal_id for s in shares if s.open_quantity != ZERO), None)
        for share in shares:
            out.append(
                line_for(
                    con_id=line.con_id,
                    strategy=line.strategy,
                    symbol=line.symbol,
                    quantity=share.open_quantity,
                    avg_cost=line.avg_cost,
                    multiplier=line.multiplier,
                    realized=share.realized,
                    fees=share.fees,
                    financing=line.financing
                    if share.signal_id == (holder or shares[-1].signal_id)
                    else ZERO,
                    mark=line.mark,
                    signal_id=share.signal_id,
                )
            )
    return out


def _line_row(
    line: PnlLine, state: str | None = None, tags: list[str] | None = None
) -> dict[str, Any]:
    return {
        "conid": line.con_id,
        "symbol": line.symbol,
        "strategy": line.strategy,
        "quantity": quantity_text(line.quantity),
        "avg_cost": money_text(line.avg_cost),
        "realized": money_text(line.realized),
        "unrealized": money_text(line.unrealized),
        "fees": money_text(line.fees),
        "financing": money_text(line.financing),
        "net": money_text(line.net),
        "mark": money_text(line.mark),
        **({"state": state, "risk_tags": tags or []} if state is not None or tags else {}),
    }


def _totals_row(total: Totals, group: GroupBy) -> dict[str, Any]:
    first = total.members[0]
    single_contract = len({m.con_id for m in total.members}) == 1
    return {
        "conid": first.con_id if single_contract else None,
        "symbol": first.symbol if single_contract else None,
        "strategy": first.strategy if len({m.strategy for m in total.members}) == 1 else None,
        "signal_id": total.key if group is GroupBy.SIGNAL else None,
        "quantity": None,
        "avg_cost": None,
        "realized": money_text(total.realized),
        "unrealized": money_text(total.unrealized),
        "fees": money_text(total.fees),
        "financing": money_text(total.financing),
        "net": money_text(total.net),
        "positions": total.lines,
        "unmarked": total.unknown_marks,
    }


def positions_view(conn: Connection) -> list[dict[str, Any]]:
    """`epm positions`: one row per position (flat ones too: their realized P&L counts)."""
    lines, rows = position_lines(conn)
    return [_line_row(line, r.state, r.risk_tags) for line, r in zip(lines, rows, strict=True)]


def pnl_view(
    conn: Connection, group: GroupBy, methods: AttributionMethods | None = None
) -> list[dict[str, Any]]:
    """`epm pnl --by GROUP`: per position (as `positions`), per strategy or per signal.

    Per signal, a signal that traded in several strategies gets one row per strategy (the
    attribution is *within* a strategy, by that strategy's method: `methods`, None: as the
    settings configure them; each row names it in `method`).
    """
    if group is GroupBy.POSITION:
        lines, _ = position_lines(conn)
        return [_totals_row(t, group) | _position_fields(t) for t in aggregate(lines, by_position)]
    if group is GroupBy.STRATEGY:
        lines, _ = position_lines(conn)
        return [_totals_row(t, group) for t in aggregate(lines, by_strategy)]
    chosen = methods or get_settings().attribution_methods()
    rows: list[dict[str, Any]] = []
    lines = signal_lines(conn, chosen)
    for total in aggregate(lines, lambda x: f"{x.strategy}\x00{by_signal(x)}"):
        row = _totals_row(total, group)
        row["signal_id"] = total.members[0].signal_id or UNATTRIBUTED_SIGNAL
        row["strategy"] = total.members[0].strategy
        row["method"] = chosen.for_strategy(row["strategy"]).value
        rows.append(row)
    return rows


def _position_fields(total: Totals) -> dict[str, Any]:
    line = total.members[0]
    return {"quantity": quantity_text(line.quantity), "avg_cost": money_text(line.avg_cost)}


def extract_rows(lines: Iterable[PnlLine]) -> list[dict[str, Any]]:
    """The reporting handoff (§9.5): strategy, signal_id, realized_pl, unrealized_pl, fees,
    net_pl per strategy and signal."""
    out: list[dict[str, Any]] = []
    for total in aggregate(lines, lambda x: f"{x.strategy}\x00{by_signal(x)}"):
        first = total.members[0]
        out.append(
            {
                "strategy": first.strategy,
                "signal_id": first.signal_id or UNATTRIBUTED_SIGNAL,
                "realized_pl": money_text(total.realized),
                "unrealized_pl": money_text(total.unrealized),
                "fees": money_text(total.fees),
                "financing": money_text(total.financing),
                "net_pl": money_text(total.net),
            }
        )
    return out
