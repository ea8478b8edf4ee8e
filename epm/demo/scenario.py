"""The demo's afternoon: the simulator's scenario and the scripted session, on the venue's clock.

The venue starts late in the session (`START`, ET) and runs `SPEED` times the wall clock, so
the 0DTE flat at 15:55 ET comes about two minutes in. What the venue does on its own is in the
scenario (a run-up, a halt, a disconnect, a combo book that cannot fill); what a desk does — the
intents signal models send, the kill switch and its resume — is in `STEPS`, each due at a venue
time. Intents go in the way producers send them: entries on `signals.exec.intent`, forwarded
by the relay, and (one of them) the intake task itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

START = "15:35"
SPEED = 12.0
# In the money by this much, the 0DTE call keeps a two-sided quote to its last minutes.
SCALP_ITM = Decimal(3)
KILL_AT = time(15, 49, 0)
RESUME_AT = time(15, 50, 30)
# When the demo stops trading and reconciles (venue time, ET), unless everything ended before.
WIND_DOWN = time(15, 58, 30)

SCENARIO_YAML = """\
# epm demo: a calm market with scripted trouble, times ET on the session date.
name: epm-demo
extends: default
version: 1
description: epm demo afternoon - a run-up, a halt, a disconnect, QQQ combos that cannot fill.
always_open: true
start: "{start}"
seed: 11
regimes:
  # AMZN runs away upward (about one 2 bps jump a second, little noise) for nine minutes: the
  # hedge pegged at the mid is re-priced after it and its fills break its slippage limit.
  - {{name: amzn-runs, symbols: [AMZN], at: "15:35", duration_s: 540, vol_mult: 0.2,
     jump_intensity: 3600, jump_mean: 0.0002, jump_std: 0.00005}}
halts:
  # NVDA halted for three minutes: the TWAP hedging in it holds its slices, then goes on.
  - {{symbol: NVDA, at: "15:42", duration_s: 180, state: 1}}
faults:
  # Every API session dropped, connects refused for 45 s: the bridge reconnects and resyncs.
  - {{kind: disconnect, at: "15:46", duration_s: 45, refuse: true}}
  # No complex-order book for QQQ: the roll's BAG is refused and its legged fallback trades it.
  - {{kind: combo_unfillable, symbols: [QQQ]}}
"""


def scenario_yaml(start: str = START) -> str:
    return SCENARIO_YAML.format(start=start)


def sim_args(
    scenario_path: str, exec_log: str, *, start: str = START, speed: float = SPEED
) -> list[str]:
    """`epm sim` options for the demo's venue (a port is added by the caller)."""
    return [
        "--scenario", scenario_path, "--start", start, "--speed", str(speed),
        "--exec-log", exec_log,
    ]  # fmt: skip


@dataclass(frozen=True)
class Options:
    """The option contracts the script trades, chosen from the venue's chains at run time."""

    scalp_call: str  # SPY call expiring today, a little in the money (the 0DTE scalp)
    roll_near: str  # QQQ call, nearest expiry after today
    roll_far: str  # QQQ call, same strike, the expiry after it


def pick_options(occ_symbols: list[str], today: date, spot: dict[str, Decimal]) -> Options:
    """The calls to trade, from padded OCC symbols (`SPY   261204C00600000`)."""

    def calls(root: str) -> dict[Decimal, list[str]]:
        found: dict[Decimal, list[str]] = {}
        for occ in occ_symbols:
            if occ[:6].strip() == root and occ[12] == "C":
                found.setdefault(Decimal(occ[13:]) / 1000, []).append(occ)
        return found

    def expiry(occ: str) -> date:
        return datetime.strptime(occ[6:12], "%y%m%d").date()

    spy = {k: [o for o in v if expiry(o) == today] for k, v in calls("SPY").items()}
    spy = {k: v for k, v in spy.items() if v}
    if not spy:
        raise LookupError(f"the venue lists no SPY option expiring {today} (not a session day?)")
    strike = min(spy, key=lambda k: abs(k - (spot["SPY"] - SCALP_ITM)))
    qqq = {
        k: sorted((o for o in v if expiry(o) > today), key=expiry) for k, v in calls("QQQ").items()
    }
    qqq = {k: v for k, v in qqq.items() if len(v) >= 2}
    if not qqq:
        raise LookupError("the venue lists no QQQ calls with two expiries after today")
    roll_strike = min(qqq, key=lambda k: abs(k - spot["QQQ"]))
    near, far = qqq[roll_strike][:2]
    return Options(spy[strike][0], near, far)


