"""The contract catalog: default stocks with IB's con_ids, option chains, contractDetails metadata.

Stock con_ids are IB's real ones for the ten default symbols, so a client that hard-codes
`conId=756733` for SPY finds it. Option con_ids are derived from a hash of (symbol, expiry,
right, strike), so they are stable across runs and machines and never collide with a stock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from tws_sim.market.clock import session_bounds, sessions_from
from tws_sim.market.scenario import ET, InstrumentSpec, Scenario
from tws_sim.types import Instrument, Right, SecType


@dataclass(frozen=True, slots=True)
class _StockInfo:
    con_id: int
    primary_exchange: str
    long_name: str
    industry: str
    category: str
    dailies: bool


# IB's con_ids for the default symbols (public, visible in any contract lookup).
DEFAULT_STOCKS: dict[str, _StockInfo] = {
    "SPY": _StockInfo(756733, "ARCA", "SPDR S&P 500 ETF TRUST", "Funds", "Equity Fund", True),
    "QQQ": _StockInfo(
        320227571, "NASDAQ", "INVESCO QQQ TRUST SERIES 1", "Funds", "Equity Fund", True
    ),
    "IWM": _StockInfo(9579970, "ARCA", "ISHARES RUSSELL 2000 ETF", "Funds", "Equity Fund", True),
    "AAPL": _StockInfo(265598, "NASDAQ", "APPLE INC", "Technology", "Computers", False),
    "MSFT": _StockInfo(272093, "NASDAQ", "MICROSOFT CORP", "Technology", "Software", False),
    "NVDA": _StockInfo(4815747, "NASDAQ", "NVIDIA CORP", "Technology", "Semiconductors", False),
    "AMZN": _StockInfo(3691937, "NASDAQ", "AMAZON.COM INC", "Communications", "Internet", False),
    "GOOGL": _StockInfo(
        208813719, "NASDAQ", "ALPHABET INC-CL A", "Communications", "Internet", False
    ),
    "META": _StockInfo(
        107113386, "NASDAQ", "META PLATFORMS INC-CLASS A", "Communications", "Internet", False
    ),
    "TSLA": _StockInfo(
        76792991, "NASDAQ", "TESLA INC", "Consumer, Cyclical", "Auto Manufacturers", False
    ),
}

STOCK_EXCHANGES: tuple[str, ...] = (
    "SMART", "AMEX", "NYSE", "CBOE", "PHLX", "ISE", "CHX", "ARCA", "ISLAND", "DRCTEDGE", "BEX",
    "BATS", "EDGEA", "BYX", "IEX", "EDGX", "FOXRIVER", "PEARL", "NYSENAT", "LTSE", "MEMX",
    "IBEOS", "OVERNIGHT", "TPLUS0", "PSX",
)  # fmt: skip
OPTION_EXCHANGES: tuple[str, ...] = (
    "SMART", "AMEX", "BATS", "BOX", "CBOE", "CBOE2", "EDGX", "EMERALD", "GEMINI", "IBUSOPT",
    "ISE", "MERCURY", "MIAX", "NASDAQOM", "PEARL", "PHLX", "PSE",
)  # fmt: skip

# Option classes quoted in pennies at every price (Penny Interval Program, "all strikes" names);
# other penny names tick 0.01 below $3 and 0.05 at or above.
PENNY_ALL_CLASSES = frozenset({"SPY", "QQQ", "IWM"})
TIME_ZONE_ID = "US/Eastern"

_ONE = Decimal("1")
_CENT = Decimal("0.01")
_NICKEL = Decimal("0.05")
_SUBPENNY = Decimal("0.0001")
_OPTION_ID_BASE = 600_000_000
_OPTION_ID_SPAN = 1_400_000_000  # keeps ids below 2**31 (IB con_ids are 32-bit signed ints)


def price_increment(instrument: Instrument, price: Decimal) -> Decimal:
    """The minimum price variation for an order at `price` (error 110 when not a multiple).

    Stocks: $0.01 (≥ $1), $0.0001 below $1 (Reg NMS 612). Options: $0.01 for the SPY/QQQ/IWM
    classes, else $0.01 below $3 and $0.05 at or above.
    """
    if instrument.sec_type is SecType.OPT:
        if instrument.trading_class in PENNY_ALL_CLASSES or price < 3:
            return _CENT
        return _NICKEL
    return _CENT if price >= 1 else _SUBPENNY


def occ_symbol(root: str, expiry: date, right: Right, strike: Decimal) -> str:
    """The 21-character OCC option symbol: root padded to 6, YYMMDD, C/P, strike × 1000 (8)."""
    thousandths = int((strike * 1000).to_integral_value(rounding=ROUND_HALF_EVEN))
    return f"{root:<6}{expiry:%y%m%d}{right.value}{thousandths:08d}"


def option_con_id(symbol: str, expiry: date, right: Right, strike: Decimal) -> int:
    """A stable con_id for an option (before collision probing in `Catalog.build`)."""
    key = f"{symbol}|{expiry:%Y%m%d}|{right.value}|{format(strike.normalize(), 'f')}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return _OPTION_ID_BASE + int.from_bytes(digest, "big") % _OPTION_ID_SPAN


def default_strike_step(price: Decimal) -> Decimal:
    """Listed strike spacing near the money for a stock at `price`."""
    if price < 25:
        return Decimal("0.5")
    if price < 200:
        return Decimal("1")
    if price < 500:
        return Decimal("2.5")
    if price < 1000:
        return Decimal("5")
    return Decimal("10")


def _stock_instrument(spec: InstrumentSpec) -> Instrument:
    info = DEFAULT_STOCKS.get(spec.symbol)
    con_id = spec.con_id or (info.con_id if info else None)
    if con_id is None:
        # A scenario-only symbol without a con_id: derive one the same way as options do,
        # in a range options never use.
        digest = hashlib.blake2b(spec.symbol.encode(), digest_size=4).digest()
        con_id = 100_000_000 + int.from_bytes(digest, "big") % 400_000_000
    return Instrument(
        con_id=con_id,
        symbol=spec.symbol,
        sec_type=SecType.STK,
        currency="USD",
        exchange="SMART",
        primary_exchange=spec.primary_exchange or (info.primary_exchange if info else "NYSE"),
        local_symbol=spec.symbol,
        trading_class=spec.symbol,
        multiplier=1,
        min_tick=_CENT,
        long_name=spec.long_name or (info.long_name if info else spec.symbol),
        valid_exchanges=STOCK_EXCHANGES,
        industry=spec.industry or (info.industry if info else ""),
        category=spec.category or (info.category if info else ""),
    )


def _expiries(spec: InstrumentSpec, session_day: date) -> list[date]:
    info = DEFAULT_STOCKS.get(spec.symbol)
    dailies = (
        spec.daily_expiries if spec.daily_expiries is not None else bool(info and info.dailies)
    )
    horizon = session_day + timedelta(weeks=spec.weeks)
    out: set[date] = set()
    if dailies:
        # Every session for the next two weeks (0DTE on the session date itself).
        out.update(sessions_from(session_day, 10))
    # Weekly Friday expiries; when the Friday is a holiday the options expire the session before.
    friday = session_day + timedelta(days=(4 - session_day.weekday()) % 7)
    while friday <= horizon:
        day = friday
        while session_bounds(day) is None and day > session_day:
            day -= timedelta(days=1)
        if day >= session_day:
            out.add(day)
        friday += timedelta(weeks=1)
    return sorted(out)


def _strikes(spec: InstrumentSpec) -> list[Decimal]:
    step = spec.strike_step or (
        Decimal("1") if spec.symbol in PENNY_ALL_CLASSES else default_strike_step(spec.price)
    )
    center = (spec.price / step).to_integral_value(rounding=ROUND_HALF_EVEN) * step
    strikes = [
        center + step * k for k in range(-spec.strikes_each_side, spec.strikes_each_side + 1)
    ]
    # Whole strikes as plain integers (Decimal("600"), never "6E+2" or "600.0").
    return [s.quantize(_ONE) if s == s.to_integral_value() else s for s in strikes if s > 0]


def _norm_right(right: str) -> str:
    r = right.strip().upper()
    if r in ("", "?", "0"):
        return ""
    return {"CALL": "C", "PUT": "P"}.get(r, r)


class Catalog:
    """Every contract the venue knows: stocks and their option chains for one session date."""

    def __init__(self, session_date: date, instruments: Iterable[Instrument]) -> None:
        self.session_date = session_date
        self._by_id: dict[int, Instrument] = {}
        self._by_symbol: dict[str, list[Instrument]] = {}
        self._by_local: dict[str, Instrument] = {}
        self._underlyings: list[Instrument] = []
        self._chains: dict[int, list[Instrument]] = {}
        for inst in instruments:
            if inst.con_id in self._by_id:
                raise ValueError(f"duplicate con_id {inst.con_id}")
            self._by_id[inst.con_id] = inst
            self._by_symbol.setdefault(inst.symbol, []).append(inst)
            self._by_local[" ".join(inst.local_symbol.split())] = inst
            if inst.sec_type is SecType.STK:
                self._underlyings.append(inst)
            elif inst.underlying_con_id is not None:
                self._chains.setdefault(inst.underlying_con_id, []).append(inst)

    @classmethod
    def build(cls, session_date: date, scenario: Scenario) -> Catalog:
        """Build the catalog for a session: scenario stocks plus their option chains."""
        instruments: list[Instrument] = []
        taken: set[int] = set()
        stocks = [_stock_instrument(spec) for spec in scenario.instruments]
        taken.update(s.con_id for s in stocks)
        instruments.extend(stocks)
        for spec, stock in zip(scenario.instruments, stocks, strict=True):
            if not spec.options:
                continue
            strikes = _strikes(spec)
            for expiry in _expiries(spec, session_date):
                for right in (Right.CALL, Right.PUT):
                    for strike in strikes:
                        con_id = option_con_id(spec.symbol, expiry, right, strike)
                        while con_id in taken:  # deterministic probe: same build order each run
                            con_id += 1
                        taken.add(con_id)
                        instruments.append(
                            Instrument(
                                con_id=con_id,
                                symbol=spec.symbol,
                                sec_type=SecType.OPT,
                                currency="USD",
                                exchange="SMART",
                                primary_exchange="",
                                local_symbol=occ_symbol(spec.symbol, expiry, right, strike),
                                trading_class=spec.symbol,
                                multiplier=100,
                                min_tick=_CENT,
                                long_name=stock.long_name,
                                valid_exchanges=OPTION_EXCHANGES,
                                expiry=expiry,
                                strike=strike,
                                right=right,
                                underlying_con_id=stock.con_id,
                                industry=stock.industry,
                                category=stock.category,
                            )
                        )
        return cls(session_date, instruments)

    # ---------------------------------------------------------------------------------------------

    def get(self, con_id: int) -> Instrument | None:
        """The instrument with `con_id`, or None."""
        return self._by_id.get(con_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def underlyings(self) -> list[Instrument]:
        """The stocks, in scenario order."""
        return list(self._underlyings)

    def underlying_of(self, inst: Instrument) -> Instrument:
        """The stock an option is written on (the stock itself for a stock)."""
        if inst.underlying_con_id is None:
            return inst
        return self._by_id[inst.underlying_con_id]

    def options_of(self, underlying_con_id: int) -> list[Instrument]:
        """Every option on one underlying (expiry, right, strike order)."""
        return list(self._chains.get(underlying_con_id, ()))

    def match(
        self,
        symbol: str,
        sec_type: str,
        expiry: str = "",
        strike: Decimal | None = None,
        right: str = "",
        exchange: str = "",
        currency: str = "",
        local_symbol: str = "",
        con_id: int = 0,
    ) -> list[Instrument]:
        """reqContractDetails lookup: empty fields (and strike None/0) are wildcards.

        `expiry` is "YYYYMMDD" (that day) or "YYYYMM" (that month). A `con_id` narrows to that
        contract, and the other given fields must still agree. Unknown → [] (the server sends 200).
        """
        if con_id:
            inst = self._by_id.get(con_id)
            candidates = [inst] if inst is not None else []
        elif local_symbol.strip():
            inst = self._by_local.get(" ".join(local_symbol.split()).upper())
            candidates = [inst] if inst is not None else []
        elif symbol.strip():
            candidates = self._by_symbol.get(symbol.strip().upper(), [])
        else:
            return []
        st = sec_type.strip().upper()
        exp = expiry.strip()
        if exp and (not exp.isdigit() or len(exp) not in (6, 8)):
            return []
        want_right = _norm_right(right)
        exch = exchange.strip().upper()
        ccy = currency.strip().upper()
        sym = symbol.strip().upper()
        out: list[Instrument] = []
        for inst in candidates:
            if sym and inst.symbol != sym:
                continue
            if st and inst.sec_type.value != st:
                continue
            if ccy and inst.currency != ccy:
                continue
            if exch and exch not in inst.valid_exchanges:
                continue
            if inst.sec_type is SecType.OPT:
                if inst.expiry is None:
                    continue
                if exp and not f"{inst.expiry:%Y%m%d}".startswith(exp):
                    continue
                if strike is not None and strike != 0 and inst.strike != strike:
                    continue
                if want_right and (inst.right is None or inst.right.value != want_right):
                    continue
            elif exp or (strike is not None and strike != 0) or want_right:
                continue
            out.append(inst)
        return out

    def option_params(
        self, underlying_con_id: int
    ) -> list[tuple[str, str, str, tuple[str, ...], tuple[Decimal, ...]]]:
        """reqSecDefOptParams rows: (exchange, trading_class, multiplier, expirations, strikes).

        One row per option exchange, as IB sends; multiplier is the wire string "100";
        expirations are sorted "YYYYMMDD"; strikes sorted. Unknown underlying → [].
        """
        chain = self._chains.get(underlying_con_id)
        if not chain:
            return []
        expirations = tuple(sorted({f"{o.expiry:%Y%m%d}" for o in chain}))
        strikes = tuple(sorted({o.strike for o in chain if o.strike is not None}))
        trading_class = chain[0].trading_class
        return [(ex, trading_class, "100", expirations, strikes) for ex in OPTION_EXCHANGES]

    def trading_hours(self, con_id: int, days: int = 7) -> tuple[str, str, str]:
        """contractDetails (tradingHours, liquidHours, timeZoneId) from the XNYS calendar.

        IB's format: `20260126:0400-20260126:2000;20260127:CLOSED`, in the contract's time zone
        (US/Eastern). Stocks trade 04:00-20:00 and are liquid 09:30-16:00; options trade and
        are liquid 09:30-16:00; early closes come from the calendar (extended hours then end at
        17:00). Unknown con_id → three empty strings.
        """
        inst = self._by_id.get(con_id)
        if inst is None:
            return "", "", ""
        trading: list[str] = []
        liquid: list[str] = []
        for k in range(days):
            day = self.session_date + timedelta(days=k)
            d = f"{day:%Y%m%d}"
            bounds = session_bounds(day)
            if bounds is None:
                trading.append(f"{d}:CLOSED")
                liquid.append(f"{d}:CLOSED")
                continue
            o = bounds[0].astimezone(ET)
            c = bounds[1].astimezone(ET)
            reg = f"{d}:{o:%H%M}-{d}:{c:%H%M}"
            liquid.append(reg)
            if inst.sec_type is SecType.OPT:
                trading.append(reg)
            else:
                ext_close = "2000" if c.hour >= 16 else "1700"
                trading.append(f"{d}:0400-{d}:{ext_close}")
        return ";".join(trading), ";".join(liquid), TIME_ZONE_ID
