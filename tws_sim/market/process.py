"""One underlying's seeded price process on a fixed time grid: quotes, sizes, prints, 5 s bars.

The latent log price follows a diffusion whose vol, drift and Poisson jump intensity come from
the scenario's regimes, plus scheduled jumps. Random numbers come in blocks from a numpy
Generator seeded by (seed, symbol) and are consumed one row per grid step whatever happens, so
the path depends only on (scenario, seed, grid index). Prices are kept as integer cents.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import UTC, datetime, time, timedelta

import numpy as np

from tws_sim.market.clock import next_session_close, next_session_open
from tws_sim.market.scenario import ET, Halt, InstrumentSpec, Jump, Regime
from tws_sim.types import HaltState, Instrument

GRID_S = 0.25
GRID_US = 250_000
BAR_US = 5_000_000
BLOCK = 2048
# A trading-time year: annual vol is spread over regular hours (252 × 6.5 h), which makes the
# intraday moves match the quoted annual vol.
TRADING_YEAR_S = 252 * 6.5 * 3600.0
REGULAR_SESSION_S = 6.5 * 3600.0
PRINT_EXCHANGES: tuple[str, ...] = ("ARCA", "NASDAQ", "NYSE", "BATS", "IEX", "EDGX", "DRCTEDGE")

# Columns of the per-step uniform block.
_U_JUMP, _U_SPREAD, _U_UPD, _U_BSZ, _U_ASZ, _U_TRADE, _U_SIDE, _U_EXCH = range(8)
# Columns of the per-step normal block.
_Z_PRICE, _Z_JUMP, _Z_SIZE = range(3)


def _entropy(seed: int, symbol: str, salt: str = "") -> int:
    digest = hashlib.blake2b(f"{seed}|{symbol}|{salt}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big")


def epoch_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch for an aware datetime (exact integer arithmetic)."""
    delta = ts.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(us: int) -> datetime:
    """The aware UTC datetime for epoch microseconds."""
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def _next_open_us(after_us: int, calendar: bool = False) -> int:
    """Epoch µs of the next session's open strictly after `after_us`: the next XNYS session's
    regular open with a `calendar` (weekends and holidays skipped), else the first 09:30 ET of
    any day (an always-open simulator)."""
    if calendar:
        return epoch_us(next_session_open(from_epoch_us(after_us)))
    et_now = from_epoch_us(after_us).astimezone(ET)
    day = et_now.date()
    if et_now.time() >= time(9, 30):
        day += timedelta(days=1)
    return epoch_us(datetime.combine(day, time(9, 30), tzinfo=ET))


