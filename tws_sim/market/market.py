"""`Market`: the seeded stochastic market of every underlying, with options priced on demand.

`advance(now)` walks every grid step (`GRID` seconds) up to `now`, for all underlyings whether
watched or not, so the price path never depends on who is subscribed or how `now` is chunked;
only the events (and the option quotes, which are priced lazily) are limited to watched
con_ids. A scenario on the XNYS calendar is dark outside a session day's extended hours
(04:00-20:00 ET): quotes rest there and the path picks up where it stopped, and each session
opens with the prior regular close as its close. Time is always a parameter here; the wall
clock belongs to `SimClock`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

from tws_sim.market.book import cents, depth_levels, keyed_uniform
from tws_sim.market.catalog import PENNY_ALL_CLASSES, Catalog
from tws_sim.market.clock import et_datetime, extended_bounds, in_regular_hours, session_bounds
from tws_sim.market.options import SECONDS_PER_YEAR, bsm, pv_dividend, surface_vol
from tws_sim.market.process import (
    BAR_US,
    GRID_S,
    GRID_US,
    REGULAR_SESSION_S,
    TRADING_YEAR_S,
    UnderlyingProcess,
    epoch_us,
    from_epoch_us,
)
from tws_sim.market.scenario import ET, Scenario
from tws_sim.types import (
    Bar,
    BarClosed,
    DepthLevel,
    Greeks,
    HaltChanged,
    HaltState,
    Instrument,
    MarketEvent,
    Quote,
    QuoteChanged,
    SecType,
    TradePrinted,
)

HISTORY_WHATS = frozenset({"TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST"})
MAX_HISTORY_BARS = 10_000
MAX_HISTORY_WALK = 200_000  # bars the synthetic path may be walked back from the start
_OPTION_RECOMPUTE_STEPS = 4  # time decay is applied in one-second buckets
_OPTION_SIZE_STEPS = 8  # displayed option sizes change every 2 s
_OPTION_PRINT_P = 0.01  # a watched option prints about every 25 s
_Q4 = Decimal("0.0001")
_MINUS_ONE = Decimal("-1")


class UnknownContractError(LookupError):
    """A con_id the catalog does not know (the server answers IB error 200)."""


class HistoryError(ValueError):
    """A historical-data request the market cannot serve (the server answers IB error 321)."""


@dataclass(slots=True)
class _OptionState:
    inst: Instrument
    und: UnderlyingProcess
    strike: float
    is_call: bool
    expiry_us: int
    penny_all: bool
    atm_base: float
    div_yield: float
    step: int = -1
    key: tuple[int, int, float, float] | None = None
    size_period: int = -1
    bid_c: int = 0
    ask_c: int = 1
    bid_size: int = 1
    ask_size: int = 1
    theo_c: float = 0.0
    greeks: Greeks | None = None
    last_c: int = 0
    last_size: int = 0
    volume: int = 0
    high_c: int = 0
    low_c: int = 0
    open_c: int = 0
    close_c: int = 0
    halt: HaltState = HaltState.TRADING
    quote: Quote | None = None


class Market:
    """The venue's market data for one run: see the module docstring and ARCHITECTURE.md."""

    GRID = GRID_S

    def __init__(self, catalog: Catalog, scenario: Scenario, seed: int, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("Market start must be timezone-aware")
        self.catalog = catalog
        self.scenario = scenario
        self.seed = int(seed)
        self.start = start
        self.start_us = epoch_us(start)
        self.rate = scenario.rate
        self._step = 0
        self._watch: dict[int, int] = {}
        self._options: dict[int, _OptionState] = {}
        self._watched_options: dict[int, list[_OptionState]] = {}
        self._quotes: dict[int, tuple[int, Quote]] = {}
        self._procs: list[UnderlyingProcess] = []
        self._by_con: dict[int, UnderlyingProcess] = {}
        # A scenario on the XNYS calendar (not always open) has dark hours: outside a session
        # day's 04:00-20:00 ET (17:00 on early closes) nothing quotes or prints.
        self._calendar = not scenario.always_open
        self._phase_live = True
        self._phase_until = -1  # epoch µs where the current live / dark phase ends

        et_start = start.astimezone(ET)
        day_open = et_datetime(et_start.date(), time(9, 30))
        fraction = (start - day_open).total_seconds() / REGULAR_SESSION_S
        for inst in catalog.underlyings():
            spec = scenario.instrument(inst.symbol)
            if spec is None:
                raise ValueError(f"catalog stock {inst.symbol} is not in the scenario")
            regimes = [
                (epoch_us(r.begins(start)), _opt_us(r.ends(start)), r)
                for r in scenario.regimes
                if not r.symbols or inst.symbol in r.symbols
            ]
            jumps = [
                (epoch_us(j.begins(start)), j)
                for j in scenario.jumps
                if not j.symbols or inst.symbol in j.symbols
            ]
            halts = [
                (epoch_us(h.begins(start)), _opt_us(h.ends(start)), h)
                for h in scenario.halts
                if h.symbol == inst.symbol
            ]
            proc = UnderlyingProcess(
                inst, spec, self.seed, self.start_us, regimes, jumps, halts, self._calendar
            )
            proc.set_initial_volume(fraction)
            self._procs.append(proc)
            self._by_con[inst.con_id] = proc

    # ---------------------------------------------------------------------------------------------
    # Time

    @property
    def now(self) -> datetime:
        """The simulated time of the last grid step the market has reached."""
        return from_epoch_us(self.start_us + self._step * GRID_US)

    @property
    def step_index(self) -> int:
        """Grid steps taken since `start`."""
        return self._step

    def advance(self, now: datetime) -> list[MarketEvent]:
        """Step through every grid point ≤ `now`; events for watched con_ids, in time order.

        A `now` at or before the last step is a no-op (time never runs backwards). On the XNYS
        calendar (a scenario that is not always open) the dark hours between one session day's
        extended close and the next one's 04:00 ET are skipped at once: nothing quotes, prints
        or moves there, so a night or a weekend costs nothing to cross.
        """
        target = (epoch_us(now) - self.start_us) // GRID_US
        if target <= self._step:
            return []
        events: list[MarketEvent] = []
        first = self._step + 1
        while first <= target:
            last = target
            if self._calendar:
                t_us = self.start_us + first * GRID_US
                if t_us >= self._phase_until:
                    self._phase_live, self._phase_until = _phase(t_us)
                # the last grid step strictly before the phase ends
                last = min(target, (self._phase_until - self.start_us - 1) // GRID_US)
                if not self._phase_live:
                    for p in self._procs:
                        p.skip(last)
                    first = last + 1
                    continue
            self._walk(first, last, events)
            first = last + 1
        self._step = target
        return events

    def _walk(self, first: int, last: int, events: list[MarketEvent]) -> None:
        """Step every underlying (and the watched options) through grid steps first..last."""
        watch = self._watch
        procs = self._procs
        watched_opts = self._watched_options
        for i in range(first, last + 1):
            ts: datetime | None = None
            for p in procs:
                p.step(i)
                if p.con_id in watch and (p.halt_changed or p.bar is not None or p.quote_changed):
                    ts = ts or from_epoch_us(self.start_us + i * GRID_US)
                    if p.halt_changed:
                        events.append(HaltChanged(p.con_id, ts, p.halt))
                    if p.bar is not None:
                        events.append(BarClosed(p.con_id, _bar_from_tuple(p.bar)))
                    if p.quote_changed:
                        events.append(QuoteChanged(self._stock_quote(p, ts)))
                    if p.trade is not None:
                        price_c, size, exchange = p.trade
                        events.append(
                            TradePrinted(p.con_id, ts, cents(price_c), Decimal(size), exchange)
                        )
                opts = watched_opts.get(p.con_id)
                if opts:
                    ts = ts or from_epoch_us(self.start_us + i * GRID_US)
                    for st in opts:
                        self._step_option(st, i, ts, events)

    def session_open(self, now: datetime) -> bool:
        """Regular hours per the XNYS calendar, or always when the scenario says `always_open`."""
        return self.scenario.always_open or in_regular_hours(now)

    def session_close(self, now: datetime) -> datetime | None:
        """Today's regular close (aware UTC; early closes included), None when there is none."""
        if self.scenario.always_open:
            return None
        bounds = session_bounds(now.astimezone(ET).date())
        return None if bounds is None else bounds[1]

    # ---------------------------------------------------------------------------------------------
    # Subscriptions

    def watch(self, con_id: int) -> None:
        """Start emitting events for `con_id` (ref-counted); options start being priced."""
        inst = self._instrument(con_id)
        count = self._watch.get(con_id, 0)
        self._watch[con_id] = count + 1
        if count == 0 and inst.sec_type is SecType.OPT:
            st = self._option(inst)
            self._price_option(st, self._step)
            st.halt = st.und.halt
            self._watched_options.setdefault(st.und.con_id, []).append(st)

    def unwatch(self, con_id: int) -> None:
        """Release one `watch`; at zero the con_id's events stop (unknown/unwatched: no-op)."""
        count = self._watch.get(con_id, 0)
        if count <= 0:
            return
        if count > 1:
            self._watch[con_id] = count - 1
            return
        del self._watch[con_id]
        st = self._options.get(con_id)
        if st is not None:
            lst = self._watched_options.get(st.und.con_id, [])
            if st in lst:
                lst.remove(st)

    def watched(self) -> set[int]:
        """The con_ids currently watched."""
        return set(self._watch)

    # ---------------------------------------------------------------------------------------------
    # Queries

    def quote(self, con_id: int) -> Quote:
        """Top of book now (options priced from the underlying by Black-Scholes).

        Raises `UnknownContractError` for a con_id not in the catalog.
        """
        proc = self._by_con.get(con_id)
        if proc is not None:
            return self._stock_quote(proc, None)
        st = self._option(self._instrument(con_id))
        if st.step != self._step or st.quote is None:
            self._price_option(st, self._step)
        if st.quote is None:  # set by _price_option; narrows the type
            raise UnknownContractError(con_id)
        return st.quote

    def greeks(self, con_id: int) -> Greeks | None:
        """Model greeks of an option now (None for a stock). Unknown → `UnknownContractError`."""
        inst = self._instrument(con_id)
        if inst.sec_type is not SecType.OPT:
            return None
        st = self._option(inst)
        if st.step != self._step or st.greeks is None:
            self._price_option(st, self._step)
        return st.greeks

    def underlying_price(self, con_id: int) -> Decimal:
        """Mid of the underlying's displayed quote (for a stock, its own mid)."""
        inst = self._instrument(con_id)
        proc = self._by_con[self.catalog.underlying_of(inst).con_id]
        return cents(proc.bid_c + proc.ask_c) / 2

    def depth(self, con_id: int, rows: int) -> list[DepthLevel]:
        """L2 book: `rows` levels a side, asks (side 0) then bids (side 1); [] while halted."""
        inst = self._instrument(con_id)
        rows = max(0, min(int(rows), 50))
        proc = self._by_con.get(con_id)
        if proc is not None:
            if proc.halt != HaltState.TRADING:
                return []
            return depth_levels(
                self.seed,
                con_id,
                self._step,
                proc.bid_c,
                proc.ask_c,
                proc.bid_size,
                proc.ask_size,
                1,
                rows,
                proc.lot,
                False,
            )
        st = self._option(inst)
        if st.step != self._step:
            self._price_option(st, self._step)
        if st.und.halt != HaltState.TRADING:
            return []
        tick = 1 if st.penny_all or st.ask_c < 300 else 5
        return depth_levels(
            self.seed,
            con_id,
            self._step,
            st.bid_c,
            st.ask_c,
            st.bid_size,
            st.ask_size,
            tick,
            rows,
            1,
            True,
        )

    def halt_state(self, con_id: int) -> HaltState:
        """Tick-49 state now; an option inherits its underlying's halt."""
        inst = self._instrument(con_id)
        return self._by_con[self.catalog.underlying_of(inst).con_id].halt

    def regime(self, con_id: int) -> tuple[float, float]:
        """(vol multiplier, implied-vol multiplier) in force for the con_id's underlying."""
        inst = self._instrument(con_id)
        proc = self._by_con[self.catalog.underlying_of(inst).con_id]
        return proc.vol_mult, proc.iv_mult

    def history(
        self,
        con_id: int,
        end: datetime,
        duration_s: int,
        bar_size_s: int,
        what: str = "TRADES",
    ) -> list[Bar]:
        """Bars covering [end - duration_s, end), aligned to multiples of `bar_size_s`.

        Before the market's start the bars come from a deterministic synthetic path that ends at
        the start price; after it they aggregate the 5-second bars the market has recorded.
        Bars never reach past the market's current time. For MIDPOINT/BID/ASK/BID_ASK the
        volume, WAP and count are -1, as IB sends them. Raises `HistoryError` for a bad
        duration, bar size or `what`, and `UnknownContractError` for an unknown con_id.
        """
        inst = self._instrument(con_id)
        what = what.strip().upper()
        if what not in HISTORY_WHATS:
            raise HistoryError(f"unsupported whatToShow {what!r}")
        if duration_s <= 0 or bar_size_s <= 0:
            raise HistoryError("duration and bar size must be positive")
        bs = int(bar_size_s)
        end_s = min(epoch_us(end), self.start_us + self._step * GRID_US) // 1_000_000
        first = (end_s - int(duration_s)) // bs * bs
        starts = list(range(first, end_s, bs))
        if len(starts) > MAX_HISTORY_BARS:
            raise HistoryError(f"{len(starts)} bars requested; at most {MAX_HISTORY_BARS}")
        if not starts:
            return []
        if (self.start_us // 1_000_000 - first) // bs > MAX_HISTORY_WALK:
            raise HistoryError("historical data that far before the simulation start is not kept")
        proc = self._by_con[self.catalog.underlying_of(inst).con_id]
        und_bars = self._underlying_bars(proc, starts, bs)
        out: list[Bar] = []
        if inst.sec_type is SecType.OPT:
            st = self._option(inst)
            for b, (o, h, lo, c, vol, _count) in zip(starts, und_bars, strict=True):
                t_years = max(st.expiry_us / 1e6 - (b + bs), 0.0) / SECONDS_PER_YEAR
                po, ph, pl, pc = (
                    self._theo(st, s / 100.0, t_years, 1.0) * 100.0 for s in (o, h, lo, c)
                )
                u = keyed_uniform(self.seed, con_id, b, 0x515)
                opt_vol = int(u * 40) if vol > 0 else 0
                half_spread_c = max(0.5, pc * 0.005)
                hi_c, lo_c = max(po, ph, pl, pc), min(po, ph, pl, pc)
                count = (opt_vol + 4) // 5
                out.append(
                    self._make_bar(b, po, hi_c, lo_c, pc, opt_vol, count, what, half_spread_c)
                )
            return out
        half_spread_c = proc.spec.spread_ticks / 2.0
        for b, (o, h, lo, c, vol, count) in zip(starts, und_bars, strict=True):
            out.append(self._make_bar(b, o, h, lo, c, vol, count, what, half_spread_c))
        return out

    # ---------------------------------------------------------------------------------------------
    # Internals

    def _instrument(self, con_id: int) -> Instrument:
        inst = self.catalog.get(con_id)
        if inst is None:
            raise UnknownContractError(con_id)
        return inst

    def _stock_quote(self, p: UnderlyingProcess, ts: datetime | None) -> Quote:
        cached = self._quotes.get(p.con_id)
        if cached is not None and cached[0] == p.version:
            return cached[1]
        if ts is None:
            ts = self.now
        q = Quote(
            con_id=p.con_id,
            ts=ts,
            bid=cents(p.bid_c),
            ask=cents(p.ask_c),
            bid_size=Decimal(p.bid_size),
            ask_size=Decimal(p.ask_size),
            last=cents(p.last_c),
            last_size=Decimal(p.last_size),
            volume=Decimal(p.volume),
            high=cents(p.high_c),
            low=cents(p.low_c),
            close=cents(p.close_c),
            open=cents(p.open_c),
            halted=p.halt,
        )
        self._quotes[p.con_id] = (p.version, q)
        return q

    def _option(self, inst: Instrument) -> _OptionState:
        st = self._options.get(inst.con_id)
        if st is not None:
            return st
        if inst.expiry is None or inst.strike is None or inst.underlying_con_id is None:
            raise UnknownContractError(inst.con_id)
        und = self._by_con[inst.underlying_con_id]
        spec = und.spec
        # Options stop trading at the session close of their expiry day (13:00 on early closes).
        bounds = session_bounds(inst.expiry)
        expiry_us = epoch_us(bounds[1] if bounds else et_datetime(inst.expiry, time(16, 0)))
        st = _OptionState(
            inst=inst,
            und=und,
            strike=float(inst.strike),
            is_call=inst.right is not None and inst.right.value == "C",
            expiry_us=expiry_us,
            penny_all=inst.trading_class in PENNY_ALL_CLASSES,
            atm_base=spec.iv if spec.iv is not None else spec.vol * 1.1,
            div_yield=spec.dividend_yield,
        )
        # Session statistics priced from the start (not from when someone first asked), so
        # they are the same whatever the subscription history.
        t0 = max(expiry_us - self.start_us, 0) / 1e6 / SECONDS_PER_YEAR
        st.open_c = max(1, round(self._theo(st, und.p0, t0, 1.0) * 100))
        close_t = t0 + 1.0 / 365.0
        st.close_c = max(1, round(self._theo(st, und.close_c / 100.0, close_t, 1.0) * 100))
        st.last_c = st.close_c
        st.high_c = max(st.open_c, st.close_c)
        st.low_c = min(st.open_c, st.close_c)
        self._options[inst.con_id] = st
        return st

    def _theo(self, st: _OptionState, spot: float, t_years: float, iv_mult: float) -> float:
        iv = surface_vol(st.atm_base * iv_mult, spot, st.strike, t_years)
        return bsm(st.is_call, spot, st.strike, t_years, self.rate, st.div_yield, iv)[0]

    def _price_option(self, st: _OptionState, step: int) -> bool:
        """Bring an option to grid `step`; True when its displayed quote changed.

        The model price is a pure function of (underlying mid, step // 4, regime): time decay
        is applied in one-second buckets. So a watched option and one priced on demand show the
        same numbers, and an option is only repriced when one of those inputs moved.
        """
        p = st.und
        key = (p.bid_c + p.ask_c, step // _OPTION_RECOMPUTE_STEPS, p.iv_mult, p.vol_mult)
        old = (st.bid_c, st.ask_c, st.bid_size, st.ask_size)
        if key != st.key:
            st.key = key
            t_us = self.start_us + key[1] * _OPTION_RECOMPUTE_STEPS * GRID_US
            spot = key[0] / 200.0
            rem = st.expiry_us - t_us
            t_years = (rem if rem > 0 else 0) / 1e6 / SECONDS_PER_YEAR
            iv = surface_vol(st.atm_base * p.iv_mult, spot, st.strike, t_years)
            price, delta, gamma, vega, theta = bsm(
                st.is_call, spot, st.strike, t_years, self.rate, st.div_yield, iv
            )
            theo_c = price * 100.0
            tick = 1 if st.penny_all or theo_c < 300.0 else 5
            width = round(theo_c * 0.01 * math.sqrt(p.vol_mult) / tick) or 1
            # floor(theo - w/2 + 1/2) keeps the theoretical price inside [bid, ask].
            bid_t = math.floor(theo_c / tick - width * 0.5 + 0.5)
            if p.halt == HaltState.TRADING:
                st.bid_c = bid_t * tick if bid_t > 0 else 0
                st.ask_c = (bid_t + width) * tick
                if st.ask_c <= st.bid_c:
                    st.ask_c = st.bid_c + tick
            st.theo_c = theo_c
            st.greeks = Greeks(
                implied_vol=iv,
                delta=delta,
                gamma=gamma,
                vega=vega,
                theta=theta,
                opt_price=price,
                pv_dividend=pv_dividend(spot, t_years, st.div_yield),
                und_price=spot,
            )
        period = step // _OPTION_SIZE_STEPS
        # Halted with its underlying: the option's book freezes too (sizes included), as the
        # options exchanges halt an option class with its underlying.
        if period != st.size_period and p.halt == HaltState.TRADING:
            damp = 1.0 / math.sqrt(p.vol_mult)
            u1 = keyed_uniform(self.seed, st.inst.con_id, period, 1)
            u2 = keyed_uniform(self.seed, st.inst.con_id, period, 2)
            st.bid_size = 1 + int(u1 * 60 * damp)
            st.ask_size = 1 + int(u2 * 60 * damp)
            st.size_period = period
        st.step = step
        changed = old != (st.bid_c, st.ask_c, st.bid_size, st.ask_size)
        if changed or st.quote is None or st.halt != p.halt:
            st.halt = p.halt
            st.quote = self._option_quote(st, from_epoch_us(self.start_us + step * GRID_US))
        return changed

    def _option_quote(self, st: _OptionState, ts: datetime) -> Quote:
        return Quote(
            con_id=st.inst.con_id,
            ts=ts,
            bid=cents(st.bid_c),
            ask=cents(st.ask_c),
            bid_size=Decimal(st.bid_size),
            ask_size=Decimal(st.ask_size),
            last=cents(st.last_c),
            last_size=Decimal(st.last_size),
            volume=Decimal(st.volume),
            high=cents(st.high_c),
            low=cents(st.low_c),
            close=cents(st.close_c),
            open=cents(st.open_c),
            halted=st.und.halt,
        )

    def _step_option(
        self, st: _OptionState, i: int, ts: datetime, events: list[MarketEvent]
    ) -> None:
        p = st.und
        con_id = st.inst.con_id
        if p.halt_changed:
            events.append(HaltChanged(con_id, ts, p.halt))
        changed = self._price_option(st, i)
        trade: TradePrinted | None = None
        if (
            p.halt == HaltState.TRADING
            and keyed_uniform(self.seed, con_id, i, 0x7A) < _OPTION_PRINT_P
        ):
            buy = keyed_uniform(self.seed, con_id, i, 0x7B) < 0.5
            price_c = st.ask_c if buy else st.bid_c
            if price_c > 0:
                size = 1 + int(keyed_uniform(self.seed, con_id, i, 0x7C) * 20)
                st.last_c = price_c
                st.last_size = size
                st.volume += size
                st.high_c = max(st.high_c, price_c)
                st.low_c = min(st.low_c, price_c)
                trade = TradePrinted(con_id, ts, cents(price_c), Decimal(size), "CBOE")
                changed = True
                st.quote = self._option_quote(st, ts)
        if changed and st.quote is not None:
            events.append(QuoteChanged(st.quote))
        if trade is not None:
            events.append(trade)

    def _underlying_bars(
        self, p: UnderlyingProcess, starts: list[int], bs: int
    ) -> list[tuple[float, float, float, float, int, int]]:
        """(open, high, low, close, volume, count) in cents per bar start (epoch seconds)."""
        start_s = self.start_us / 1e6
        # Synthetic path before the start: walk back from the start price, one keyed normal per
        # absolute bar boundary, so a given (seed, con_id, bar size) always yields the same bars.
        trading_bs = bs if bs < 86400 else bs / 86400.0 * REGULAR_SESSION_S
        sigma_bar = p.vol * math.sqrt(trading_bs / TRADING_YEAR_S)
        b0 = int(start_s // bs * bs)  # the last boundary at or before the start
        first = starts[0]
        boundary_price: dict[int, float] = {}
        gap = (start_s - b0) / bs
        price = p.p0 * 100.0 * math.exp(-sigma_bar * math.sqrt(gap) * self._knorm(p, b0 // bs, bs))
        boundary_price[b0] = price
        b = b0
        while b > first:
            b -= bs
            price *= math.exp(-sigma_bar * self._knorm(p, b // bs, bs))
            boundary_price[b] = price
        adv_per_s = p.spec.daily_volume / REGULAR_SESSION_S
        recorded = p.bars
        rec_first = recorded[0][0] if recorded else None
        out: list[tuple[float, float, float, float, int, int]] = []
        prev_close = boundary_price.get(first, p.p0 * 100.0)
        for b in starts:
            syn: tuple[float, float, float, float, int, int] | None = None
            if b < start_s:
                o = boundary_price[b]
                c = boundary_price.get(b + bs, p.p0 * 100.0)
                u1 = keyed_uniform(self.seed, p.con_id, b // bs, bs * 2 + 1)
                u2 = keyed_uniform(self.seed, p.con_id, b // bs, bs * 2 + 2)
                h = max(o, c) * (1 + 0.5 * sigma_bar * u1)
                lo = min(o, c) * (1 - 0.5 * sigma_bar * u2)
                frac = min(1.0, (start_s - b) / bs)
                vol = int(adv_per_s * trading_bs * frac * (0.6 + 0.8 * u1))
                vol = vol // p.lot * p.lot
                count = max(1, int(vol / p.spec.avg_trade_size)) if vol else 0
                syn = (o, h, lo, c, vol, count)
            agg: list[tuple[int, int, int, int, int, int, int, int]] = []
            if rec_first is not None and b + bs > start_s:
                lo_idx = max(0, b // 5 - rec_first)
                hi_idx = min(len(recorded), (b + bs) // 5 - rec_first)
                agg = recorded[lo_idx:hi_idx] if hi_idx > lo_idx else []
            if syn is None and not agg:
                out.append((prev_close, prev_close, prev_close, prev_close, 0, 0))
                continue
            if agg:
                ro = agg[0][1]
                rh = max(r[2] for r in agg)
                rl = min(r[3] for r in agg)
                rc = agg[-1][4]
                rv = sum(r[5] for r in agg)
                rn = sum(r[7] for r in agg)
                if syn is None:
                    bar = (float(ro), float(rh), float(rl), float(rc), rv, rn)
                else:
                    o, h, lo, _c, vol, count = syn
                    bar = (o, max(h, rh), min(lo, rl), float(rc), vol + rv, count + rn)
            elif syn is not None:
                bar = syn
            else:  # unreachable: the no-data case continued above
                continue
            prev_close = bar[3]
            out.append(bar)
        return out

    def _knorm(self, p: UnderlyingProcess, bar_no: int, bs: int) -> float:
        u1 = keyed_uniform(self.seed, p.con_id, bar_no, bs * 2 + 11)
        u2 = keyed_uniform(self.seed, p.con_id, bar_no, bs * 2 + 12)
        return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)

    @staticmethod
    def _make_bar(
        b: int,
        o: float,
        h: float,
        lo: float,
        c: float,
        vol: int,
        count: int,
        what: str,
        half_spread_c: float,
    ) -> Bar:
        shift = -half_spread_c if what == "BID" else half_spread_c if what == "ASK" else 0.0
        if what == "BID_ASK":
            po, ph, pl, pc = o - half_spread_c, h + half_spread_c, lo - half_spread_c, c
        else:
            po, ph, pl, pc = o + shift, h + shift, lo + shift, c + shift
        oc, hc, lc, cc = (max(1, round(x)) for x in (po, ph, pl, pc))
        hc = max(hc, oc, cc, lc)
        lc = min(lc, oc, cc, hc)
        if what in ("TRADES", "ADJUSTED_LAST"):
            wap = (cents(hc + lc + cc) / 3).quantize(_Q4)
            volume = Decimal(vol)
            n = count
        else:
            wap = _MINUS_ONE
            volume = _MINUS_ONE
            n = -1
        return Bar(
            time=from_epoch_us(b * 1_000_000),
            open=cents(oc),
            high=cents(hc),
            low=cents(lc),
            close=cents(cc),
            volume=volume,
            wap=wap,
            count=n,
        )


def _phase(t_us: int) -> tuple[bool, int]:
    """(live?, epoch µs the phase ends) at `t_us` on the XNYS calendar: live inside a session
    day's extended hours, dark from their end to the next session day's 04:00 ET."""
    now = from_epoch_us(t_us)
    day = now.astimezone(ET).date()
    bounds = extended_bounds(day)
    if bounds is not None:
        if bounds[0] <= now < bounds[1]:
            return True, epoch_us(bounds[1])
        if now < bounds[0]:
            return False, epoch_us(bounds[0])
    for _ in range(30):
        day += timedelta(days=1)
        bounds = extended_bounds(day)
        if bounds is not None:
            return False, epoch_us(bounds[0])
    raise ValueError(f"no XNYS session within 30 days of {now}")


def _opt_us(ts: datetime | None) -> int | None:
    return None if ts is None else epoch_us(ts)


def _bar_from_tuple(t: tuple[int, int, int, int, int, int, int, int]) -> Bar:
    idx, o, h, lo, c, vol, pv, count = t
    wap = (Decimal(pv) / Decimal(vol * 100)).quantize(_Q4) if vol else cents(c)
    return Bar(
        time=from_epoch_us(idx * BAR_US),
        open=cents(o),
        high=cents(h),
        low=cents(lo),
        close=cents(c),
        volume=Decimal(vol),
        wap=wap,
        count=count,
    )
