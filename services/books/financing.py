"""Use case: import a borrow-fee statement into `financing_charges` (`epm books
import-financing FILE`, `docs/books.md`).

Parse and check the whole file (`models.financing.parse_statement`: one bad line refuses it,
nothing stored) → resolve each line's contract (conid, else the cached stock of the symbol) and
the strategies short it at the end of that day (`positions_history`) → its charges
(`charges_for`) → one transaction. Idempotent per line (account, contract, day): a line already
imported is skipped, and reported as a conflict if the file's fee now differs from what was
stored. The mark tick and `epm pnl` count the charges in each position's `financing` and net.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from epm.calendar import ET
from models.fills import ZERO
from models.financing import (
    Charge,
    FeeLine,
    FinancingFileError,
    charges_for,
    line_key,
    parse_statement,
)
from models.recon import decimal_text
from store import financing as financing_repo
from store.db import write_transaction


@dataclass(slots=True)
class ImportResult:
    """What one import stored, skipped and could not allocate."""

    lines: int = 0
    imported: int = 0
    skipped: list[int] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    unallocated: list[int] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "imported_lines": self.imported,
            "skipped_lines": self.skipped,
            "conflicts": self.conflicts,
            "unallocated_lines": self.unallocated,
            "dry_run": self.dry_run,
            "charges": [
                {
                    "line": c.line,
                    "date": c.day.isoformat(),
                    "conid": c.con_id,
                    "strategy": c.strategy,
                    "account": c.account,
                    "amount": decimal_text(c.amount),
                    "currency": c.currency,
                }
                for c in self.charges
            ],
        }


def _start_of(day: date) -> datetime:
    """The exchange's calendar day starts at midnight New York time."""
    return datetime.combine(day, time(0), tzinfo=ET).astimezone(UTC)


def import_financing(
    engine: Engine, text: str, now: datetime, *, dry_run: bool = False
) -> ImportResult:
    """Import a statement's borrow fees.

    Raises
    ------
    FinancingFileError
        A bad file (every bad line named), or a symbol no contract or position is known by.
    """
    lines = parse_statement(text)
    result = ImportResult(lines=len(lines), dry_run=dry_run)
    with write_transaction(engine) as conn:
        unknown: list[str] = []
        resolved: list[tuple[FeeLine, int]] = []
        for line in lines:
            con_id = line.con_id
            if con_id is None and line.symbol is not None:
                con_id = financing_repo.con_id_of(conn, line.symbol)
            if con_id is None:
                unknown.append(f"line {line.line}: no contract known for symbol {line.symbol!r}")
                continue
            resolved.append((line, con_id))
        if unknown:
            raise FinancingFileError(unknown)
        to_store: list[Charge] = []
        as_of: dict[int, datetime] = {}
        for line, con_id in resolved:
            stored = financing_repo.booked_amounts(conn, line_key(line, con_id))
            if stored:
                result.skipped.append(line.line)
                total = sum(stored, ZERO)
                if total != line.fee:
                    result.conflicts.append(
                        f"line {line.line}: stored {decimal_text(total)}, "
                        f"the file says {decimal_text(line.fee)} (kept as stored)"
                    )
                continue
            shorts = financing_repo.shorts_at(conn, con_id, _start_of(line.day) + timedelta(days=1))
            charges = charges_for(line, con_id, shorts)
            if any(c.strategy is None for c in charges):
                result.unallocated.append(line.line)
            as_of[line.line] = _start_of(line.day)
            to_store.extend(charges)
            result.imported += 1
        result.charges = to_store
        if not dry_run:
            financing_repo.insert(conn, to_store, as_of, now)
        else:
            result.imported = 0
    return result
