"""Borrow fees from a statement file (blueprint §9): parsing, checking and allocation.

The file is CSV with a header: `date`, `symbol` and/or `conid`, `quantity`, `rate`, `fee`, and
optionally `strategy`, `account`, `currency` (USD when absent). `fee` is what the line charges,
a cost positive (a rebate negative), as the books count financing; `rate` is the annual borrow
rate as given (kept, not recomputed: the statement's fee is what was charged). Every line is
checked before anything is stored: one bad line refuses the whole file, naming each bad line.

A line without a strategy is split between the strategies short the contract at the end of
that day, in proportion to their short quantity, to the cent, the remainder cents going to
the largest holders first (so the pieces add up exactly to the line's fee).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from models.fills import CENT, ZERO, exact

KIND = "borrow_fee"
REQUIRED = ("date", "quantity", "rate", "fee")


class FinancingFileError(ValueError):
    """A statement file that cannot be imported; `problems` names each bad line."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class FeeLine:
    """One checked statement line (`con_id` None until the symbol is resolved)."""

    line: int
    day: date
    symbol: str | None
    con_id: int | None
    quantity: Decimal
    rate: Decimal
    fee: Decimal
    currency: str
    strategy: str | None
    account: str | None


@dataclass(frozen=True, slots=True)
class Charge:
    """One `financing_charges` row to store: a line's fee, or a strategy's piece of it."""

    charge_key: str
    line: int
    day: date
    con_id: int
    strategy: str | None
    account: str | None
    amount: Decimal
    currency: str
    details: Mapping[str, str]


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{name} {text!r} is not a finite number")
    return value


def parse_statement(text: str) -> list[FeeLine]:
    """The file's lines, checked.

    Raises
    ------
    FinancingFileError
        A missing column, or any line with a bad date, number, identifier or duplicate.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if not {"symbol", "conid"} & set(header):
        missing.append("symbol or conid")
    if missing:
        raise FinancingFileError([f"header: missing column(s) {', '.join(missing)}"])
    problems: list[str] = []
    out: list[FeeLine] = []
    seen: dict[tuple[date, str, str, str], int] = {}
    for number, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        if not any(row.values()):
            continue
        try:
            day = date.fromisoformat(row["date"])
        except ValueError:
            problems.append(f"line {number}: date {row['date']!r} is not YYYY-MM-DD")
            continue
        try:
            quantity = _decimal(row["quantity"], "quantity")
            rate = _decimal(row["rate"], "rate")
            fee = _decimal(row["fee"], "fee")
        except ValueError as e:
            problems.append(f"line {number}: {e}")
            continue
        symbol = row.get("symbol") or None
        con_text = row.get("conid", "")
        con_id: int | None = None
        if con_text:
            if not con_text.isdigit() or int(con_text) <= 0:
                problems.append(f"line {number}: conid {con_text!r} is not a positive integer")
                continue
            con_id = int(con_text)
        if con_id is None and symbol is None:
            problems.append(f"line {number}: neither symbol nor conid")
            continue
        strategy = row.get("strategy") or None
        account = row.get("account") or None
        ident = (day, str(con_id) if con_id else (symbol or ""), strategy or "", account or "")
        if ident in seen:
            problems.append(f"line {number}: the same charge as line {seen[ident]}")
            continue
        seen[ident] = number
        out.append(
            FeeLine(
                line=number,
                day=day,
                symbol=symbol,
                con_id=con_id,
                quantity=quantity,
                rate=rate,
                fee=fee,
                currency=(row.get("currency") or "USD").upper(),
                strategy=strategy,
                account=account,
            )
        )
    if problems:
        raise FinancingFileError(problems)
    return out


@exact
def split_cents(amount: Decimal, weights: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """`amount` split in proportion to `weights` (positive), each piece to the cent below in
    size, the cents left over to the largest weights first (ties by name): exact sum."""
    if not weights:
        return {}
    total = sum(weights.values(), ZERO)
    sign = Decimal(-1) if amount < ZERO else Decimal(1)
    whole = abs(amount)
    pieces = {
        k: (whole * w / total).quantize(CENT, rounding=ROUND_DOWN) for k, w in weights.items()
    }
    left = whole - sum(pieces.values(), ZERO)
    for name in sorted(weights, key=lambda k: (-weights[k], k)):
        if left < CENT:
            break
        pieces[name] += CENT
        left -= CENT
    if left > ZERO:  # a fee finer than a cent: the rest goes to the largest holder
        pieces[sorted(weights, key=lambda k: (-weights[k], k))[0]] += left
    return {k: v * sign for k, v in pieces.items()}


def line_key(line: FeeLine, con_id: int) -> str:
    """A line's idempotency key: its charges are stored as `{key}:{strategy}`, so a line
    imported once is recognised again however its fee was split the first time."""
    return f"{KIND}:{line.account or ''}:{con_id}:{line.day.isoformat()}"


def charges_for(line: FeeLine, con_id: int, shorts: Mapping[str, Decimal]) -> list[Charge]:
    """The rows one line stores: to its own strategy, else split over the strategies short
    the contract at the day's end (`shorts`: strategy → short quantity, positive); with none,
    one row without a strategy (counted in no position: reported as unallocated)."""
    base = line_key(line, con_id)
    details = {
        "quantity": str(line.quantity),
        "rate": str(line.rate),
        "fee": str(line.fee),
        "symbol": line.symbol or "",
        "source_line": str(line.line),
    }

    def charge(strategy: str | None, amount: Decimal) -> Charge:
        return Charge(
            charge_key=f"{base}:{strategy or ''}",
            line=line.line,
            day=line.day,
            con_id=con_id,
            strategy=strategy,
            account=line.account,
            amount=amount,
            currency=line.currency,
            details=details,
        )

    if line.strategy is not None:
        return [charge(line.strategy, line.fee)]
    holders = {k: v for k, v in shorts.items() if v > ZERO}
    if not holders:
        return [charge(None, line.fee)]
    return [charge(k, v) for k, v in sorted(split_cents(line.fee, holders).items())]
