"""Venue choice from depth (§6.2): SMART by default, a direct exchange when its book is deeper.

A strategy that asks for it (`params.route_by_depth`) has each single-instrument child routed
from the depth the bridge keeps (`md:{conid}` `depth`, IB's L2 rows with the exchange that shows
each as its market maker): on the side the child takes (asks to buy, bids to sell), the size
each exchange displays at prices the child's limit reaches is added up; when one exchange alone
shows the whole child there, the child goes to it directly (the deepest such exchange; ties to
the first by name), skipping SMART's routing step for a fill it can get in one place. Otherwise,
or with no depth, no limit, or a child not routed SMART by its plan, it stays as planned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from models.child_orders import Action

SMART = "SMART"
# The depth's market-maker codes that name a routable exchange, as the route IB takes for it:
# Nasdaq shows as NSDQ in SMART depth and is routed as ISLAND. A code not here (a dealer's id in
# a non-SMART book) is never routed to.
ROUTES = {
    "NSDQ": "ISLAND",
    **{
        name: name
        for name in (
            "ISLAND",
            "ARCA",
            "BATS",
            "BYX",
            "EDGX",
            "EDGEA",
            "IEX",
            "NYSE",
            "MEMX",
            "DRCTEDGE",
            "AMEX",
            "CHX",
            "PEARL",
            "LTSE",
            "CBOE",
            "ISE",
            "PHLX",
            "BOX",
            "MIAX",
            "PSE",
            "GEMINI",
        )
    },
}


@dataclass(frozen=True, slots=True)
class RouteChoice:
    route: str
    why: str


def _rows(depth: str | None, side: str) -> list[tuple[Decimal, Decimal, str]] | None:
    if not depth:
        return None
    try:
        book = json.loads(depth)
        rows = book[side]
        out = []
        for row in rows:
            price, size = Decimal(str(row["price"])), Decimal(str(row["size"]))
            route = ROUTES.get(str(row.get("mm") or "").strip().upper())
            if price.is_finite() and size.is_finite() and size > 0 and route:
                out.append((price, size, route))
        return out
    except (ValueError, KeyError, TypeError, InvalidOperation):
        return None


def choose_route(
    action: Action,
    quantity: Decimal,
    limit_price: Decimal | None,
    planned: str,
    depth: str | None,
) -> RouteChoice:
    """Where the child goes (see the module docstring)."""
    if planned != SMART:
        return RouteChoice(planned, f"the plan routes it to {planned}")
    if limit_price is None:
        return RouteChoice(SMART, "no limit to measure the book against")
    buying = action is Action.BUY
    rows = _rows(depth, "ask" if buying else "bid")
    if rows is None:
        return RouteChoice(SMART, "no depth for the instrument")
    by_exchange: dict[str, Decimal] = {}
    for price, size, maker in rows:
        if (price <= limit_price) if buying else (price >= limit_price):
            by_exchange[maker] = by_exchange.get(maker, Decimal(0)) + size
    if not by_exchange:
        return RouteChoice(SMART, f"no displayed size at or through {limit_price}")
    deepest, size = max(sorted(by_exchange.items()), key=lambda kv: kv[1])
    total = sum(by_exchange.values(), Decimal(0))
    if size >= quantity:
        return RouteChoice(
            deepest,
            f"{deepest} alone shows {size} of {total} displayed within {limit_price} "
            f"(the child is {quantity})",
        )
    return RouteChoice(
        SMART,
        f"no exchange alone shows {quantity} within {limit_price} (deepest {deepest}: {size} "
        f"of {total})",
    )
