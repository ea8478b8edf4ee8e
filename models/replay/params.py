"""`--param key=value`: what a replay run changes in the recorded intents, so runs can be compared.

A key is an intent field (`urgency`, `max_slippage_bps`, `time_in_force`, `target_price`,
`quantity`) or `params.NAME` (the playbook's parameters, `models.playbook_params`), optionally
scoped to one strategy as `STRATEGY:key` (`Momentum_EQ:params.slices=5`). Values stay text:
intake validates them exactly as it validates a producer's intent, so a bad value is refused
there with its reason code rather than guessed at here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

CENT = Decimal("0.01")

INTENT_FIELDS = frozenset(
    {"urgency", "max_slippage_bps", "time_in_force", "target_price", "quantity", "expiry_policy"}
)


class ParamError(ValueError):
    """A `--param` that is not `key=value` or names nothing an intent has."""


@dataclass(frozen=True, slots=True)
class Override:
    strategy: str | None
    path: tuple[str, ...]  # ("urgency",) or ("params", "slices")
    value: str

    @property
    def label(self) -> str:
        scope = f"{self.strategy}:" if self.strategy else ""
        return f"{scope}{'.'.join(self.path)}={self.value}"


def parse_override(text: str) -> Override:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or value == "":
        raise ParamError(f"--param must be key=value, not {text!r}")
    strategy, colon, field = key.strip().rpartition(":")
    path = tuple(field.split("."))
    is_param = path[0] == "params" and len(path) == 2 and bool(path[1])
    if not is_param and not (len(path) == 1 and path[0] in INTENT_FIELDS):
        known = ", ".join(sorted(INTENT_FIELDS))
        raise ParamError(f"--param {key!r}: not an intent field ({known}) nor params.NAME")
    return Override(strategy if colon else None, path, value.strip())


def apply_overrides(intent: Mapping[str, Any], overrides: Iterable[Override]) -> dict[str, Any]:
    """The intent with the overrides that apply to its strategy (later ones win)."""
    out = dict(intent)
    for o in overrides:
        if o.strategy is not None and o.strategy != intent.get("strategy"):
            continue
        if o.path[0] == "params":
            params = dict(out.get("params") or {})
            params[o.path[1]] = o.value
            out["params"] = params
        else:
            out[o.path[0]] = o.value
    return out


MONEY_COLUMNS = ("realized_pl", "unrealized_pl", "fees", "net_pl")


def comparison_rows(
    runs: Iterable[tuple[str, Iterable[Mapping[str, str]]]],
) -> list[dict[str, str]]:
    """Several runs side by side: one row per (run, strategy), each run's P&L extract rows
    (exact strings, one per strategy and signal) added up per strategy."""
    rows: list[dict[str, str]] = []
    for label, pnl in runs:
        totals: dict[str, dict[str, Decimal]] = {}
        for r in pnl:
            t = totals.setdefault(r["strategy"], dict.fromkeys(MONEY_COLUMNS, Decimal(0)))
            for k in MONEY_COLUMNS:
                t[k] += Decimal(r.get(k) or "0")
        for strategy in sorted(totals):
            money = {k: format(v.quantize(CENT), "f") for k, v in totals[strategy].items()}
            rows.append({"run": label, "strategy": strategy} | money)
    return rows
