"""Who asked for what: every subscription a session holds, by reqId and by con_id.

Market-data subscriptions are indexed twice: by (session, reqId) for cancels and by con_id for the
driver's fan-out, which looks up the subscribers of a con_id once per market event. The market is
told to `watch` a con_id once per subscription (its watch count is reference-counted), so options
are priced only while someone looks at them. Account-side subscriptions (account updates,
summary, positions, P&L) hold the last values sent, so pushes go out only on change.

The registry needs nothing of the server but the market's watch counts (`Watcher`), so it takes
the market, not the server. It also holds the L2 book last sent per con_id: that book belongs
to the con_id's depth subscribers together and goes when the last of them does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

from tws_sim.types import DepthLevel, Quote

if TYPE_CHECKING:
    from tws_sim.server.session import Session


class Watcher(Protocol):
    """The market's reference-counted watch list (`tws_sim.market.Market` implements it)."""

    def watch(self, con_id: int) -> None: ...
    def unwatch(self, con_id: int) -> None: ...


class MdKind(IntEnum):
    MKT = 1  # reqMktData: tickPrice/Size/String/Generic (+ tickOptionComputation for options)
    TBT_BID_ASK = 2  # reqTickByTickData "BidAsk"
    TBT_LAST = 3  # "Last"
    TBT_ALL_LAST = 4  # "AllLast"
    DEPTH = 5  # reqMktDepth (L2)
    RT_BARS = 6  # reqRealTimeBars (5 s)
    TBT_MID_POINT = 7  # "MidPoint"
    HIST = 8  # reqHistoricalData with keepUpToDate: historicalDataUpdate of the forming bar
    COMBO = 9  # reqMktData on a BAG: the net bid/ask of its legs as tickPrice/tickSize


TBT_KINDS = {
    "BidAsk": MdKind.TBT_BID_ASK,
    "Last": MdKind.TBT_LAST,
    "AllLast": MdKind.TBT_ALL_LAST,
    "MidPoint": MdKind.TBT_MID_POINT,
}


@dataclass(slots=True, eq=False)
class MdSub:
    """One market-data subscription of one session."""

    session: Session
    req_id: int
    kind: MdKind
    con_id: int
    is_option: bool = False
    generic_ticks: frozenset[int] = frozenset()
    rows: int = 0  # depth rows
    what: str = "TRADES"  # real-time bars: TRADES / MIDPOINT / BID / ASK; history: whatToShow
    # keepUpToDate history: the bar size, the date format asked for, and the con_id the bars are
    # of (an option's bars follow its underlying's 5-second bars, so `con_id` is the underlying).
    bar_s: int = 0
    format_date: int = 1
    bars_of: int = 0
    # combo (BAG) quotes: (leg con_id, signed ratio: + bought, - sold per combo unit), and the
    # net quote last sent (each subscriber's legs are its own, so nothing is shared)
    legs: tuple[tuple[int, int], ...] = ()
    last: Quote | None = None

    def con_ids(self) -> tuple[int, ...]:
        """The con_ids whose market events feed this subscription (a combo's legs)."""
        if self.legs:
            return tuple(dict.fromkeys(c for c, _ in self.legs))
        return (self.con_id,)


@dataclass(slots=True, eq=False)
class AccountSub:
    """An account-side subscription; the `last_*` fields hold what was last pushed to it, so
    periodic pushes send only what changed."""

    session: Session
    req_id: int
    # "updates", "summary", "positions", "positions_multi", "updates_multi", "pnl", "pnl_single"
    kind: str
    account: str = ""
    model: str = ""
    con_id: int = 0
    tags: tuple[str, ...] = ()
    # account values last sent (updates, summary, updates_multi): tag → (value, currency)
    last_values: dict[str, tuple[str, str]] | None = None
    # P&L last sent, rounded to the cent (pnl: daily, unrealized, realized; pnl_single: 5 values)
    last_pnl: tuple[Decimal, ...] | None = None
    # updatePortfolio rows last sent (updates): con_id → PortfolioRow.values()
    last_push: dict[int, tuple[Decimal, ...]] | None = None


class Subscriptions:
    """The registry of a server's subscriptions (driven on the event-loop thread only)."""

    def __init__(self, market: Watcher) -> None:
        self.market = market
        self.md: dict[tuple[int, int], MdSub] = {}  # (id(session), req_id) → sub
        self.md_by_con: dict[int, list[MdSub]] = {}
        self.account: dict[tuple[int, int, str], AccountSub] = {}
        # The L2 book last sent per con_id, shared by its depth subscribers (the driver diffs
        # the market's depth against it; see tws_sim.server.push.depth_changes).
        self.depth_book: dict[int, dict[tuple[int, int], DepthLevel]] = {}

    # ---------------------------------------------------------------------------------------------
    # market data

    def has_md(self, session: Session, req_id: int) -> bool:
        return (id(session), req_id) in self.md

    def add_md(self, sub: MdSub) -> None:
        key = (id(sub.session), sub.req_id)
        old = self.md.get(key)
        if old is not None:
            self._remove_md(key, old)
        self.md[key] = sub
        for con_id in sub.con_ids():
            self.md_by_con.setdefault(con_id, []).append(sub)
            self.market.watch(con_id)

    def remove_md(self, session: Session, req_id: int, kind: MdKind | None = None) -> MdSub | None:
        key = (id(session), req_id)
        sub = self.md.get(key)
        if sub is None or (kind is not None and sub.kind is not kind):
            return None
        self._remove_md(key, sub)
        return sub

    def _remove_md(self, key: tuple[int, int], sub: MdSub) -> None:
        del self.md[key]
        for con_id in sub.con_ids():
            subs = self.md_by_con.get(con_id)
            if subs is not None:
                subs.remove(sub)
                if not subs:
                    del self.md_by_con[con_id]
            self.market.unwatch(con_id)
        if sub.kind is MdKind.DEPTH and not any(
            s.kind is MdKind.DEPTH for s in self.md_by_con.get(sub.con_id, ())
        ):
            self.depth_book.pop(sub.con_id, None)  # nobody holds that book now

    def md_subscribers(self, con_id: int) -> list[MdSub]:
        return self.md_by_con.get(con_id, [])

    # ---------------------------------------------------------------------------------------------
    # account side

    def add_account(self, sub: AccountSub) -> None:
        self.account[(id(sub.session), sub.req_id, sub.kind)] = sub

    def remove_account(self, session: Session, req_id: int, kind: str) -> AccountSub | None:
        return self.account.pop((id(session), req_id, kind), None)

    def account_subs(self, kind: str) -> list[AccountSub]:
        return [s for s in self.account.values() if s.kind == kind]

    def all_account_subs(self) -> list[AccountSub]:
        return list(self.account.values())

    # ---------------------------------------------------------------------------------------------

    def drop_session(self, session: Session) -> None:
        """Forget everything a closed session asked for (and unwatch its con_ids)."""
        sid = id(session)
        for md_key in [k for k in self.md if k[0] == sid]:
            self._remove_md(md_key, self.md[md_key])
        for acct_key in [k for k in self.account if k[0] == sid]:
            del self.account[acct_key]