@dataclass(frozen=True)
class Intent:
    """One scripted intent: what it shows, its payload, and how it is sent."""

    name: str
    shows: str
    payload: dict[str, Any]
    via_task: bool = False


def intents(run: str, opts: Options) -> dict[str, Intent]:
    """The session's intents by name; signal ids are `demo-{run}-{name}`."""

    def make(name: str, shows: str, *, via_task: bool = False, **fields: Any) -> Intent:
        return Intent(name, shows, {"signal_id": f"demo-{run}-{name}", **fields}, via_task)

    found = [
        make(
            "scalp",
            "0DTE_Scalp sweep into a SPY call expiring today (flattened at 15:55)",
            strategy="0DTE_Scalp", instrument=opts.scalp_call, side="BUY", quantity="10",
            urgency="Immediate", time_in_force="DAY", max_slippage_bps="400",
        ),
        make(
            "twap",
            "Gamma_Rebalance Passive TWAP in NVDA, 30 s slices through the halt and the faults",
            strategy="Gamma_Rebalance", instrument="NVDA", side="BUY", quantity="2000",
            urgency="Passive", time_in_force="DAY", max_slippage_bps="50",
            params={"cadence_s": 30, "slices": 16},
        ),
        make(
            "bracket",
            "Momentum_EQ bracket in AAPL: entry at the touch, trailing stop and profit target",
            strategy="Momentum_EQ", instrument="AAPL", side="BUY", quantity="100",
            urgency="High", time_in_force="DAY", max_slippage_bps="25",
            params={"trail_percent": "0.5", "profit_target": "260"},
        ),
        make(
            "roll",
            "Spread_Roll calendar in QQQ calls: the BAG is refused, the legs trade it",
            via_task=True,
            strategy="Spread_Roll", instrument=opts.roll_far, side="BUY", quantity="2",
            urgency="Passive", time_in_force="DAY", max_slippage_bps="500",
            params={"combo_window_s": 60},
            legs=[
                {"instrument": opts.roll_near, "ratio": 1, "action": "SELL"},
                {"instrument": opts.roll_far, "ratio": 1, "action": "BUY"},
            ],
        ),
        make(
            "hedge",
            "Gamma_Rebalance Immediate sweep in MSFT, thin book: partial fills",
            strategy="Gamma_Rebalance", instrument="MSFT", side="BUY", quantity="1500",
            urgency="Immediate", time_in_force="DAY", max_slippage_bps="3",
        ),
        make(
            "chase",
            "Gamma_Rebalance pegged at the AMZN mid while AMZN runs up: the re-priced peg's "
            "fills break its 2 bps slippage limit (abort)",
            strategy="Gamma_Rebalance", instrument="AMZN", side="BUY", quantity="20000",
            urgency="Normal", time_in_force="DAY", max_slippage_bps="2",
            params={"template": "PEGGED_MID"},
        ),
    ]  # fmt: skip
    return {i.name: i for i in found}


@dataclass(frozen=True)
class Step:
    """Something the desk does once the venue's clock reads `at` (ET)."""

    at: time
    label: str
    run: Callable[[], str]  # → a line for the event log


@dataclass
class Script:
    """The steps in venue-time order; `due(now_et)` pops the ones whose time has come."""

    steps: list[Step]
    done: list[tuple[time, str, str]] = field(default_factory=list)

    def due(self, now_et: time) -> list[Step]:
        ready = [s for s in self.steps if s.at <= now_et]
        self.steps = [s for s in self.steps if s.at > now_et]
        return ready

    @property
    def finished(self) -> bool:
        return not self.steps


def stream_entry(payload: dict[str, Any]) -> dict[str, str]:
    """The relay's `payload` field form of an intent (its JSON text)."""
    return {"payload": json.dumps(payload)}
