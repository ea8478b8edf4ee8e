"""Instrument text → contract values: OCC option symbols and equity tickers.

An intent names its instrument as text (blueprint §4.1); everything after intake works with the
typed contract. Both OCC spellings are accepted (NOTES): the 21-character form with the root
padded to six (`SPY   251121C00450000`) and the compact form (`SPY251121C00450000`). Parsing is
strict: text that is almost a symbol is refused with a specific code, never guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from models.rejects import RejectReason

OCC_ROOT_WIDTH = 6
OCC_TAIL_LENGTH = 15  # YYMMDD + C/P + 8-digit strike
OCC_PADDED_LENGTH = OCC_ROOT_WIDTH + OCC_TAIL_LENGTH
OPTION_MULTIPLIER = 100

_OCC_TAIL = re.compile(r"(\d{6})([CP])(\d{8})")
_OCC_ROOT = re.compile(r"[A-Z][A-Z0-9]{0,5}")
# Share classes are written with a dot (BRK.B); IB spells them with a space (see `ib_symbol`).
_TICKER = re.compile(r"[A-Z][A-Z0-9]{0,5}(\.[A-Z])?")
# Weekly/PM-settled roots whose underlying symbol differs from the option root.
_ROOT_UNDERLYING = {"SPXW": "SPX", "NDXP": "NDX", "RUTW": "RUT", "VIXW": "VIX", "XSPW": "XSP"}


class InstrumentKind(StrEnum):
    STOCK = "STK"
    OPTION = "OPT"


class OptionRight(StrEnum):
    CALL = "C"
    PUT = "P"


@dataclass(frozen=True, slots=True)
class StockContract:
    """An equity routed SMART in USD; the contract cache later resolves its `con_id`."""

    symbol: str
    exchange: str = "SMART"
    currency: str = "USD"

    @property
    def kind(self) -> InstrumentKind:
        return InstrumentKind.STOCK

    @property
    def ib_symbol(self) -> str:
        """IB's spelling of the symbol: share classes use a space (`BRK B`)."""
        return self.symbol.replace(".", " ")

    @property
    def text(self) -> str:
        """The canonical instrument text (the ticker)."""
        return self.symbol


@dataclass(frozen=True, slots=True)
class OptionContract:
    """A listed equity/index option as IB knows it (SMART, USD, multiplier 100)."""

    root: str
    expiry: date
    right: OptionRight
    strike: Decimal
    multiplier: int = OPTION_MULTIPLIER
    exchange: str = "SMART"
    currency: str = "USD"

    @property
    def kind(self) -> InstrumentKind:
        return InstrumentKind.OPTION

    @property
    def underlying(self) -> str:
        """The underlying symbol (IB `symbol`); differs from the root for weeklies like SPXW."""
        return _ROOT_UNDERLYING.get(self.root, self.root)

    @property
    def trading_class(self) -> str:
        return self.root

    @property
    def occ_symbol(self) -> str:
        """The 21-character OCC symbol, which is also IB's `localSymbol` for US options."""
        strike_thousandths = int(self.strike * 1000)
        return (
            f"{self.root:<{OCC_ROOT_WIDTH}}{self.expiry:%y%m%d}{self.right.value}"
            f"{strike_thousandths:08d}"
        )

    @property
    def text(self) -> str:
        """The canonical instrument text (the padded OCC form)."""
        return self.occ_symbol


Contract = StockContract | OptionContract


class InstrumentError(ValueError):
    """Instrument text that is not a ticker or OCC symbol; carries the reject code."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_occ(text: str) -> OptionContract:
    """Parse an OCC option symbol in its padded (21-char) or compact form.

    Raises:
        InstrumentError: MALFORMED_OCC_SYMBOL with what was wrong.
    """
    if len(text) < OCC_TAIL_LENGTH + 1:
        raise InstrumentError(RejectReason.MALFORMED_OCC_SYMBOL, f"{text!r} is too short")
    head, tail = text[:-OCC_TAIL_LENGTH], text[-OCC_TAIL_LENGTH:]
    match = _OCC_TAIL.fullmatch(tail)
    if match is None:
        raise InstrumentError(
            RejectReason.MALFORMED_OCC_SYMBOL,
            f"{text!r} does not end in YYMMDD, C or P, and an 8-digit strike",
        )
    if " " in head:
        if len(text) != OCC_PADDED_LENGTH:
            raise InstrumentError(
                RejectReason.MALFORMED_OCC_SYMBOL,
                f"{text!r}: a padded OCC symbol is {OCC_PADDED_LENGTH} characters, "
                f"the root left-justified in {OCC_ROOT_WIDTH}",
            )
        root = head.rstrip(" ")
    else:
        root = head
    if _OCC_ROOT.fullmatch(root) is None:
        raise InstrumentError(
            RejectReason.MALFORMED_OCC_SYMBOL,
            f"{text!r}: root {root!r} must be 1-6 upper-case letters/digits starting with a letter",
        )
    yymmdd, right, strike_digits = match.groups()
    try:
        expiry = date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    except ValueError as e:
        raise InstrumentError(
            RejectReason.MALFORMED_OCC_SYMBOL, f"{text!r}: expiry {yymmdd} is not a date ({e})"
        ) from e
    strike = Decimal(int(strike_digits)) / 1000
    if strike == 0:
        raise InstrumentError(RejectReason.MALFORMED_OCC_SYMBOL, f"{text!r}: strike is zero")
    return OptionContract(root=root, expiry=expiry, right=OptionRight(right), strike=strike)


def _looks_like_occ(text: str) -> bool:
    # A ticker is short and has no digit run; anything long with digits was meant as an option.
    return len(text) > 8 and any(c.isdigit() for c in text)


def parse_instrument(text: str) -> Contract:
    """Parse instrument text: an OCC symbol → `OptionContract`, a ticker → `StockContract`.

    Raises:
        InstrumentError: INVALID_INSTRUMENT or MALFORMED_OCC_SYMBOL.
    """
    if _TICKER.fullmatch(text) is not None:
        return StockContract(symbol=text)
    if _looks_like_occ(text):
        return parse_occ(text)
    raise InstrumentError(
        RejectReason.INVALID_INSTRUMENT,
        f"{text!r} is neither a ticker (upper case, 1-6 characters, optional .CLASS) "
        "nor an OCC option symbol",
    )


def ib_terms(contract: Contract) -> dict[str, str]:
    """The contract as the bridge's `ContractSpec` fields (what IB needs to identify it)."""
    if isinstance(contract, StockContract):
        return {
            "symbol": contract.ib_symbol,
            "sec_type": "STK",
            "exchange": contract.exchange,
            "currency": contract.currency,
        }
    return {
        "symbol": contract.underlying,
        "sec_type": "OPT",
        "exchange": contract.exchange,
        "currency": contract.currency,
        "expiry": f"{contract.expiry:%Y%m%d}",
        "strike": str(contract.strike),
        "right": contract.right.value,
        "multiplier": str(contract.multiplier),
        "trading_class": contract.trading_class,
    }
