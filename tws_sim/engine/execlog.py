"""The venue's ledger of truth: one JSON line per execution, correction and commission.

Tests, drills and reconciliation compare epm's ledger against this file, so each line is flushed
as soon as it is written (a crash loses nothing that was reported to a client).
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from tws_sim.types import Execution


class ExecLog:
    """Append-only JSON-lines writer; Decimals are written as strings, times as ISO-8601 UTC."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO = path.open("a", encoding="utf-8")

    def execution(self, ex: Execution, kind: str = "execution") -> None:
        """Log an execution (`kind` "execution") or a correction (`kind` "correction")."""
        record = _execution_record(kind, ex)
        record["commission"] = None
        record["corrects"] = ex.is_correction_of
        self._write(record)

    def commission(self, ex: Execution, commission: Decimal, realized: Decimal | None) -> None:
        """Log the commission of execution `ex`."""
        record = _execution_record("commission", ex)
        record["commission"] = str(commission)
        record["realizedPnL"] = None if realized is None else str(realized)
        self._write(record)

    def close(self) -> None:
        self._fh.close()

    def _write(self, record: dict[str, object]) -> None:
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()


def _execution_record(kind: str, ex: Execution) -> dict[str, object]:
    """The fields every line about an execution carries (the execution's own ones), so a
    commission line can be read without looking up its execution."""
    return {
        "type": kind,
        "execId": ex.exec_id,
        "orderId": ex.order_id,
        "permId": ex.perm_id,
        "clientId": ex.client_id,
        "account": ex.account,
        "conid": ex.con_id,
        "symbol": ex.symbol,
        "secType": str(ex.sec_type),
        "side": ex.side,
        "shares": str(ex.shares),
        "price": str(ex.price),
        "time": _iso(ex.time),
    }


def _iso(ts: datetime) -> str:
    return ts.isoformat()
