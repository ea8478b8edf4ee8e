"""IBKR Pro tiered commissions for US stocks and options (the broker's own charge only).

The numbers (IBKR's published US tiered schedule):

Stocks, per share, by shares traded this month before the order:
    ≤ 300,000: 0.0035; 300,001-3,000,000: 0.0020; 3,000,001-20,000,000: 0.0015;
    20,000,001-100,000,000: 0.0010; > 100,000,000: 0.0005.
    Minimum 0.35 per order, maximum 1.0 % of the trade value (the cap wins over the minimum).
Options, per contract, by contracts traded this month before the order and premium:
    ≤ 10,000: premium < 0.05 → 0.25, 0.05 ≤ premium < 0.10 → 0.50, premium ≥ 0.10 → 0.65;
    10,001-50,000: premium < 0.05 → 0.25, else 0.50; 50,001-100,000: 0.25; > 100,000: 0.15.
    Minimum 1.00 per order.

Exchange, clearing and regulatory pass-through fees (ORF, OCC, SEC, FINRA TAF) are not modelled,
so results are round and easy to check. Results are quantized to 0.0001 (IB reports fractions).
The tier is the one the monthly volume is in before this order (IB does not split an order
across a tier boundary).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from tws_sim.types import Instrument, SecType

_STOCK_TIERS: tuple[tuple[int, Decimal], ...] = (
    (300_000, Decimal("0.0035")),
    (3_000_000, Decimal("0.0020")),
    (20_000_000, Decimal("0.0015")),
    (100_000_000, Decimal("0.0010")),
)
_STOCK_TOP = Decimal("0.0005")
_STOCK_MIN = Decimal("0.35")
_STOCK_MAX_PCT = Decimal("0.01")
_OPTION_MIN = Decimal("1.00")
_Q = Decimal("0.0001")
_FIVE_CENTS = Decimal("0.05")
_TEN_CENTS = Decimal("0.10")


def stock_rate(monthly_shares: Decimal | int) -> Decimal:
    """Per-share rate for the tier `monthly_shares` (traded before this order) falls in."""
    for upper, rate in _STOCK_TIERS:
        if monthly_shares < upper:
            return rate
    return _STOCK_TOP


def option_rate(monthly_contracts: Decimal | int, premium: Decimal) -> Decimal:
    """Per-contract rate by monthly contracts (before this order) and the premium per share."""
    if monthly_contracts < 10_000:
        if premium < _FIVE_CENTS:
            return Decimal("0.25")
        return Decimal("0.50") if premium < _TEN_CENTS else Decimal("0.65")
    if monthly_contracts < 50_000:
        return Decimal("0.25") if premium < _FIVE_CENTS else Decimal("0.50")
    if monthly_contracts < 100_000:
        return Decimal("0.25")
    return Decimal("0.15")


def commission_for(
    instrument: Instrument,
    shares: Decimal,
    price: Decimal,
    monthly_volume: Decimal | int = 0,
) -> Decimal:
    """Commission for one order's filled quantity (`shares`: shares or contracts) at `price`.

    Applies the per-order minimum and (stocks) the 1 % cap, so call it with an order's
    cumulative fill and its average price, and charge each execution the difference from what
    the order was already charged (see `commission_increment`). Zero shares → 0.
    """
    qty = abs(shares)
    if qty == 0:
        return Decimal("0")
    if instrument.sec_type is SecType.OPT:
        raw = qty * option_rate(monthly_volume, price)
        return max(raw, _OPTION_MIN).quantize(_Q, rounding=ROUND_HALF_EVEN)
    raw = max(qty * stock_rate(monthly_volume), _STOCK_MIN)
    cap = qty * price * instrument.multiplier * _STOCK_MAX_PCT
    return min(raw, cap).quantize(_Q, rounding=ROUND_HALF_EVEN)


def commission_increment(
    instrument: Instrument,
    cum_qty: Decimal,
    avg_price: Decimal,
    charged_so_far: Decimal,
    monthly_volume: Decimal | int = 0,
) -> Decimal:
    """Commission for the latest execution of an order: the order total minus what was charged.

    `cum_qty` / `avg_price` include the latest execution; `monthly_volume` is the month's volume
    before the order. The first execution pays the per-order minimum; later ones pay only the
    per-unit rate (never negative).
    """
    total = commission_for(instrument, cum_qty, avg_price, monthly_volume)
    return max(total - charged_so_far, Decimal("0"))
