"""The venue's state on disk: a JSON snapshot written atomically (tmp file + rename), plus an
append-only journal of executions.

IB keeps the account on its servers, so a gateway restart loses nothing; `--state-dir` gives the
simulator the same property. The snapshot holds orders (with the decoded wire objects the protocol
layer echoes in openOrder) only through journals, and holds the id counters and how many lines of
each journal it covers: the execution journal (one line per execution with its commission) and
the order journal (the full state of an order each time it changes; the last line of an order
wins). So a change costs a few appended lines, whatever the size of the day. Lines past the
snapshot's count were never reported to a client (the venue persists before it returns its
events) and are dropped on restore. Decimals are strings, datetimes ISO-8601 UTC.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import fields
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO, TypeVar

from tws_sim.engine.orders import WorkingOrder
from tws_sim.types import (
    ComboLegSpec,
    CommissionReport,
    Execution,
    OrderRequest,
    OrderStatusName,
    SecType,
)

_T = TypeVar("_T")

STATE_FILE = "venue_state.json"
JOURNAL_FILE = "executions.jsonl"
ORDERS_PREFIX = "orders."  # orders.<generation>.jsonl, compacted into a new generation on start
STATE_VERSION = 2
# Only classes from these packages are rebuilt from a snapshot (the wire containers).
_RAW_MODULES = ("ibapi.", "ib_async.")


class StateError(Exception):
    """The snapshot on disk cannot be read (corrupt or from an incompatible version)."""


def save_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Write `state` atomically: a reader sees the old or the new file, never half of one."""
    state_dir.mkdir(parents=True, exist_ok=True)
    final = state_dir / STATE_FILE
    tmp = state_dir / (STATE_FILE + ".tmp")
    data = json.dumps(state, separators=(",", ":"), default=_default)
    # rename is atomic against a crash of this process (the restart case `--state-dir` serves)
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, final)


def load_state(state_dir: Path) -> dict[str, Any] | None:
    """Return the saved snapshot, or None when there is none."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StateError(f"cannot read {path}: {e}") from e
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise StateError(f"{path}: unsupported state version")
    return state


class Journal:
    """Append-only JSON lines in the state directory, flushed per line.

    The snapshot records how many lines it covers; `read(keep)` returns those and drops the rest
    (written by a call that crashed before its snapshot, so never reported to a client).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lines = 0
        self._fh: TextIO | None = None

    def read(self, keep: int) -> list[dict[str, Any]]:
        """The first `keep` records; later lines are dropped from the file too."""
        self.lines = keep
        if not self.path.exists():
            if keep:
                raise StateError(f"{self.path}: missing, the snapshot expects {keep} lines")
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        if len(lines) < keep:
            raise StateError(f"{self.path}: {len(lines)} lines, the snapshot expects {keep}")
        try:
            records = [json.loads(line) for line in lines[:keep]]
        except ValueError as e:
            raise StateError(f"{self.path}: bad journal line: {e}") from e
        if len(lines) > keep:
            self.path.write_text("".join(line + "\n" for line in lines[:keep]), encoding="utf-8")
        return records

    def append(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(record, separators=(",", ":"), default=_default) + "\n")
        self._fh.flush()
        self.lines += 1

    def write_all(self, records: list[dict[str, Any]]) -> None:
        """Write a fresh journal (compaction into a new file the next snapshot points at)."""
        self.close()
        data = "".join(
            json.dumps(r, separators=(",", ":"), default=_default) + "\n" for r in records
        )
        self.path.write_text(data, encoding="utf-8")
        self.lines = len(records)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def _dec(v: str | None) -> Decimal | None:
    return None if v is None else Decimal(v)


def _dt(v: str | None) -> datetime | None:
    return None if v is None else datetime.fromisoformat(v)


# ---- wire objects (ibapi Contract/Order and friends) -------------------------------------------


