"""The simulator's own venue, stepped in this process, behind the orders path's `Venue` port: what
`epm drill` runs recorded intents against (`docs/replay.md`).

`tws_sim`'s market and matching engine (its fills, partial fills, IB-tiered commissions,
session rules) are driven on a stepped clock with no server and no socket: each replayed
second the market advances (`Market.advance`) and the engine works the resting orders against
it (`Venue.on_market`). What the engine reports (orderStatus, execDetails, commissionReport,
errors) becomes the bridge's payloads for the ledger. The services cannot import the simulator
(`tests/unit/test_dependencies.py`), so this adapter lives in the shell.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from epm.calendar import ET
from epm.replay_sources import stock_contract
from models.replay.events import Kind, MarketEvent
from models.risk import AccountFacts


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


class SimulatorVenue:
    """The `Venue` port and the replay runner's stepping over `tws_sim`, in this process."""

    def __init__(
        self,
        scenario_path: Path | None,
        *,
        day: date,
        seed: int,
        client_id: int,
        symbols: int = 10,
    ) -> None:
        from tws_sim.engine import Venue
        from tws_sim.market import Catalog, Market, Scenario

        scenario = Scenario.load(scenario_path) if scenario_path is not None else Scenario.default()
        self.catalog = Catalog.build(day, scenario)
        self.start = datetime.combine(day, time(9, 30), tzinfo=ET).astimezone(UTC)
        self._market = Market(self.catalog, scenario, seed, self.start)
        self.engine = Venue(self.catalog, self._market, scenario, account="DU0000003")
        stocks = [i for i in self.catalog.underlyings() if str(i.sec_type) == "STK"]
        self.stocks = sorted(stocks, key=lambda i: i.con_id)[:symbols]
        for inst in self.stocks:
            self._market.watch(inst.con_id)
        self.client_id = client_id
        self.now = self.start
        self._next_id = self.engine.next_order_id(client_id) - 1
        self._pending_market: list[Any] = []
        self._stepped_to = self.start
        self._bars: dict[int, tuple[Decimal, datetime]] = {}
        self._commissions: list[tuple[datetime, dict[str, Any]]] = []
        self.callbacks: list[tuple[str, dict[str, Any]]] = []
        self.placed = 0
        self.fills = 0

    def contracts(self) -> list[dict[str, Any]]:
        return [stock_contract(i.symbol, i.con_id, format(i.min_tick, "f")) for i in self.stocks]

    def clock_events(self, seconds: int) -> Iterator[MarketEvent]:
        """Step the simulator's market second by second; one quote event per stock per second
        (what the replay runner steps on and the snapshot shows)."""
        for s in range(1, seconds + 1):
            now = self.start + timedelta(seconds=s)
            self._pending_market.extend(self._market.advance(now))
            for inst in self.stocks:
                q = self._market.quote(inst.con_id)
                yield MarketEvent(
                    ts=now,
                    symbol=inst.symbol,
                    kind=Kind.QUOTE,
                    bid=q.bid,
                    ask=q.ask,
                    bid_size=q.bid_size,
                    ask_size=q.ask_size,
                    last=q.last,
                    halted=int(q.halted) != 0,
                )

    # -- stepping ---------------------------------------------------------------------------
    def on_event(self, event: MarketEvent) -> None:
        self.now = event.ts
        if event.ts <= self._stepped_to:
            return
        self._stepped_to = event.ts
        from tws_sim.types import BarClosed

        market, self._pending_market = self._pending_market, []
        for m in market:
            if isinstance(m, BarClosed):
                self._bars[m.con_id] = (m.bar.volume, m.bar.time)
        self._translate(self.engine.on_market(market, event.ts))
        self._release_commissions()

    def live_orders(self) -> int:
        return len(self.engine.open_orders(self.client_id))

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        self._release_commissions()
        out, self.callbacks = self.callbacks, []
        return out

    # -- the Venue port ---------------------------------------------------------------------
    @contextmanager
    def sending(self) -> Iterator[bool]:
        yield True

    def allocate_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _request(
        self, ib_order_id: int, coid: str, contract: Mapping[str, Any], order: Mapping[str, Any]
    ) -> Any:
        from tws_sim.types import OrderRequest, SecType

        con_id = int(contract.get("con_id") or 0)
        inst = self.catalog.get(con_id)

        def dec(name: str) -> Decimal | None:
            value = order.get(name)
            return None if value is None else Decimal(str(value))

        return OrderRequest(
            client_id=self.client_id,
            order_id=ib_order_id,
            account="DU0000003",
            con_id=con_id,
            symbol=inst.symbol if inst is not None else str(contract.get("symbol") or ""),
            sec_type=inst.sec_type
            if inst is not None
            else SecType(str(contract.get("sec_type") or "STK")),
            action=str(order.get("action")),
            total_qty=Decimal(str(order["quantity"])),
            order_type=str(order.get("order_type") or "LMT"),
            tif=str(order.get("tif") or "DAY"),
            lmt_price=dec("lmt_price"),
            aux_price=dec("aux_price"),
            trailing_percent=dec("trailing_percent"),
            oca_group=str(order.get("oca_group") or ""),
            parent_id=int(order.get("parent_id") or 0),
            transmit=bool(order.get("transmit", True)),
            order_ref=coid,
        )

    def place(
        self,
        ib_order_id: int,
        client_order_id: str,
        contract: Mapping[str, Any],
        order: Mapping[str, Any],
        strategy: str | None,
    ) -> None:
        self.placed += 1
        req = self._request(ib_order_id, client_order_id, contract, order)
        self._translate(self.engine.place(req, self.now))

    def modify(
        self,
        ib_order_id: int,
        version: int,
        client_order_id: str,
        contract: Mapping[str, Any],
        order: Mapping[str, Any],
        strategy: str | None,
    ) -> None:
        req = self._request(ib_order_id, client_order_id, contract, order)
        self._translate(self.engine.place(req, self.now))

    def cancel(self, ib_order_id: int) -> None:
        self._translate(self.engine.cancel(self.client_id, ib_order_id, self.now))

    def market(self, con_id: int) -> Mapping[str, str]:
        if self.catalog.get(con_id) is None:
            return {}
        q = self._market.quote(con_id)
        fields = {
            "ts": _iso(self._stepped_to),
            "bid": format(q.bid, "f"),
            "ask": format(q.ask, "f"),
            "last": format(q.last, "f"),
            "bid_size": format(q.bid_size, "f"),
            "ask_size": format(q.ask_size, "f"),
            "halted": "1" if int(q.halted) else "0",
        }
        bar = self._bars.get(con_id)
        if bar is not None:
            fields["bar_volume"], fields["bar_time"] = format(bar[0], "f"), _iso(bar[1])
        return fields

    def subscribe(
        self, con_id: int, requester: str, contract: Mapping[str, Any], depth: bool = False
    ) -> None:
        self._market.watch(con_id)

    def request_contract(self, contract: Mapping[str, Any]) -> None:
        """The drill's contracts are in the ledger before the first second."""

    def what_if_answer(self, client_order_id: str) -> Mapping[str, str]:
        return {}

    def account(self, now: datetime) -> AccountFacts | None:
        """A drill has no risk connection: combos go out without a what-if, as intake skips
        headroom without client 2 (docs/risk.md)."""
        return None

    # -- callbacks --------------------------------------------------------------------------
    def _translate(self, events: list[Any]) -> None:
        from tws_sim.types import Commissioned, Executed, OrderChanged, VenueError

        stamp = _iso(self.now)
        for e in events:
            if isinstance(e, OrderChanged) and e.order_status:
                s = e.snapshot
                if s.request.client_id != self.client_id:
                    continue
                self.callbacks.append(
                    (
                        "order_status",
                        {
                            "ib_order_id": s.request.order_id,
                            "client_id": self.client_id,
                            "perm_id": s.perm_id,
                            "ib_status": str(s.status),
                            "filled": format(s.filled, "f"),
                            "remaining": format(s.remaining, "f"),
                            "avg_fill_price": format(s.avg_fill_price, "f"),
                            "last_fill_price": format(s.last_fill_price, "f"),
                            "parent_id": s.request.parent_id or None,
                            "received_at": stamp,
                        },
                    )
                )
            elif isinstance(e, Executed):
                x = e.execution
                self.fills += 1
                self.callbacks.append(
                    (
                        "execution",
                        {
                            "exec_id": x.exec_id,
                            "ib_order_id": x.order_id,
                            "client_id": x.client_id,
                            "perm_id": x.perm_id,
                            "order_ref": x.order_ref,
                            "con_id": x.con_id,
                            "symbol": x.symbol,
                            "sec_type": str(x.sec_type),
                            "side": x.side,
                            "shares": format(x.shares, "f"),
                            "price": format(x.price, "f"),
                            "cum_qty": format(x.cum_qty, "f"),
                            "avg_price": format(x.avg_price, "f"),
                            "exec_exchange": x.exchange,
                            "account": x.account,
                            "time": _iso(x.time),
                            "received_at": stamp,
                        },
                    )
                )
            elif isinstance(e, Commissioned):
                r = e.report
                payload = {
                    "exec_id": r.exec_id,
                    "client_id": e.client_id,
                    "commission": format(r.commission, "f"),
                    "currency": r.currency,
                    "realized_pnl": _text(r.realized_pnl),
                    "received_at": stamp,
                }
                self._commissions.append((e.deliver_at or self.now, payload))
            elif isinstance(e, VenueError) and e.req_id > 0 and e.client_id == self.client_id:
                self.callbacks.append(
                    (
                        "order_error",
                        {
                            "ib_order_id": e.req_id,
                            "client_id": self.client_id,
                            "code": e.code,
                            "message": e.message,
                            "error_time": stamp,
                            "received_at": stamp,
                        },
                    )
                )

    def _release_commissions(self) -> None:
        due = [c for c in self._commissions if c[0] <= self.now]
        if due:
            self._commissions = [c for c in self._commissions if c[0] > self.now]
            self.callbacks.extend(("commission", p) for _, p in due)
