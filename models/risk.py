"""Pre-trade risk gates, pure: one order (an intent at intake, or a child order before it is sent)
checked against the configured limits (`models.limits`) and what the caller knows of the market.

Every gate is a function of its arguments (no store, no Redis, no clock: `now` is a parameter)
returning None or a `Breach` that names the rule and carries the numbers that broke it, so the
refusal a producer sees says by how much. `check_order` runs the gates in a fixed order and gives
the first breach; a gate whose input the caller does not have (`None`) is skipped, never guessed:
the caller decides which facts it must supply. Intake (`models.admission.decide`) runs it on
every intent; the orders path calls `check_child` before every child order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from models.intent import Intent, Side
from models.limits import Limits, instrument_limits, strategy_limits
from models.rejects import Reject, RejectReason

__all__ = [
    "AccountFacts",
    "Breach",
    "MarketFacts",
    "OrderFacts",
    "Recent",
    "check_child",
    "check_intent",
    "check_order",
    "order_facts",
]

_BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class Breach:
    """One gate refused: the reject code, a message with the numbers, and the numbers alone."""

    reason: RejectReason
    message: str
    numbers: dict[str, str] = field(default_factory=dict)

    def reject(self, signal_id: str) -> Reject:
        return Reject(self.reason, self.message, signal_id, None)


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """The order being checked. `key` is the limits lookup key (the instrument's text);
    `price` the limit or reference price per unit, `multiplier` 1 for stock, 100 for options."""

    strategy: str
    key: str
    side: Side
    quantity: Decimal
    signal_id: str = ""
    price: Decimal | None = None
    multiplier: int = 1


@dataclass(frozen=True, slots=True)
class Recent:
    """An intent admitted earlier, for duplicate detection."""

    strategy: str
    key: str
    side: Side
    signal_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """The account summary the risk connection (client 2) keeps, as the headroom gate needs it.

    `live` is False, with `why`, when the figures cannot be trusted: none received, the risk
    connection not connected, or the bridge silent. The summary is a push subscription (IB sends
    a tag when it changes), so figures are current exactly while that connection stays up, and
    their own age says nothing.
    """

    live: bool
    why: str = ""
    net_liquidation: Decimal | None = None
    excess_liquidity: Decimal | None = None
    available_funds: Decimal | None = None


# Initial margin of an opening order per unit of notional when no what-if answer is at hand:
# Reg T for stock (50 %), the whole premium for an option.
STOCK_INITIAL_MARGIN = Decimal("0.5")
OPTION_INITIAL_MARGIN = Decimal(1)


@dataclass(frozen=True, slots=True)
class MarketFacts:
    """What the caller knows; None means unknown and skips the gate that needs it.

    `known` is whether the instrument is tradable at all (contract known), `position` the
    strategy's signed position in it, `halted` tick 49 state, `market_open` from the exchange
    calendar, `nbbo` (bid, ask), `band_bps` how far from the NBBO mid a price may be,
    `recent` earlier intents and `duplicate_window` how close in time counts as a duplicate.
    """

    known: bool | None = None
    position: Decimal | None = None
    halted: bool | None = None
    market_open: bool | None = None
    nbbo: tuple[Decimal, Decimal] | None = None
    band_bps: Decimal = Decimal(500)
    recent: Sequence[Recent] = ()
    duplicate_window: timedelta = timedelta(seconds=5)
    now: datetime | None = None
    account: AccountFacts | None = None


def _signed(side: Side, quantity: Decimal) -> Decimal:
    return quantity if side in (Side.BUY, Side.BUY_TO_COVER) else -quantity


def gate_known(order: OrderFacts, market: MarketFacts) -> Breach | None:
    if market.known is False:
        return Breach(RejectReason.UNKNOWN_CONTRACT, f"{order.key} is not a known instrument")
    return None


def gate_market_status(order: OrderFacts, market: MarketFacts) -> Breach | None:
    if market.halted:
        return Breach(RejectReason.INSTRUMENT_HALTED, f"{order.key} is halted (tick 49)")
    if market.market_open is False:
        return Breach(RejectReason.MARKET_CLOSED, f"the market for {order.key} is closed")
    return None


def gate_order_size(order: OrderFacts, limits: Limits) -> Breach | None:
    caps = instrument_limits(limits, order.key)
    max_qty = caps.max_order_quantity
    if max_qty is not None and order.quantity > max_qty:
        return Breach(
            RejectReason.RISK_LIMIT,
            f"quantity {order.quantity} exceeds max_order_quantity {max_qty} for {order.key}",
            {"quantity": str(order.quantity), "max_order_quantity": str(max_qty)},
        )
    if order.price is None or caps.max_order_notional is None:
        return None
    notional = order.quantity * order.price * order.multiplier
    if notional > caps.max_order_notional:
        return Breach(
            RejectReason.RISK_LIMIT,
            f"notional {notional} exceeds max_order_notional {caps.max_order_notional} "
            f"for {order.key}",
            {"notional": str(notional), "max_order_notional": str(caps.max_order_notional)},
        )
    return None


def gate_side_vs_position(order: OrderFacts, market: MarketFacts) -> Breach | None:
    """BUY_TO_COVER needs a short at least that large; SELL needs a long at least that large
    (selling past it is a short and must say SELL_SHORT); SELL_SHORT is refused while long."""
    pos = market.position
    if pos is None:
        return None
    numbers = {"position": str(pos), "quantity": str(order.quantity)}
    if order.side is Side.BUY_TO_COVER and order.quantity > -pos:
        return Breach(
            RejectReason.SIDE_POSITION_MISMATCH,
            f"BUY_TO_COVER {order.quantity} but the short in {order.key} is {max(-pos, 0)}",
            numbers,
        )
    if order.side is Side.SELL and order.quantity > pos:
        return Breach(
            RejectReason.SIDE_POSITION_MISMATCH,
            f"SELL {order.quantity} but the long in {order.key} is {max(pos, 0)}",
            numbers,
        )
    if order.side is Side.SELL_SHORT and pos > 0:
        return Breach(
            RejectReason.SIDE_POSITION_MISMATCH,
            f"SELL_SHORT while long {pos} {order.key}: sell the long first",
            numbers,
        )
    return None


def gate_position_after(order: OrderFacts, limits: Limits, market: MarketFacts) -> Breach | None:
    if market.position is None:
        return None
    cap = strategy_limits(limits, order.strategy).max_position_quantity
    after = market.position + _signed(order.side, order.quantity)
    if cap is not None and abs(after) > cap and abs(after) > abs(market.position):
        return Breach(
            RejectReason.RISK_LIMIT,
            f"position after the order {after} exceeds max_position_quantity {cap} "
            f"for {order.strategy}",
            {"position_after": str(after), "max_position_quantity": str(cap)},
        )
    return None


def gate_headroom(order: OrderFacts, limits: Limits, market: MarketFacts) -> Breach | None:
    """Opening orders need the account's headroom: excess liquidity at least
    `account.min_margin_headroom` of net liquidation, before and (when the order's price is
    known) after the order's own initial margin. Unknown figures refuse: the gate fails closed.
    Orders that reduce a position (SELL, BUY_TO_COVER) are never held here: they free margin,
    and an exit must not wait on the risk connection."""
    account = market.account
    if account is None or order.side in (Side.SELL, Side.BUY_TO_COVER):
        return None
    if not account.live:
        return Breach(
            RejectReason.ACCOUNT_DATA_UNAVAILABLE,
            f"margin headroom cannot be checked: {account.why}",
            {"why": account.why},
        )
    net_liq, excess = account.net_liquidation, account.excess_liquidity
    if net_liq is None or excess is None or net_liq <= 0:
        return Breach(
            RejectReason.ACCOUNT_DATA_UNAVAILABLE,
            "margin headroom cannot be checked: the account summary has no positive "
            "NetLiquidation and ExcessLiquidity",
            {"net_liquidation": str(net_liq), "excess_liquidity": str(excess)},
        )
    share = limits.account.min_margin_headroom
    floor = share * net_liq
    numbers = {
        "net_liquidation": str(net_liq),
        "excess_liquidity": str(excess),
        "min_margin_headroom": str(share),
        "floor": str(floor),
    }
    if excess < floor:
        return Breach(
            RejectReason.MARGIN_HEADROOM,
            f"excess liquidity {excess} is below the headroom floor {floor} "
            f"({share} of net liquidation {net_liq})",
            numbers,
        )
    if order.price is None or account.available_funds is None:
        return None
    rate = STOCK_INITIAL_MARGIN if order.multiplier == 1 else OPTION_INITIAL_MARGIN
    need = order.quantity * order.price * order.multiplier * rate
    after = account.available_funds - need
    if after < floor:
        return Breach(
            RejectReason.MARGIN_HEADROOM,
            f"the order's initial margin {need} would leave available funds {after}, below the "
            f"headroom floor {floor} ({share} of net liquidation {net_liq})",
            {**numbers, "order_margin": str(need), "available_after": str(after)},
        )
    return None


def gate_price_band(order: OrderFacts, market: MarketFacts) -> Breach | None:
    if order.price is None or market.nbbo is None:
        return None
    bid, ask = market.nbbo
    if bid <= 0 or ask <= 0 or ask < bid:
        return None  # no usable quote: nothing to compare against
    mid = (bid + ask) / 2
    off_bps = abs(order.price - mid) / mid * _BPS
    if off_bps > market.band_bps:
        return Breach(
            RejectReason.PRICE_BAND,
            f"price {order.price} is {off_bps:.1f} bps from the NBBO mid {mid} "
            f"(band {market.band_bps} bps)",
            {"price": str(order.price), "mid": str(mid), "band_bps": str(market.band_bps)},
        )
    return None


def gate_duplicate(order: OrderFacts, market: MarketFacts) -> Breach | None:
    if market.now is None:
        return None
    for prior in market.recent:
        if (
            prior.strategy == order.strategy
            and prior.key == order.key
            and prior.side is order.side
            and prior.signal_id != order.signal_id
            and abs(market.now - prior.at) <= market.duplicate_window
        ):
            gap = abs(market.now - prior.at).total_seconds()
            return Breach(
                RejectReason.POSSIBLE_DUPLICATE,
                f"{order.strategy} {order.side} {order.key} already came {gap:.1f}s ago "
                f"as {prior.signal_id}",
                {"prior_signal_id": prior.signal_id, "seconds_apart": f"{gap:.3f}"},
            )
    return None


def check_order(order: OrderFacts, limits: Limits, market: MarketFacts) -> Breach | None:
    """The first breach among the gates (known, market status, size and notional, side vs
    position, position after, margin headroom, price band, duplicate), or None when the order
    may go."""
    return (
        gate_known(order, market)
        or gate_market_status(order, market)
        or gate_order_size(order, limits)
        or gate_side_vs_position(order, market)
        or gate_position_after(order, limits, market)
        or gate_headroom(order, limits, market)
        or gate_price_band(order, market)
        or gate_duplicate(order, market)
    )


def order_facts(intent: Intent) -> OrderFacts:
    """An intent as the order the gates check (its target price, when it gives one)."""
    multiplier = int(getattr(intent.instrument, "multiplier", 1))
    return OrderFacts(
        strategy=intent.strategy,
        key=intent.instrument.text,
        side=intent.side,
        quantity=intent.quantity,
        signal_id=intent.signal_id,
        price=intent.target_price,
        multiplier=multiplier,
    )


def check_intent(
    intent: Intent, limits: Limits, market: MarketFacts | None = None
) -> Reject | None:
    """Intake's gate: the reject refusing `intent`, or None."""
    breach = check_order(order_facts(intent), limits, market or MarketFacts())
    return None if breach is None else breach.reject(intent.signal_id)


def check_child(
    *,
    strategy: str,
    key: str,
    side: Side,
    quantity: Decimal,
    price: Decimal | None,
    limits: Limits,
    market: MarketFacts,
    multiplier: int = 1,
) -> Breach | None:
    """The orders path's gate before every child order: same rules as intake, on the child's
    own quantity and limit price, with the position and quote as of now (in `market`)."""
    order = OrderFacts(strategy, key, side, quantity, "", price, multiplier)
    return check_order(order, limits, market)
