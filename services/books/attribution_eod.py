"""Use case: the end-of-day attribution job (blueprint §9.3, `docs/books.md`).

After a session's close (plus `SETTLE_DELAY`, for late callbacks and the expiry run) the book
as of the close is split by signal (`models.attribution_day`) and written once per day to
`{data_dir}/attribution/{day}.json` (atomic: a temporary file renamed). Load: the positions,
every fill with its signal (only those executed by the close count), each position's mark at
the close (its last position snapshot, else the stored mark) and financing charged before it;
the previous day's document for the day's change → one core call → one file. No table holds
it (no migration this session): the file is the record, and `epm pnl --by signal --day D`
reads it back. Each strategy is split by its configured method (`EPM_ATTRIBUTION`,
`EPM_ATTRIBUTION_DEFAULT`; FIFO unless configured) and the document records which.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from epm.calendar import session_close, trading_day
from epm.settings import get_settings
from models.attribution import AttributionMethods, SignalFill
from models.attribution_day import PositionAtClose, day_document, signal_lines
from models.fills import ZERO
from store import attribution_eod as eod_repo
from store import books

SETTLE_DELAY = timedelta(minutes=15)
# How far back a run looks for session days whose document is missing (a stopped beat).
LOOKBACK_DAYS = 7


class AttributionUnavailableError(LookupError):
    """No document for the day asked (not a session day, not yet written, or not kept)."""


def day_path(root: Path, day: date) -> Path:
    return root / f"{day.isoformat()}.json"


def read_day(root: Path, day: date) -> dict[str, Any]:
    """The day's document.

    Raises
    ------
    AttributionUnavailableError
        When it does not exist or cannot be read.
    """
    path = day_path(root, day)
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AttributionUnavailableError(
            f"no attribution for {day.isoformat()} in {root} (written after that session's "
            "close; not a session day?)"
        ) from None
    except (OSError, ValueError) as e:
        raise AttributionUnavailableError(f"{path} cannot be read: {e}") from None
    return doc


def _previous(root: Path, day: date) -> dict[str, Any] | None:
    """The latest document of a day before `day`, if any is kept."""
    earlier = sorted(p for p in root.glob("????-??-??.json") if p.stem < day.isoformat())
    for path in reversed(earlier):
        try:
            doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return doc
        except (OSError, ValueError):
            continue
    return None


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out, indent=2, sort_keys=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compute_day(
    engine: Engine,
    root: Path,
    day: date,
    cutoff: datetime,
    methods: AttributionMethods | None = None,
) -> dict[str, Any]:
    """The day's document as of `cutoff` (not written), each strategy split by its method
    (`methods`; None: as the settings configure them)."""
    chosen = methods or get_settings().attribution_methods()
    with engine.connect() as conn:
        rows = books.positions(conn)
        marks = eod_repo.marks_at(conn, cutoff)
        financing = eod_repo.financing_before(conn, cutoff)
        fills = books.signal_fills(conn)
    grouped: dict[tuple[int, str], list[SignalFill]] = {}
    for f in fills:
        if f.record.executed_at <= cutoff:
            grouped.setdefault((f.con_id, f.strategy), []).append(SignalFill(f.record, f.signal_id))
    positions = [
        PositionAtClose(
            con_id=r.con_id,
            strategy=r.strategy,
            symbol=r.symbol,
            multiplier=r.multiplier,
            mark=marks.get((r.con_id, r.strategy), r.mark_price),
            financing=financing.get((r.con_id, r.strategy), ZERO),
        )
        for r in rows
        if (r.con_id, r.strategy) in grouped
    ]
    lines = signal_lines(positions, grouped, chosen)
    return day_document(day, cutoff, lines, _previous(root, day), chosen)


@dataclass(frozen=True, slots=True)
class DayRun:
    day: date
    outcome: str  # "written", "exists", "not_due", "no_session"
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "outcome": self.outcome, "path": self.path}


def write_day(
    engine: Engine,
    root: Path,
    day: date,
    now: datetime,
    *,
    force: bool = False,
    methods: AttributionMethods | None = None,
) -> DayRun:
    """Write the day's document once its close (plus the settle delay) has passed; a day
    written already is left alone unless `force` (an operator's rebuild, which also applies a
    method changed since)."""
    close = session_close(day)
    if close is None:
        return DayRun(day, "no_session")
    if now < close + SETTLE_DELAY:
        return DayRun(day, "not_due")
    path = day_path(root, day)
    if path.exists() and not force:
        return DayRun(day, "exists", str(path))
    doc = compute_day(engine, root, day, close, methods)
    doc["generated_at"] = now.isoformat()
    _write(path, doc)
    return DayRun(day, "written", str(path))


def attribution_tick(
    engine: Engine, root: Path, now: datetime, methods: AttributionMethods | None = None
) -> list[DayRun]:
    """Beat: write every recent session day's document that is due and missing, oldest first
    (so each day's change is taken against the day before it)."""
    chosen = methods or get_settings().attribution_methods()
    today = trading_day(now)
    days = [today - timedelta(days=n) for n in range(LOOKBACK_DAYS, -1, -1)]
    runs = (write_day(engine, root, d, now, methods=chosen) for d in days)
    return [run for run in runs if run.outcome == "written"]
