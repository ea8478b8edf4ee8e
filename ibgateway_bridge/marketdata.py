"""Market-data lines and the `md:{conid}` cache: reference-counted subscriptions, within a limit.

Who wants a con_id is kept in Redis (`md:subs:{conid}` set of requesters, `md:subscribed` set of
con_ids, `md:subs:opts:{conid}` depth/bars flags), so a bridge restart re-opens exactly the lines
still wanted. The line opens for the first requester and closes after the last; IB's market-data
line limit (`line_limit`) refuses a new con_id beyond it. Request ids and the book for L2 are
connection-scoped and rebuilt on reconnect.

`md:{conid}` fields: bid, ask, last, bid_size, ask_size, last_size, volume, high, low, open, close,
halted (0/1/2), greeks (`{model,bid,ask,last}_{iv,delta,gamma,vega,theta,opt_price,und_price}`),
bar_{time,open,high,low,close,volume,wap,count} (latest 5 s bar), depth (JSON L2 snapshot), and
`ts` (ISO UTC of the last update: the staleness stamp) plus `ts_{field}` per top-of-book field.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any, cast

import redis

from ibgateway_bridge.commands import (
    HALT_INSTRUMENT_KEY,
    BridgeRejectReason,
    ContractSpec,
    SubscribeMarketData,
    UnsubscribeMarketData,
)

MD_KEY = "md:{con_id}"
SUBS_KEY = "md:subs:{con_id}"
SUBS_OPTS_KEY = "md:subs:opts:{con_id}"
SUBSCRIBED_KEY = "md:subscribed"
CONTRACT_KEY = "contract:{con_id}"
# Request ids for data requests live far above any order id so errors can be told apart.
REQ_ID_BASE = 1_500_000_000
DEPTH_ROWS = 10


class MarketDataLines:
    """Open/close IB market-data lines for con_ids and map their request ids back."""

    def __init__(self, client: redis.Redis, line_limit: int = 100) -> None:
        self._redis = client
        self.line_limit = line_limit
        self._req_ids = itertools.count(REQ_ID_BASE)
        self._lock = threading.Lock()
        self._by_req: dict[int, tuple[int, str]] = {}
        self._lines: dict[int, dict[str, int]] = {}
        self._books: dict[int, dict[str, list[dict[str, Any]]]] = {}

    def next_req_id(self) -> int:
        with self._lock:
            return next(self._req_ids)

    def con_id_for(self, req_id: int) -> tuple[int, str] | None:
        with self._lock:
            return self._by_req.get(req_id)

    def open_lines(self) -> int:
        with self._lock:
            return len(self._lines)

    def reset(self) -> None:
        """Forget connection-scoped request ids (on disconnect)."""
        with self._lock:
            self._by_req.clear()
            self._lines.clear()
            self._books.clear()

    def subscribe(self, cmd: SubscribeMarketData, ib: Any) -> BridgeRejectReason | None:
        """Add `cmd.requester`; open the line if it is the first; None when accepted."""
        con_id = cmd.con_id
        with self._lock:
            is_open = con_id in self._lines
            if not is_open and len(self._lines) >= self.line_limit:
                return BridgeRejectReason.MARKET_DATA_LINES_EXHAUSTED
        pipe = self._redis.pipeline()
        pipe.sadd(SUBS_KEY.format(con_id=con_id), cmd.requester)
        pipe.sadd(SUBSCRIBED_KEY, con_id)
        if cmd.depth:
            pipe.hset(SUBS_OPTS_KEY.format(con_id=con_id), "depth", "1")
        if cmd.bars:
            pipe.hset(SUBS_OPTS_KEY.format(con_id=con_id), "bars", "1")
        if cmd.contract is not None:
            pipe.hset(
                SUBS_OPTS_KEY.format(con_id=con_id), "contract", cmd.contract.model_dump_json()
            )
        pipe.execute()
        if not is_open:
            self._open(con_id, ib)
        return None

    def unsubscribe(self, cmd: UnsubscribeMarketData, ib: Any) -> None:
        """Drop `cmd.requester`; close the line after the last one."""
        key = SUBS_KEY.format(con_id=cmd.con_id)
        self._redis.srem(key, cmd.requester)
        if int(self._redis.scard(key)) > 0:
            return
        self._redis.srem(SUBSCRIBED_KEY, cmd.con_id)
        self._redis.delete(SUBS_OPTS_KEY.format(con_id=cmd.con_id))
        with self._lock:
            lines = self._lines.pop(cmd.con_id, {})
            for req_id in lines.values():
                self._by_req.pop(req_id, None)
            self._books.pop(cmd.con_id, None)
        for kind, req_id in lines.items():
            self._cancel(ib, kind, req_id)

    @staticmethod
    def _cancel(ib: Any, kind: str, req_id: int) -> None:
        if kind == "top":
            ib.cancelMktData(req_id)
        elif kind == "bars":
            ib.cancelRealTimeBars(req_id)
        elif kind == "depth":
            ib.cancelMktDepth(req_id, False)

    def resubscribe_all(self, ib: Any) -> int:
        """Re-open every wanted line after a (re)connect or a 1101/1102; returns how many.

        Lines still open on this connection (a resync after 1101/1102 keeps the socket) are
        cancelled first, so the gateway never holds two subscriptions for one con_id.
        """
        with self._lock:
            stale = [(kind, req) for lines in self._lines.values() for kind, req in lines.items()]
        for kind, req_id in stale:
            self._cancel(ib, kind, req_id)
        self.reset()
        con_ids = sorted(int(c) for c in self._redis.smembers(SUBSCRIBED_KEY))
        for con_id in con_ids[: self.line_limit]:
            self._open(con_id, ib)
        return min(len(con_ids), self.line_limit)

    def _contract(self, con_id: int, opts: dict[str, str]) -> Any:
        from ibgateway_bridge.ibobjects import to_ib_contract

        raw = opts.get("contract")
        if raw:
            return to_ib_contract(ContractSpec.model_validate_json(raw))
        cached = cast(dict[str, str], self._redis.hgetall(CONTRACT_KEY.format(con_id=con_id)))
        spec = ContractSpec(
            con_id=con_id,
            symbol=cached.get("symbol"),
            sec_type=cached.get("sec_type") or "STK",
            exchange="SMART",
            currency=cached.get("currency") or "USD",
        )
        return to_ib_contract(spec)

    def _open(self, con_id: int, ib: Any) -> None:
        opts = cast(dict[str, str], self._redis.hgetall(SUBS_OPTS_KEY.format(con_id=con_id)))
        contract = self._contract(con_id, opts)
        kinds = ["top"]
        if opts.get("bars") == "1":
            kinds.append("bars")
        if opts.get("depth") == "1":
            kinds.append("depth")
        for kind in kinds:
            req_id = self.next_req_id()
            with self._lock:
                self._by_req[req_id] = (con_id, kind)
                self._lines.setdefault(con_id, {})[kind] = req_id
            if kind == "top":
                # Default generic ticks include 49 (halted), which NOTES names as the halt signal.
                ib.reqMktData(req_id, contract, "", False, False, [])
            elif kind == "bars":
                ib.reqRealTimeBars(req_id, contract, 5, "TRADES", False, [])
            else:
                ib.reqMktDepth(req_id, contract, DEPTH_ROWS, False, [])

    # --- cache updates (outbox thread) ------------------------------------------------------
    def apply(self, kind: str, data: dict[str, Any], ts: str, pipe: Any) -> None:
        """Write one market-data message into `md:{conid}` through `pipe`."""
        found = self.con_id_for(int(data["req_id"]))
        if found is None:
            return
        con_id = found[0]
        key = MD_KEY.format(con_id=con_id)
        fields: dict[str, str] = {"ts": ts}
        if kind == "tick":
            if data["value"] is None:
                return
            fields[data["field"]] = data["value"]
            fields[f"ts_{data['field']}"] = ts
        elif kind == "halt":
            state = int(data["state"])
            fields["halted"] = str(state)
            halt_key = HALT_INSTRUMENT_KEY.format(con_id=con_id)
            if state:
                pipe.set(halt_key, str(state))
            else:
                pipe.delete(halt_key)
        elif kind == "greeks":
            prefix = data["prefix"]
            for name in ("iv", "delta", "gamma", "vega", "theta", "opt_price", "und_price"):
                if data[name] is not None:
                    fields[f"{prefix}_{name}"] = data[name]
        elif kind == "bar":
            for name in ("time", "open", "high", "low", "close", "volume", "wap", "count"):
                if data[name] is not None:
                    fields[f"bar_{name}"] = str(data[name])
        elif kind == "depth":
            fields["depth"] = json.dumps(self._apply_depth(con_id, data))
        pipe.hset(key, mapping=fields)

    def _apply_depth(self, con_id: int, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            book = self._books.setdefault(con_id, {"bid": [], "ask": []})
            rows = book[data["side"]]
            pos = int(data["position"])
            row = {"price": data["price"], "size": data["size"], "mm": data["market_maker"]}
            op = int(data["operation"])
            if op == 0:
                rows.insert(min(pos, len(rows)), row)
            elif op == 1 and pos < len(rows):
                rows[pos] = row
            elif op == 1:
                rows.append(row)
            elif op == 2 and pos < len(rows):
                rows.pop(pos)
            del rows[DEPTH_ROWS:]
            return {"bid": list(book["bid"]), "ask": list(book["ask"])}
