"""Use case: the extracts (blueprint §9.5) — orders, fills, positions and P&L by strategy and
signal, as CSV and Parquet, for whatever reads the desk's day after epm (reports, notebooks,
the replay's parameter comparisons).

Load (the books' queries and views) → rows of strings → write. Every decimal is written as its
exact text (`money_text` / `quantity_text`, the same form `epm pnl --json` prints) in a string
column, in CSV and in Parquet alike: a Parquet decimal128 needs one scale per column, and prices,
quantities and P&L here carry whatever scale the venue gave (a 4-decimal sub-penny price beside
a cent), so a fixed scale would either round or pad. Timestamps are ISO-8601 UTC text.

The bytes are a function of the ledger only: rows are sorted on a total key, no wall clock is
written (Parquet metadata holds only the schema and pyarrow's `created_by`), so the same ledger
gives byte-identical files — what `epm replay`'s determinism test compares.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.engine import Connection

from epm.calendar import ET
from services.books.views import (
    extract_rows,
    money_text,
    positions_view,
    quantity_text,
    signal_lines,
)
from store import books
from store.db import make_engine

FORMATS = ("csv", "parquet")

# Kind of each column: "int" (int64), "bool", "money", "qty", "time" or "text" (all others).
ORDER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("client_order_id", "text"),
    ("ib_order_id", "int"),
    ("perm_id", "int"),
    ("strategy", "text"),
    ("signal_id", "text"),
    ("con_id", "int"),
    ("symbol", "text"),
    ("sec_type", "text"),
    ("action", "text"),
    ("quantity", "qty"),
    ("order_type", "text"),
    ("limit_price", "money"),
    ("tif", "text"),
    ("state", "text"),
    ("filled_qty", "qty"),
    ("avg_fill_price", "money"),
    ("created_at", "time"),
    ("updated_at", "time"),
)

FILL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("execution_id", "text"),
    ("superseded_by", "text"),
    ("executed_at", "time"),
    ("con_id", "int"),
    ("symbol", "text"),
    ("sec_type", "text"),
    ("strategy", "text"),
    ("signal_id", "text"),
    ("order_ref", "text"),
    ("ib_order_id", "int"),
    ("side", "text"),
    ("shares", "qty"),
    ("price", "money"),
    ("multiplier", "qty"),
    ("commission", "money"),
    ("commission_estimated", "bool"),
    ("exchange", "text"),
    ("account", "text"),
)

POSITION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("conid", "int"),
    ("symbol", "text"),
    ("strategy", "text"),
    ("quantity", "text"),
    ("avg_cost", "text"),
    ("realized", "text"),
    ("unrealized", "text"),
    ("fees", "text"),
    ("financing", "text"),
    ("net", "text"),
    ("mark", "text"),
    ("state", "text"),
    ("risk_tags", "text"),
)

PNL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("strategy", "text"),
    ("signal_id", "text"),
    ("realized_pl", "text"),
    ("unrealized_pl", "text"),
    ("fees", "text"),
    ("financing", "text"),
    ("net_pl", "text"),
)


class ExtractError(ValueError):
    """The extracts cannot be written as asked (unknown format, output path not a directory)."""


def day_bounds(day: date | None) -> tuple[datetime, datetime]:
    """The UTC instants of the exchange's calendar day `day` (New York midnight to midnight);
    the whole ledger when None."""
    if day is None:
        return datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
    start = datetime.combine(day, time(0), tzinfo=ET)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=ET)
    return start.astimezone(UTC), end.astimezone(UTC)


def _cell(kind: str, value: object) -> object:
    if value is None:
        return None
    if kind == "int":
        return int(value)  # type: ignore[call-overload]
    if kind == "bool":
        return bool(value)
    if kind == "money":
        assert isinstance(value, Decimal)
        return money_text(value)
    if kind == "qty":
        assert isinstance(value, Decimal)
        return quantity_text(value)
    if kind == "time":
        assert isinstance(value, datetime)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


def typed_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]
) -> list[list[object]]:
    """Rows as the files hold them, one cell per (name, kind) column: money and quantities as
    exact text, times as UTC ISO text, ints and bools as such (the report's tables share it)."""
    return [[_cell(kind, row.get(name)) for name, kind in columns] for row in rows]


def row_sort_key(row: Sequence[object]) -> tuple[tuple[bool, str], ...]:
    """A total order on typed rows' cells themselves (None first), so equal ledgers sort
    alike in every file written from them."""
    return tuple((cell is not None, "" if cell is None else str(cell)) for cell in row)


_ARROW = {"int": pa.int64(), "bool": pa.bool_()}


def write_csv(path: Path, columns: Sequence[tuple[str, str]], rows: list[list[object]]) -> None:
    """Typed rows as CSV: a header, None as an empty cell, bools as true/false."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([name for name, _ in columns])
    for row in rows:
        writer.writerow(
            [
                "" if c is None else ("true" if c is True else "false" if c is False else c)
                for c in row
            ]
        )
    path.write_bytes(buffer.getvalue().encode("utf-8"))


def write_parquet(path: Path, columns: Sequence[tuple[str, str]], rows: list[list[object]]) -> None:
    """Typed rows as Parquet (zstd): ints and bools typed, everything else exact text."""
    schema = pa.schema([pa.field(name, _ARROW.get(kind, pa.string())) for name, kind in columns])
    arrays = [
        pa.array([row[i] for row in rows], type=schema.field(i).type) for i in range(len(columns))
    ]
    table = pa.Table.from_arrays(arrays, schema=schema)
    pq.write_table(table, path, compression="zstd", write_statistics=False)


def _tables(
    conn: Connection, day: date | None
) -> dict[str, tuple[tuple[tuple[str, str], ...], list[list[object]]]]:
    start, end = day_bounds(day)
    sources: dict[str, tuple[tuple[tuple[str, str], ...], Callable[[], list[dict[str, Any]]]]] = {
        "orders": (ORDER_COLUMNS, lambda: books.orders_between(conn, start, end)),
        "fills": (FILL_COLUMNS, lambda: books.fills_between(conn, start, end)),
        "positions": (POSITION_COLUMNS, lambda: positions_view(conn)),
        "pnl": (PNL_COLUMNS, lambda: extract_rows(signal_lines(conn))),
    }
    out: dict[str, tuple[tuple[tuple[str, str], ...], list[list[object]]]] = {}
    for name, (columns, load) in sources.items():
        out[name] = (columns, sorted(typed_rows(load(), columns), key=row_sort_key))
    return out


def write_extracts_from(
    conn: Connection,
    out_dir: Path,
    *,
    day: date | None = None,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """`write_extracts` on an open connection (the replay's in-process ledger)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExtractError(f"formats must be among {', '.join(FORMATS)}, not {list(formats)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExtractError(f"{out_dir} exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"-{day.isoformat()}" if day is not None else ""
    written: list[Path] = []
    for name, (columns, rows) in _tables(conn, day).items():
        for fmt in FORMATS:
            if fmt not in formats:
                continue
            path = out_dir / f"{name}{suffix}.{fmt}"
            if fmt == "csv":
                write_csv(path, columns, rows)
            else:
                write_parquet(path, columns, rows)
            written.append(path)
    return written


def write_extracts(
    database_url: str,
    out_dir: Path,
    *,
    day: date | None = None,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Write orders, fills (of `day`, the exchange's calendar day, or all), positions and P&L by
    strategy and signal (the books now) into `out_dir` as `NAME[-DAY].csv` / `.parquet`;
    returns the paths, in a fixed order."""
    engine = make_engine(database_url)
    with engine.connect() as conn:
        return write_extracts_from(conn, out_dir, day=day, formats=formats)
