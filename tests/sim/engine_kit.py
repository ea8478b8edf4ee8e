"""The engine tests' shared kit: a small deterministic market, instruments, an order builder,
a venue factory and the event filters every engine test file uses.

The engine depends on the market only through `quote`, `depth`, `halt_state`, `session_open` and
the catalog's `get`; `BookMarket` implements exactly that API over books the test sets by hand,
so each engine test states the market it trades against (`test_engine_double.py` checks that
the double behaves as documented).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tws_sim.engine import Venue, VenueRules
from tws_sim.types import (
    DepthLevel,
    Executed,
    HaltState,
    Instrument,
    OrderRequest,
    Quote,
    QuoteChanged,
    Right,
    SecType,
    TradePrinted,
    VenueError,
    VenueEvent,
)

D = Decimal
T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def _stock(con_id: int, symbol: str, primary: str, name: str, *venues: str) -> Instrument:
    return Instrument(
        con_id=con_id,
        symbol=symbol,
        sec_type=SecType.STK,
        currency="USD",
        exchange="SMART",
        primary_exchange=primary,
        local_symbol=symbol,
        trading_class=symbol,
        multiplier=1,
        min_tick=D("0.01"),
        long_name=name,
        valid_exchanges=("SMART", *venues),
    )


SPY = _stock(756733, "SPY", "ARCA", "SPDR S&P 500 ETF TRUST", "ARCA", "ISLAND")
AAPL = _stock(265598, "AAPL", "NASDAQ", "APPLE INC", "ISLAND")


def _opt(con_id: int, strike: str, right: Right) -> Instrument:
    return Instrument(
        con_id=con_id,
        symbol="SPY",
        sec_type=SecType.OPT,
        currency="USD",
        exchange="SMART",
        primary_exchange="",
        local_symbol=f"SPY   261120{right.value}00{int(D(strike) * 1000):06d}",
        trading_class="SPY",
        multiplier=100,
        min_tick=D("0.01"),
        long_name="SPY option",
        valid_exchanges=("SMART", "CBOE", "BOX"),
        expiry=date(2026, 11, 20),
        strike=D(strike),
        right=right,
        underlying_con_id=SPY.con_id,
    )


CALL_600 = _opt(900001, "600", Right.CALL)
CALL_605 = _opt(900002, "605", Right.CALL)


class Catalog:
    """`get(con_id)` over a fixed set of instruments."""

    def __init__(self, *instruments: Instrument) -> None:
        self._by_id = {i.con_id: i for i in instruments}

    def get(self, con_id: int) -> Instrument | None:
        return self._by_id.get(con_id)


class BookMarket:
    """Books set by hand: each `set_book` is a new quote (new ts), depth levels best first."""

    def __init__(self) -> None:
        self._quotes: dict[int, Quote] = {}
        self._depth: dict[int, list[DepthLevel]] = {}
        self._halts: dict[int, HaltState] = {}
        self.open = True
        # The session's regular close, when a test needs one (MOC/LOC cancel cutoff).
        self.close_at: datetime | None = None
        self.depth_calls = 0
        self.watching: dict[int, int] = {}

    def set_book(
        self,
        con_id: int,
        now: datetime,
        bids: list[tuple[str, str]],
        asks: list[tuple[str, str]],
        last: str | None = None,
        open_: str | None = None,
    ) -> QuoteChanged:
        """Replace the book of `con_id`: bids/asks as (price, size), best first."""
        depth = [DepthLevel(1, i, D(p), D(s), f"MM{i}") for i, (p, s) in enumerate(bids)] + [
            DepthLevel(0, i, D(p), D(s), f"MM{i}") for i, (p, s) in enumerate(asks)
        ]
        self._depth[con_id] = depth
        bid, bid_size = (D(bids[0][0]), D(bids[0][1])) if bids else (D(0), D(0))
        ask, ask_size = (D(asks[0][0]), D(asks[0][1])) if asks else (D(0), D(0))
        lst = D(last) if last is not None else (bid + ask) / 2
        prev = self._quotes.get(con_id)
        q = Quote(
            con_id=con_id,
            ts=now,
            bid=bid,
            ask=ask,
            bid_size=bid_size,
            ask_size=ask_size,
            last=lst,
            last_size=D(100),
            volume=D(1000),
            high=max(lst, prev.high) if prev else lst,
            low=min(lst, prev.low) if prev else lst,
            close=prev.close if prev else lst,
            open=D(open_) if open_ is not None else (prev.open if prev else lst),
        )
        self._quotes[con_id] = q
        return QuoteChanged(q)

    def print_trade(self, con_id: int, now: datetime, price: str, size: str) -> TradePrinted:
        return TradePrinted(con_id, now, D(price), D(size), "ARCA")

    def set_halt(self, con_id: int, state: HaltState) -> None:
        self._halts[con_id] = state

    # --- the documented market API the engine uses -------------------------------------------

    def quote(self, con_id: int) -> Quote:
        return self._quotes[con_id]

    def depth(self, con_id: int, rows: int) -> list[DepthLevel]:
        self.depth_calls += 1
        levels = self._depth.get(con_id, [])
        return [lv for lv in levels if lv.position < rows]

    def halt_state(self, con_id: int) -> HaltState:
        inst_halt = self._halts.get(con_id)
        if inst_halt is not None:
            return inst_halt
        if con_id in (CALL_600.con_id, CALL_605.con_id):
            return self._halts.get(SPY.con_id, HaltState.TRADING)
        return HaltState.TRADING

    def session_open(self, now: datetime) -> bool:
        return self.open

    def session_close(self, now: datetime) -> datetime | None:
        return self.close_at

    def watch(self, con_id: int) -> None:
        self.watching[con_id] = self.watching.get(con_id, 0) + 1

    def unwatch(self, con_id: int) -> None:
        count = self.watching.get(con_id, 0)
        if count <= 1:
            self.watching.pop(con_id, None)
        else:
            self.watching[con_id] = count - 1


def standard_market(now: datetime = T0) -> BookMarket:
    """SPY 500.00 x 500.01 three levels deep, AAPL 200.00 x 200.02, two SPY calls."""
    m = BookMarket()
    m.set_book(
        SPY.con_id,
        now,
        bids=[("500.00", "100"), ("499.99", "200"), ("499.98", "300")],
        asks=[("500.01", "100"), ("500.02", "200"), ("500.03", "300")],
        last="500.00",
    )
    m.set_book(AAPL.con_id, now, bids=[("200.00", "500")], asks=[("200.02", "500")], last="200.01")
    m.set_book(CALL_600.con_id, now, bids=[("5.00", "50")], asks=[("5.10", "50")])
    m.set_book(CALL_605.con_id, now, bids=[("2.00", "50")], asks=[("2.05", "50")])
    return m


def order(
    order_id: int,
    action: str = "BUY",
    qty: str = "100",
    order_type: str = "LMT",
    lmt: str | None = None,
    aux: str | None = None,
    *,
    client_id: int = 1,
    con_id: int = SPY.con_id,
    tif: str = "DAY",
    **kw: object,
) -> OrderRequest:
    """A compact OrderRequest builder for the tests."""
    inst = {i.con_id: i for i in (SPY, AAPL, CALL_600, CALL_605)}.get(con_id)
    return OrderRequest(
        client_id=client_id,
        order_id=order_id,
        account=kw.pop("account", ""),  # type: ignore[arg-type]
        con_id=con_id,
        symbol=kw.pop("symbol", inst.symbol if inst else "SPY"),  # type: ignore[arg-type]
        sec_type=kw.pop("sec_type", inst.sec_type if inst else SecType.STK),  # type: ignore[arg-type]
        action=action,
        total_qty=D(qty),
        order_type=order_type,
        tif=tif,
        lmt_price=None if lmt is None else D(lmt),
        aux_price=None if aux is None else D(aux),
        **kw,  # type: ignore[arg-type]
    )


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_venue(
    *instruments: Instrument,
    market: BookMarket | None = None,
    rules: VenueRules | None = None,
    **kw: Any,
) -> tuple[Venue, BookMarket]:
    """A venue over `instruments` (SPY, AAPL and the 600 call when none are named) trading
    against `market` (the standard one by default); `kw` goes to `Venue` (state_dir, exec_log)."""
    m = market or standard_market()
    cat = Catalog(*(instruments or (SPY, AAPL, CALL_600)))
    return Venue(cat, m, None, rules=rules or VenueRules(), **kw), m


def error_codes(events: list[VenueEvent]) -> list[int]:
    """The IB codes of the venue's errors, in order."""
    return [e.code for e in events if isinstance(e, VenueError)]


def executions(events: list[VenueEvent]) -> list[Executed]:
    return [e for e in events if isinstance(e, Executed)]
