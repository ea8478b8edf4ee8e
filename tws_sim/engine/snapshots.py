"""The venue across restarts (`--state-dir`): changed orders appended to the order journal, the
counters snapshot written after every call that changed something, and the restore at start.

The file formats and the encoding of orders, requests and executions are
`tws_sim.engine.persistence`; this module decides what is written when, and how a restored
state is put back together (executions rebooked, the order journal compacted).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from tws_sim.engine.core import ExecRecord
from tws_sim.engine.execids import ExecIdGenerator, PermIds
from tws_sim.engine.executions import Executions
from tws_sim.engine.orders import WorkingOrder
from tws_sim.engine.persistence import (
    ORDERS_PREFIX,
    STATE_VERSION,
    Journal,
    decode_commission,
    decode_execution,
    decode_order,
    encode_order,
    load_state,
    save_state,
)


class Snapshots(Executions):
    """Writing and restoring the venue's state directory (see the module docstring)."""

    def _persist(self) -> None:
        """Append the changed orders to the order journal, then write the counters snapshot."""
        if not self._dirty:
            return
        self._dirty = False
        if self._state_dir is None:
            self._dirty_orders.clear()
            return
        if self._order_journal is None:
            self._order_journal = Journal(self._orders_path(self._order_gen))
        for o in self._dirty_orders.values():
            self._order_journal.append(encode_order(o))
        self._dirty_orders.clear()
        state = {
            "version": STATE_VERSION,
            "account": self._account_id,
            "perm_last": self._perm.last,
            "exec_prefix": self._exec_ids.prefix,
            "exec_counter": self._exec_ids.counter,
            "exec_seq": self._exec_seq,
            "corr_counts": self._corr_counts,
            "max_ids": {str(k): v for k, v in self._max_id.items()},
            "was_open": self._was_open,
            "session_day": self._session_day,
            "expired_through": self._expired_through,
            "ext_expiry": self._ext_expiry,
            "exec_count": len(self._execs),
            "order_gen": self._order_gen,
            "order_lines": self._order_journal.lines,
        }
        save_state(self._state_dir, state)

    def _orders_path(self, gen: int) -> Path:
        """The order journal of one generation (each restore compacts into the next)."""
        assert self._state_dir is not None
        return self._state_dir / f"{ORDERS_PREFIX}{gen}.jsonl"

    def _restore(self, state_dir: Path, journal: Journal) -> None:
        """Load a state directory: counters from the snapshot; executions from their journal (the
        lines the snapshot counts, corrections marking what they replace) and the account
        rebooked from them; the last line of each order from the order journal, compacted into a
        new generation before the old one is deleted."""
        state = load_state(state_dir)
        if state is None:
            journal.read(0)  # executions no snapshot covers were never reported: drop them
            return
        self._perm = PermIds(state["perm_last"])
        self._exec_ids = ExecIdGenerator(state["exec_prefix"], state["exec_counter"])
        self._exec_seq = state["exec_seq"]
        counts = state.get("corr_counts", [])
        if len(counts) == len(self._corr_counts):
            self._corr_counts = list(counts)
        self._max_id = {int(k): v for k, v in state["max_ids"].items()}
        self._was_open = state["was_open"]
        day = state.get("session_day")
        self._session_day = date.fromisoformat(day) if day else None
        through = state.get("expired_through")
        self._expired_through = date.fromisoformat(through) if through else None
        ext = state.get("ext_expiry")
        self._ext_expiry = datetime.fromisoformat(ext) if ext else None
        for d in journal.read(state["exec_count"]):
            rec = ExecRecord(
                decode_execution(d["execution"]),
                decode_commission(d["commission"]),
                d["multiplier"],
                kind=d.get("kind", ""),
            )
            corrects = rec.execution.is_correction_of
            if corrects is not None and corrects in self._exec_index:
                self._execs[self._exec_index[corrects]].superseded = True
            self._exec_index[rec.execution.exec_id] = len(self._execs)
            self._execs.append(rec)
        self._rebook()
        old_gen = state["order_gen"]
        old = Journal(self._orders_path(old_gen))
        latest: dict[tuple[int, int], dict[str, Any]] = {}
        for d in old.read(state["order_lines"]):
            latest[(d["req"]["client_id"], d["req"]["order_id"])] = d  # last line wins
        for d in latest.values():
            self._load_order(decode_order(d))
        # compact into a new generation; the snapshot switches to it atomically
        self._order_gen = old_gen + 1
        self._order_journal = Journal(self._orders_path(self._order_gen))
        self._order_journal.write_all(list(latest.values()))
        self._dirty = True
        self._persist()
        old.path.unlink(missing_ok=True)

    def _load_order(self, o: WorkingOrder) -> None:
        """Put a restored order back into the indexes its state implies: its held group, the live
        index, or neither when it is done."""
        req = o.req
        self._orders[o.key] = o
        if req.parent_id:
            self._children.setdefault((req.client_id, req.parent_id), []).append(o.key)
        if req.oca_group:
            self._oca.setdefault(req.oca_group, []).append(o.key)
        if o.done:
            return
        if o.held:
            root = (req.client_id, req.parent_id or req.order_id)
            self._held.setdefault(root, []).append(o.key)
        elif not o.waiting_parent:
            self._index(o)
