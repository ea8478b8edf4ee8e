"""The replay venue: the orders path's `Venue` port over recorded market data and the pure fill
model (`models.replay.fill_model`), inside the replay's own process.

It is the only venue a replay has: nothing here opens a socket, so a replay cannot reach a
gateway, paper or live (the command refuses any endpoint, `docs/replay.md`). What a gateway
would call back (orderStatus, execDetails, error) is queued as the bridge's payloads
(`ibgateway_bridge/payloads.py` shapes) and handed to the ledger by the runner after the call
that caused it returns, as a real callback arrives after `placeOrder` returns. No commission
report is sent: the ledger's tiered estimate stands as the fee (`docs/ledger.md`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from models.replay.events import MarketEvent
from models.replay.fill_model import ZERO, Fill, SimOrder, match, refusal
from models.risk import AccountFacts

BAR_SECONDS = 5
REJECTED_CODE = 201
ACCOUNT = "REPLAY"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _text(value: Decimal) -> str:
    return format(value, "f")


@dataclass(slots=True)
class _Bars:
    """Volume per 5 s window (IB's real-time bars): the last completed one is what a TWAP's
    participation cap reads."""

    window: int = -1
    volume: Decimal = ZERO
    last_volume: Decimal | None = None
    last_time: datetime | None = None


class ReplayVenue:
    """`services.orders.venue.Venue` for a replay; `on_event` steps the market."""

    def __init__(self, con_ids: Mapping[str, int], client_id: int) -> None:
        self._con_ids = dict(con_ids)
        self._symbols = {v: k for k, v in con_ids.items()}
        self.client_id = client_id
        self.now = datetime(1970, 1, 1, tzinfo=UTC)
        self._next_id = 0
        self._exec_seq = 0
        self._orders: dict[int, SimOrder] = {}
        self._live: dict[str, list[SimOrder]] = {}
        self._latest: dict[str, MarketEvent] = {}
        self._bars: dict[str, _Bars] = {}
        self.callbacks: list[tuple[str, dict[str, Any]]] = []
        self.placed = 0
        self.fills = 0

    # -- the Venue port ---------------------------------------------------------------------
    @contextmanager
    def sending(self) -> Iterator[bool]:
        yield True

    def allocate_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def place(
        self,
        ib_order_id: int,
        client_order_id: str,
        contract: Mapping[str, Any],
        order: Mapping[str, Any],
        strategy: str | None,
    ) -> None:
        existing = self._orders.get(ib_order_id)
        if existing is not None:
            return  # the bridge sends an id once; a re-send of the same id is dropped
        symbol = self._symbols.get(int(contract.get("con_id") or 0), str(contract.get("symbol")))
        order_type = str(order.get("order_type") or "")
        tif = str(order.get("tif") or "DAY")
        why = refusal(order_type, tif)
        if why is None and (
            order.get("parent_id") or order.get("oca_group") or order.get("transmit") is False
        ):
            why = "the replay venue does not model bracket or OCA orders"
        self.placed += 1
        if why is not None:
            self._error(ib_order_id, why)
            return
        sim = SimOrder(
            ib_order_id=ib_order_id,
            client_order_id=client_order_id,
            symbol=symbol,
            buy=order.get("action") == "BUY",
            quantity=Decimal(str(order["quantity"])),
            order_type=order_type,
            limit=None if order.get("lmt_price") is None else Decimal(str(order["lmt_price"])),
            stop=None if order.get("aux_price") is None else Decimal(str(order["aux_price"])),
            tif=tif,
        )
        self._orders[ib_order_id] = sim
        self._work(sim, self._latest.get(symbol), {})
        if not sim.done and sim.filled == ZERO:
            # Accepted and working (an order filled at once reports its fill and Filled only).
            self._status(sim, "Submitted")
        if not sim.done and tif == "IOC":
            self._cancelled(sim)
        elif not sim.done:
            self._live.setdefault(symbol, []).append(sim)

    def modify(
        self,
        ib_order_id: int,
        version: int,
        client_order_id: str,
        contract: Mapping[str, Any],
        order: Mapping[str, Any],
        strategy: str | None,
    ) -> None:
        sim = self._orders.get(ib_order_id)
        if sim is None or sim.done:
            return
        if order.get("lmt_price") is not None:
            sim.limit = Decimal(str(order["lmt_price"]))
        if order.get("quantity") is not None:
            sim.quantity = max(Decimal(str(order["quantity"])), sim.filled)
        self._status(sim, "Submitted")
        self._work(sim, self._latest.get(sim.symbol), {})

    def cancel(self, ib_order_id: int) -> None:
        sim = self._orders.get(ib_order_id)
        if sim is not None and not sim.done:
            self._cancelled(sim)

    def market(self, con_id: int) -> Mapping[str, str]:
        symbol = self._symbols.get(con_id)
        event = self._latest.get(symbol) if symbol is not None else None
        if event is None:
            return {}
        fields = {"ts": _iso(event.ts), "halted": "1" if event.halted else "0"}
        for name in ("bid", "ask", "last", "bid_size", "ask_size"):
            value = getattr(event, name)
            if value is not None:
                fields[name] = _text(value)
        bars = self._bars.get(event.symbol)
        if bars is not None and bars.last_volume is not None and bars.last_time is not None:
            fields["bar_volume"] = _text(bars.last_volume)
            fields["bar_time"] = _iso(bars.last_time)
        return fields

    def subscribe(
        self, con_id: int, requester: str, contract: Mapping[str, Any], depth: bool = False
    ) -> None:
        """Every instrument of the data is replayed whether asked for or not."""

    def request_contract(self, contract: Mapping[str, Any]) -> None:
        """The replay's contracts are in the ledger before the first event; one the data does
        not hold stays unknown and its intent is refused (UNKNOWN_CONTRACT) as live."""

    def what_if_answer(self, client_order_id: str) -> Mapping[str, str]:
        return {}

    def account(self, now: datetime) -> AccountFacts | None:
        """A replay has no account: combos go out without a what-if, as intake skips headroom."""
        return None

    # -- the market -------------------------------------------------------------------------
    def on_event(self, event: MarketEvent) -> None:
        """Step one instrument's market: the snapshot, its 5 s bars, the resting orders."""
        self.now = event.ts
        self._latest[event.symbol] = event
        bars = self._bars.get(event.symbol)
        if bars is None:
            bars = self._bars[event.symbol] = _Bars()
        window = int(event.ts.timestamp()) // BAR_SECONDS
        if window != bars.window:
            if bars.window >= 0:
                bars.last_volume = bars.volume
                bars.last_time = datetime.fromtimestamp(bars.window * BAR_SECONDS, UTC)
            bars.window, bars.volume = window, ZERO
        if event.volume is not None:
            bars.volume += event.volume
        live = self._live.get(event.symbol)
        if not live:
            return
        used: dict[bool, Decimal] = {}
        for sim in live:
            self._work(sim, event, used)
        self._live[event.symbol] = [s for s in live if not s.done]

    def live_orders(self) -> int:
        return sum(len(v) for v in self._live.values())

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        out, self.callbacks = self.callbacks, []
        return out

    # -- callbacks --------------------------------------------------------------------------
    def _work(self, sim: SimOrder, event: MarketEvent | None, used: dict[bool, Decimal]) -> None:
        fill = match(sim, event, used)
        if fill is not None:
            self._execution(sim, fill)

    def _execution(self, sim: SimOrder, fill: Fill) -> None:
        self._exec_seq += 1
        self.fills += 1
        con_id = self._con_ids.get(sim.symbol)
        self.callbacks.append(
            (
                "execution",
                {
                    "exec_id": f"0000e0d5.{self._exec_seq:08x}.01.01",
                    "ib_order_id": sim.ib_order_id,
                    "client_id": self.client_id,
                    "perm_id": 1_000_000 + sim.ib_order_id,
                    "order_ref": sim.client_order_id,
                    "con_id": con_id,
                    "symbol": sim.symbol,
                    "sec_type": "STK",
                    "side": "BOT" if sim.buy else "SLD",
                    "shares": _text(fill.shares),
                    "price": _text(fill.price),
                    "cum_qty": _text(sim.filled),
                    "avg_price": _text(sim.avg_price or fill.price),
                    "exec_exchange": "REPLAY",
                    "account": ACCOUNT,
                    "time": _iso(self.now),
                    "received_at": _iso(self.now),
                },
            )
        )
        self._status(sim, "Filled" if sim.done else "Submitted")

    def _status(self, sim: SimOrder, status: str) -> None:
        avg = sim.avg_price
        self.callbacks.append(
            (
                "order_status",
                {
                    "ib_order_id": sim.ib_order_id,
                    "client_id": self.client_id,
                    "perm_id": 1_000_000 + sim.ib_order_id,
                    "ib_status": status,
                    "filled": _text(sim.filled),
                    "remaining": _text(sim.remaining if status != "Cancelled" else ZERO),
                    "avg_fill_price": None if avg is None else _text(avg),
                    "received_at": _iso(self.now),
                },
            )
        )

    def _cancelled(self, sim: SimOrder) -> None:
        sim.done = True
        self._status(sim, "Cancelled")
        live = self._live.get(sim.symbol)
        if live and sim in live:
            live.remove(sim)

    def _error(self, ib_order_id: int, message: str) -> None:
        self.callbacks.append(
            (
                "order_error",
                {
                    "ib_order_id": ib_order_id,
                    "client_id": self.client_id,
                    "code": REJECTED_CODE,
                    "message": f"Order rejected - reason:{message}",
                    "error_time": _iso(self.now),
                    "received_at": _iso(self.now),
                },
            )
        )
