"""A paper drill's outcome (blueprint §13.2) and how it differs from the expected one.

The outcome is what the desk would check by hand after a drill: every fill (by signal, in
execution order: side, shares, price, commission), the P&L per strategy and signal, and the
positions. Values are the extracts' exact strings, so "different" means different to the last
digit; a difference is one line naming what and where, for the operator to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

FILL_FIELDS = ("signal_id", "symbol", "side", "shares", "price", "commission")
PNL_FIELDS = ("strategy", "signal_id", "realized_pl", "unrealized_pl", "fees", "net_pl")
POSITION_FIELDS = ("symbol", "strategy", "quantity", "avg_cost", "realized", "fees")


def outcome(
    fills: Sequence[Mapping[str, Any]],
    pnl: Sequence[Mapping[str, Any]],
    positions: Sequence[Mapping[str, Any]],
) -> dict[str, list[dict[str, str]]]:
    """The drill's outcome from its extract rows (fills in execution order, effective only)."""

    def pick(row: Mapping[str, Any], names: Sequence[str]) -> dict[str, str]:
        return {n: "" if row.get(n) is None else str(row.get(n)) for n in names}

    effective = [f for f in fills if not f.get("superseded_by")]
    return {
        "fills": [pick(f, FILL_FIELDS) for f in effective],
        "pnl": [pick(p, PNL_FIELDS) for p in pnl],
        "positions": [pick(p, POSITION_FIELDS) for p in positions],
    }


def differences(
    expected: Mapping[str, Sequence[Mapping[str, str]]],
    actual: Mapping[str, Sequence[Mapping[str, str]]],
) -> list[str]:
    """Every way `actual` differs from `expected`, one readable line each (empty: the same)."""
    out: list[str] = []
    for section in ("fills", "pnl", "positions"):
        want = list(expected.get(section, []))
        got = list(actual.get(section, []))
        if len(want) != len(got):
            out.append(f"{section}: expected {len(want)} rows, got {len(got)}")
        for n, (w, g) in enumerate(zip(want, got, strict=False), start=1):
            for key in sorted(set(w) | set(g)):
                if w.get(key) != g.get(key):
                    where = w.get("signal_id") or w.get("symbol") or ""
                    out.append(
                        f"{section} row {n} ({where}): {key} expected {w.get(key)!r}, "
                        f"got {g.get(key)!r}"
                    )
        for n, extra in enumerate(got[len(want) :], start=len(want) + 1):
            out.append(f"{section} row {n}: unexpected {dict(extra)}")
        for n, missing in enumerate(want[len(got) :], start=len(got) + 1):
            out.append(f"{section} row {n}: missing {dict(missing)}")
    return out