def encode_raw(obj: object) -> object:
    """Encode a decoded wire object (attributes of plain values, lists and nested objects)."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return {"__float__": repr(obj)}  # keeps inf / max-double sentinels exact
    if isinstance(obj, Decimal):
        return {"__decimal__": str(obj)}
    if isinstance(obj, list | tuple):
        return [encode_raw(v) for v in obj]
    if isinstance(obj, dict):
        return {"__dict__": {str(k): encode_raw(v) for k, v in obj.items()}}
    cls = type(obj)
    attrs = getattr(obj, "__dict__", None)
    if attrs is None:
        return {"__repr__": repr(obj)}
    return {
        "__class__": f"{cls.__module__}.{cls.__qualname__}",
        "attrs": {k: encode_raw(v) for k, v in attrs.items()},
    }


def decode_raw(data: object) -> object:
    """Rebuild what `encode_raw` wrote; classes outside the wire packages are refused."""
    if data is None or isinstance(data, bool | int | str | float):
        return data
    if isinstance(data, list):
        return [decode_raw(v) for v in data]
    if not isinstance(data, dict):
        raise StateError(f"unexpected raw value {data!r}")
    if "__float__" in data:
        return float(data["__float__"])
    if "__decimal__" in data:
        return Decimal(data["__decimal__"])
    if "__dict__" in data:
        return {k: decode_raw(v) for k, v in data["__dict__"].items()}
    if "__repr__" in data:
        return None
    path = data["__class__"]
    if not path.startswith(_RAW_MODULES):
        raise StateError(f"refusing to rebuild class {path}")
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    obj = cls.__new__(cls)
    for k, v in data["attrs"].items():
        setattr(obj, k, decode_raw(v))
    return obj


# ---- orders, requests, executions, commissions -------------------------------------------------


def encode_order(o: WorkingOrder) -> dict[str, Any]:
    """One line of the order journal: the order's whole state, so the last line of an order is
    all a restore needs of it."""
    return {
        "req": encode_request(o.req),
        "perm_id": o.perm_id,
        "status": o.status.value,
        "filled": o.filled,
        "notional": o.notional,
        "last_fill_price": o.last_fill_price,
        "last_fill_time": o.last_fill_time,
        "commission": o.commission,
        "triggered": o.triggered,
        "trail_stop": o.trail_stop,
        "trail_extreme": o.trail_extreme,
        "peg_price": o.peg_price,
        "held": o.held,
        "waiting_parent": o.waiting_parent,
        "completed_time": o.completed_time,
        "leg_fills": {str(c): v for c, v in o.leg_fills.items()},
        "multiplier": o.instrument_multiplier,
    }


def decode_order(d: dict[str, Any]) -> WorkingOrder:
    """Rebuild what `encode_order` wrote."""
    o = WorkingOrder(decode_request(d["req"]), d["perm_id"], d["multiplier"])
    o.status = OrderStatusName(d["status"])
    o.filled = Decimal(d["filled"])
    o.notional = Decimal(d["notional"])
    o.last_fill_price = Decimal(d["last_fill_price"])
    lft = d.get("last_fill_time")  # absent in journals written before combos filled in parts
    o.last_fill_time = datetime.fromisoformat(lft) if lft else None
    o.commission = Decimal(d["commission"])
    o.triggered = d["triggered"]
    o.trail_stop = _dec(d["trail_stop"])
    o.trail_extreme = _dec(d["trail_extreme"])
    o.peg_price = _dec(d["peg_price"])
    o.held = d["held"]
    o.waiting_parent = d["waiting_parent"]
    ct = d["completed_time"]
    o.completed_time = datetime.fromisoformat(ct) if ct else None
    o.leg_fills = {int(c): [Decimal(x) for x in v] for c, v in d["leg_fills"].items()}
    return o


def encode_request(req: OrderRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(OrderRequest):
        v = getattr(req, f.name)
        if f.name == "combo_legs":
            v = [[leg.con_id, leg.ratio, leg.action, leg.exchange] for leg in v]
        elif f.name in ("raw_contract", "raw_order"):
            v = encode_raw(v)
        out[f.name] = v
    return out


def _decode_fields(cls: type[_T], d: dict[str, Any], convert: dict[str, Any]) -> _T:
    """Rebuild dataclass `cls` from its encoded dict: every field is read (a missing one is a
    KeyError, as a snapshot from another version deserves), through its converter if it has
    one (Decimals and datetimes travel as strings)."""
    values = {f.name: convert.get(f.name, _same)(d[f.name]) for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**values)


def _same(v: Any) -> Any:
    return v


def _legs(rows: list[list[Any]]) -> tuple[ComboLegSpec, ...]:
    return tuple(ComboLegSpec(c, r, a, x) for c, r, a, x in rows)


_REQUEST_CONVERT: dict[str, Any] = {
    "sec_type": SecType,
    "total_qty": Decimal,
    "lmt_price": _dec,
    "aux_price": _dec,
    "trailing_percent": _dec,
    "trail_stop_price": _dec,
    "good_till": _dt,
    "combo_legs": _legs,
    "raw_contract": decode_raw,
    "raw_order": decode_raw,
}


def decode_request(d: dict[str, Any]) -> OrderRequest:
    return _decode_fields(OrderRequest, d, _REQUEST_CONVERT)


def encode_execution(ex: Execution) -> dict[str, Any]:
    return {f.name: getattr(ex, f.name) for f in fields(Execution)}


_EXECUTION_CONVERT: dict[str, Any] = {
    "sec_type": SecType,
    "shares": Decimal,
    "price": Decimal,
    "cum_qty": Decimal,
    "avg_price": Decimal,
    "time": datetime.fromisoformat,
}


def decode_execution(d: dict[str, Any]) -> Execution:
    return _decode_fields(Execution, d, _EXECUTION_CONVERT)


def encode_commission(rep: CommissionReport | None) -> dict[str, Any] | None:
    if rep is None:
        return None
    return {
        "exec_id": rep.exec_id,
        "commission": rep.commission,
        "currency": rep.currency,
        "realized_pnl": rep.realized_pnl,
    }


def decode_commission(d: dict[str, Any] | None) -> CommissionReport | None:
    if d is None:
        return None
    return CommissionReport(
        exec_id=d["exec_id"],
        commission=Decimal(d["commission"]),
        currency=d["currency"],
        realized_pnl=_dec(d["realized_pnl"]),
    )
