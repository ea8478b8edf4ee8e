"""Stress runs (blueprint §13.3): the intents a run sends and the account of what became of them.

Pure: the mix is a function of (count, seed, run id), the arrival schedule of (count, seconds),
and the report of the outcomes the service collected, so a run can be repeated exactly and its
report recomputed from the saved outcomes.

The mix is mostly intents the desk would send (small urgent stock buys, so each is a sweep that
reaches the venue at once and ends within seconds) plus a fixed share of intents intake must
refuse: an order far over the instrument's quantity limit (`RISK_LIMIT`), a negative quantity
(`INVALID_QUANTITY`) and a cover with no short behind it (`SIDE_POSITION_MISMATCH`; the valid
ones only buy, so no short ever exists). A stress that only sends valid intents would not show
that refusals stay specific under load.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

STOCKS = ("SPY", "QQQ", "IWM", "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA")
STRATEGIES = ("Momentum_EQ", "Gamma_Rebalance")

# Out of every 100 intents: what kind each is (the rest are valid).
OVERSIZE_PER_100 = 4
NEGATIVE_PER_100 = 2
COVER_PER_100 = 2

# An intent ends in one of these; any other status is still being worked.
ENDED = frozenset({"COMPLETED", "EXPIRED", "CANCELLED", "REJECTED"})


@dataclass(frozen=True, slots=True)
class StressIntent:
    """One intent of the run and what the mix meant it to be ("valid", "oversize", …)."""

    signal_id: str
    kind: str
    payload: Mapping[str, str]


def _draw(seed: int, i: int, what: str, n: int) -> int:
    """A number in [0, n) fixed by (seed, intent, what): the mix's only source of variety (a
    hash, not a random generator, so the core stays free of hidden state)."""
    digest = hashlib.sha256(f"{seed}:{i}:{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def build_intents(count: int, *, seed: int, run: str) -> list[StressIntent]:
    """`count` intents, the same for the same (count, seed, run)."""
    if count < 1:
        raise ValueError("a stress run needs at least one intent")
    out: list[StressIntent] = []
    for i in range(count):
        slot = _draw(seed, i, "kind", 100)
        signal_id = f"stress-{run}-{i:06d}"
        strategy = STRATEGIES[_draw(seed, i, "strategy", len(STRATEGIES))]
        payload = {
            "signal_id": signal_id,
            "strategy": strategy,
            "instrument": STOCKS[_draw(seed, i, "instrument", len(STOCKS))],
            "side": "BUY",
            "quantity": str(1 + _draw(seed, i, "quantity", 20)),
            # Sweeps both: Gamma_Rebalance hedges as a TWAP (minutes long) below Immediate.
            "urgency": "Immediate" if strategy == "Gamma_Rebalance" else "High",
            "time_in_force": "DAY",
            "max_slippage_bps": "50",
        }
        if slot < OVERSIZE_PER_100:
            kind, payload["quantity"] = "oversize", "9000000"
        elif slot < OVERSIZE_PER_100 + NEGATIVE_PER_100:
            kind, payload["quantity"] = "negative", "-3"
        elif slot < OVERSIZE_PER_100 + NEGATIVE_PER_100 + COVER_PER_100:
            kind, payload["side"] = "cover", "BUY_TO_COVER"
        else:
            kind = "valid"
        out.append(StressIntent(signal_id=signal_id, kind=kind, payload=payload))
    return out


def arrival_offsets(count: int, over_s: float) -> list[float]:
    """Send times in seconds from the start, evenly spread so the rate is `count / over_s`."""
    if over_s < 0:
        raise ValueError("--over must not be negative")
    if count <= 1 or over_s == 0:
        return [0.0] * count
    step = over_s / (count - 1)
    return [i * step for i in range(count)]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the run found for one intent (times in seconds since the run started).

    `status` is the intent's row status, or "REFUSED" when intake refused it without a row (a
    payload that never became an intent) and the reject stream says why; None when nothing was
    found: the intent is unaccounted for, the one result a stress run must never have.
    """

    signal_id: str
    kind: str
    sent_s: float
    status: str | None
    reason: str | None = None
    decided_s: float | None = None
    first_fill_s: float | None = None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    n: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def summarize_latency(seconds: Sequence[float]) -> LatencySummary:
    ms = [s * 1000 for s in seconds]
    return LatencySummary(
        n=len(ms),
        p50_ms=percentile(ms, 50),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms) if ms else None,
    )


@dataclass(frozen=True, slots=True)
class StressReport:
    """The account of a run: every intent sent is accepted, refused or listed as unaccounted."""

    sent: int
    accepted: int
    rejected: int
    rejected_by_reason: Mapping[str, int]
    by_status: Mapping[str, int]
    unaccounted: Sequence[str]
    duplicated: Sequence[str]
    still_working: int
    decided: LatencySummary
    first_fill: LatencySummary
    max_backlog: int
    notes: Sequence[str] = field(default_factory=tuple)

    @property
    def all_accounted(self) -> bool:
        return not self.unaccounted and not self.duplicated


def report(
    outcomes: Sequence[Outcome], *, sent_ids: Sequence[str], max_backlog: int
) -> StressReport:
    """The run's report from the outcomes found for the ids it sent."""
    seen = Counter(o.signal_id for o in outcomes)
    duplicated = sorted(s for s, n in seen.items() if n > 1)
    found = {o.signal_id: o for o in outcomes if o.status is not None}
    unaccounted = [s for s in sent_ids if s not in found]
    decided = list(found.values())
    refused = [o for o in decided if o.status in ("REFUSED", "REJECTED")]
    accepted = [o for o in decided if o.status not in ("REFUSED", "REJECTED")]
    by_reason = Counter(o.reason or "UNKNOWN" for o in refused)
    by_status = Counter(o.status or "" for o in decided)
    return StressReport(
        sent=len(sent_ids),
        accepted=len(accepted),
        rejected=len(refused),
        rejected_by_reason=dict(sorted(by_reason.items())),
        by_status=dict(sorted(by_status.items())),
        unaccounted=unaccounted,
        duplicated=duplicated,
        still_working=sum(1 for o in accepted if o.status not in ENDED),
        decided=summarize_latency(
            [o.decided_s - o.sent_s for o in decided if o.decided_s is not None]
        ),
        first_fill=summarize_latency(
            [o.first_fill_s - o.sent_s for o in accepted if o.first_fill_s is not None]
        ),
        max_backlog=max_backlog,
    )


def to_json(r: StressReport) -> dict[str, object]:
    """The report as JSON-ready data (latencies are measurements, not money: plain numbers)."""

    def lat(s: LatencySummary) -> dict[str, object]:
        return {
            "n": s.n,
            "p50_ms": s.p50_ms,
            "p95_ms": s.p95_ms,
            "p99_ms": s.p99_ms,
            "max_ms": s.max_ms,
        }

    return {
        "sent": r.sent,
        "accepted": r.accepted,
        "rejected": r.rejected,
        "rejected_by_reason": dict(r.rejected_by_reason),
        "by_status": dict(r.by_status),
        "unaccounted": list(r.unaccounted),
        "duplicated": list(r.duplicated),
        "still_working": r.still_working,
        "latency_decided": lat(r.decided),
        "latency_first_fill": lat(r.first_fill),
        "max_bridge_backlog": r.max_backlog,
        "all_accounted": r.all_accounted,
    }