class UnderlyingProcess:
    """State of one underlying; `step(i)` moves it to grid index i (called with i = 1, 2, 3 …).

    After a step, `quote_changed`, `trade` (price_c, size, exchange) or None, `bar` (the bar
    that just closed, as a tuple) or None and `halt_changed` tell the market what to emit.
    """

    __slots__ = (
        "_block_start",
        "_calendar",
        "_change_idx",
        "_changes",
        "_close_us",
        "_drift",
        "_halt_events",
        "_jump_lam",
        "_jump_mean",
        "_jump_std",
        "_jumps",
        "_n",
        "_regimes",
        "_rng",
        "_roll_us",
        "_u",
        "ask_c",
        "ask_size",
        "bar",
        "bar_count",
        "bar_high",
        "bar_idx",
        "bar_low",
        "bar_open",
        "bar_pv",
        "bar_volume",
        "bars",
        "bid_c",
        "bid_size",
        "close_c",
        "con_id",
        "day_close_c",
        "halt",
        "halt_changed",
        "high_c",
        "inst",
        "iv_mult",
        "last_c",
        "last_size",
        "lot",
        "low_c",
        "open_c",
        "p0",
        "price",
        "quote_changed",
        "spec",
        "spread_mult",
        "start_us",
        "step_index",
        "trade",
        "version",
        "vol",
        "vol_mult",
        "volume",
        "x",
    )

    def __init__(
        self,
        inst: Instrument,
        spec: InstrumentSpec,
        seed: int,
        start_us: int,
        regimes: list[tuple[int, int | None, Regime]],
        jumps: list[tuple[int, Jump]],
        halts: list[tuple[int, int | None, Halt]],
        calendar: bool = False,
    ) -> None:
        self.inst = inst
        self._calendar = calendar
        self.spec = spec
        self.con_id = inst.con_id
        self.start_us = start_us
        self.lot = spec.lot_size
        self.vol = spec.vol
        self.p0 = float(spec.price)
        self.x = 0.0
        self.price = self.p0
        self._rng = np.random.Generator(np.random.PCG64(_entropy(seed, spec.symbol)))
        self._block_start = -1
        self._n: list[list[float]] = []
        self._u: list[list[float]] = []
        self._regimes = regimes
        self._jumps = sorted(jumps, key=lambda j: j[0])
        # Parameter change points (regime starts and ends), consumed in time order.
        points = {start_us}
        for begin, end, _ in regimes:
            points.add(begin)
            if end is not None:
                points.add(end)
        self._changes = sorted(p for p in points if p >= start_us)
        self._change_idx = 0
        self.vol_mult = 1.0
        self.iv_mult = 1.0
        self.spread_mult = 1.0
        self._drift = 0.0
        self._jump_lam = 0.0
        self._jump_mean = 0.0
        self._jump_std = 0.0
        self._apply_regimes(start_us)
        events: list[tuple[int, int]] = []
        for begin, end, halt in halts:
            events.append((begin, halt.state))
            if end is not None:
                events.append((end, 0))
        events.sort(key=lambda e: e[0])
        self.halt = HaltState.TRADING
        self._halt_events = events
        while self._halt_events and self._halt_events[0][0] <= start_us:
            self.halt = HaltState(self._halt_events.pop(0)[1])

        # Session statistics at the start: prior close, open, high, low and the volume so far,
        # drawn from a separate stream so they do not shift the path's random numbers.
        init = random.Random(_entropy(seed, spec.symbol, "init"))
        p0c = round(self.p0 * 100)
        self.close_c = max(1, round(p0c * math.exp(init.gauss(0.0, 0.006))))
        self.open_c = max(1, round(self.close_c * math.exp(init.gauss(0.0, 0.003))))
        self.high_c = round(max(self.open_c, p0c) * (1 + abs(init.gauss(0.0, 0.002))))
        self.low_c = max(1, round(min(self.open_c, p0c) * (1 - abs(init.gauss(0.0, 0.002)))))
        self.volume = 0
        self.step_index = 0
        half = max(1, spec.spread_ticks) / 2.0
        self.bid_c = max(1, math.floor(p0c - half + 0.5))
        self.ask_c = self.bid_c + spec.spread_ticks
        self.bid_size = self.lot * max(1, round(spec.avg_size_lots))
        self.ask_size = self.bid_size
        self.last_c = p0c
        self.last_size = self.lot
        self.quote_changed = False
        self.trade: tuple[int, int, str] | None = None
        self.bar: tuple[int, int, int, int, int, int, int, int] | None = None
        self.halt_changed = False
        self.bar_idx = start_us // BAR_US
        self._reset_bar()
        self.bars: list[tuple[int, int, int, int, int, int, int, int]] = []
        self.version = 0
        self._roll_us = _next_open_us(start_us, calendar)
        # With a calendar the regular close's last price is the next session's close (tick 9),
        # whatever prints after hours; without one the last price at the roll is.
        self.day_close_c: int | None = None
        self._close_us = epoch_us(next_session_close(from_epoch_us(start_us))) if calendar else -1

    def set_initial_volume(self, fraction_of_day: float) -> None:
        """Session volume at the start: the day's average volume × the fraction elapsed."""
        frac = max(0.0, min(1.0, fraction_of_day))
        self.volume = int(self.spec.daily_volume * frac) // self.lot * self.lot

    def _reset_bar(self) -> None:
        self.bar_open = 0
        self.bar_high = 0
        self.bar_low = 0
        self.bar_volume = 0
        self.bar_pv = 0
        self.bar_count = 0

    def _apply_regimes(self, t_us: int) -> None:
        vol_mult = 1.0
        iv_mult = 1.0
        spread_mult = 1.0
        drift = 0.0
        lam = 0.0
        jm = 0.0
        js = 0.0
        for begin, end, reg in self._regimes:
            if begin <= t_us and (end is None or t_us < end):
                vol_mult *= reg.vol_mult
                iv_mult *= reg.iv_mult
                spread_mult *= reg.spread_mult
                drift += reg.drift
                if reg.jump_intensity > 0:
                    lam += reg.jump_intensity
                    jm = reg.jump_mean
                    js = reg.jump_std
        self.vol_mult = vol_mult
        self.iv_mult = iv_mult
        self.spread_mult = spread_mult
        self._drift = drift
        self._jump_lam = lam * GRID_S / 3600.0  # jumps per step
        self._jump_mean = jm
        self._jump_std = js
        while self._change_idx < len(self._changes) and self._changes[self._change_idx] <= t_us:
            self._change_idx += 1

    def _load_block(self, block: int) -> None:
        # Blocks are drawn strictly in order, so block k's numbers never depend on chunking.
        while self._block_start < block:
            self._n = self._rng.standard_normal((BLOCK, 3)).tolist()
            self._u = self._rng.random((BLOCK, 8)).tolist()
            self._block_start += 1

    def step(self, i: int) -> None:
        """Advance to grid index `i` (exactly one more than the last call)."""
        t_us = self.start_us + i * GRID_US
        self.step_index = i
        self.quote_changed = False
        self.trade = None
        self.bar = None
        self.halt_changed = False
        block, row = divmod(i - 1, BLOCK)
        if block != self._block_start:
            self._load_block(block)
        z = self._n[row]
        u = self._u[row]
        if self._change_idx < len(self._changes) and self._changes[self._change_idx] <= t_us:
            self._apply_regimes(t_us)

        vm = self.vol_mult
        sig = self.vol * vm
        dt = GRID_S / TRADING_YEAR_S
        self.x += (self._drift - 0.5 * sig * sig) * dt + sig * math.sqrt(dt) * z[_Z_PRICE]
        if self._jump_lam > 0.0 and u[_U_JUMP] < self._jump_lam:
            self.x += self._jump_mean + self._jump_std * z[_Z_JUMP]
        while self._jumps and self._jumps[0][0] <= t_us:
            self.x += self._jumps.pop(0)[1].size
        self.price = self.p0 * math.exp(self.x)

        # Close the 5-second bar this step leaves behind (bars are aligned to epoch seconds).
        bar_idx = t_us // BAR_US
        if bar_idx != self.bar_idx:
            self._close_bar()
            self.bar_idx = bar_idx

        if self._calendar and t_us >= self._close_us:
            self.day_close_c = self.last_c
            self._close_us = epoch_us(next_session_close(from_epoch_us(t_us)))
        if t_us >= self._roll_us:
            self._roll_session(t_us)

        if self._halt_events and self._halt_events[0][0] <= t_us:
            state = self.halt
            while self._halt_events and self._halt_events[0][0] <= t_us:
                state = HaltState(self._halt_events.pop(0)[1])
            if state != self.halt:
                self.halt = state
                self.halt_changed = True
                self.quote_changed = True
        if self.halt != HaltState.TRADING:
            # Halted: the quote freezes, nothing prints; the latent price keeps moving and the
            # book reopens wherever it went (a gap).
            if self.quote_changed:
                self.version += 1
            return

        mid = self.price * 100.0
        width = self.spec.spread_ticks * vm**0.75 * self.spread_mult
        spread = max(1, round(width * (0.75 + 0.5 * u[_U_SPREAD])))
        bid = max(1, math.floor(mid - spread * 0.5 + 0.5))
        ask = bid + spread
        if bid != self.bid_c or ask != self.ask_c:
            self.bid_c = bid
            self.ask_c = ask
            self.quote_changed = True
        if u[_U_UPD] < 0.35:
            avg = max(1.0, self.spec.avg_size_lots / vm)
            lot = self.lot
            bsz = lot * (1 + int(-avg * math.log(1.0 - u[_U_BSZ])))
            asz = lot * (1 + int(-avg * math.log(1.0 - u[_U_ASZ])))
            if bsz != self.bid_size or asz != self.ask_size:
                self.bid_size = bsz
                self.ask_size = asz
                self.quote_changed = True
        p_trade = self.spec.trades_per_s * GRID_S * math.sqrt(vm)
        if u[_U_TRADE] < min(0.95, p_trade):
            price_c = self.ask_c if u[_U_SIDE] < 0.5 else self.bid_c
            size = max(1, int(self.spec.avg_trade_size * math.exp(0.9 * z[_Z_SIZE] - 0.405)))
            if size > self.lot:
                size = max(self.lot, round(size / self.lot) * self.lot)
            exchange = PRINT_EXCHANGES[int(u[_U_EXCH] * len(PRINT_EXCHANGES))]
            self.trade = (price_c, size, exchange)
            self.last_c = price_c
            self.last_size = size
            self.volume += size
            if price_c > self.high_c:
                self.high_c = price_c
            if price_c < self.low_c:
                self.low_c = price_c
            if self.bar_count == 0:
                self.bar_open = self.bar_high = self.bar_low = price_c
            elif price_c > self.bar_high:
                self.bar_high = price_c
            elif price_c < self.bar_low:
                self.bar_low = price_c
            self.bar_volume += size
            self.bar_pv += price_c * size
            self.bar_count += 1
            self.quote_changed = True
        if self.quote_changed:
            self.version += 1

    def skip(self, last: int) -> None:
        """Move to grid index `last` through steps outside the stock's trading hours (night,
        weekend, holiday): nothing quotes or prints, the latent price rests, and the 5-second
        bars those steps span are recorded flat at the last price, as stepping through them
        without a trade would record them. Skipping is exact: a path stepped through the same
        dark steps in any chunks ends in the same state."""
        self.step_index = last
        self.quote_changed = False
        self.trade = None
        self.halt_changed = False
        bar_idx = (self.start_us + last * GRID_US) // BAR_US
        if bar_idx != self.bar_idx:
            self._close_bar()
            c = self.last_c
            self.bars.extend((b, c, c, c, c, 0, 0, 0) for b in range(self.bar_idx + 1, bar_idx))
            self.bar_idx = bar_idx
        self.bar = None

    def _roll_session(self, t_us: int) -> None:
        # A new session at its open: the prior session's close (its regular close's last price
        # with a calendar, else the last price now) becomes the close; volume starts over.
        self.close_c = self.day_close_c if self.day_close_c is not None else self.last_c
        self.open_c = max(1, (self.bid_c + self.ask_c) // 2)
        self.high_c = self.low_c = self.open_c
        self.volume = 0
        self.quote_changed = True
        self._roll_us = _next_open_us(t_us, self._calendar)

    def _close_bar(self) -> None:
        if self.bar_count:
            bar = (
                self.bar_idx,
                self.bar_open,
                self.bar_high,
                self.bar_low,
                self.last_c,
                self.bar_volume,
                self.bar_pv,
                self.bar_count,
            )
        else:
            c = self.last_c
            bar = (self.bar_idx, c, c, c, c, 0, 0, 0)
        self.bars.append(bar)
        self.bar = bar
        self._reset_bar()
