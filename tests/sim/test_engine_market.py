"""The venue on the real market part: fills against its depth and prints, deterministically."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from tws_sim.engine import Venue
from tws_sim.market import Catalog, Market, Scenario
from tws_sim.types import (
    ComboLegSpec,
    Executed,
    OrderRequest,
    OrderStatusName,
    SecType,
)

D = Decimal
START = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # 10:00 ET, a Friday
SPY_ID = 756733


def build(seed: int = 7) -> tuple[Venue, Market, Catalog]:
    scenario = Scenario.default()
    catalog = Catalog.build(date(2026, 11, 20), scenario)
    market = Market(catalog, scenario, seed, START)
    return Venue(catalog, market, scenario), market, catalog


def req(order_id: int, action: str, qty: str, order_type: str, **kw: object) -> OrderRequest:
    fields: dict[str, object] = {
        "client_id": 1,
        "order_id": order_id,
        "account": "",
        "con_id": SPY_ID,
        "symbol": "SPY",
        "sec_type": SecType.STK,
        "action": action,
        "total_qty": D(qty),
        "order_type": order_type,
        "tif": "DAY",
    }
    fields.update(kw)
    return OrderRequest(**fields)  # type: ignore[arg-type]


def run(venue: Venue, market: Market, seconds: int) -> list[Executed]:
    """Drive the market as the server does: advance, then let the venue react."""
    out: list[Executed] = []
    for s in range(1, seconds + 1):
        now = START + timedelta(seconds=s)
        events = market.advance(now)
        out += [e for e in venue.on_market(events, now) if isinstance(e, Executed)]
    return out


def test_market_order_takes_the_real_books_ask_side() -> None:
    venue, market, _ = build()
    q = market.quote(SPY_ID)
    asks = sorted((lv for lv in market.depth(SPY_ID, 10) if lv.side == 0), key=lambda lv: lv.price)
    qty = asks[0].size + asks[1].size // 2
    ev = venue.place(req(1, "BUY", str(qty), "MKT"), START)
    execs = [e.execution for e in ev if isinstance(e, Executed)]
    assert execs[0].price == q.ask == asks[0].price and execs[0].shares == asks[0].size
    assert sum(x.shares for x in execs) == qty
    assert all(x.price <= asks[-1].price for x in execs)


def test_resting_orders_fill_as_the_simulated_market_moves_and_runs_repeat() -> None:
    results = []
    for _ in range(2):
        venue, market, _ = build()
        mid = market.quote(SPY_ID).mid
        venue.place(
            req(1, "BUY", "300", "LMT", lmt_price=(mid - D("0.05")).quantize(D("0.01"))), START
        )
        venue.place(
            req(2, "SELL", "300", "LMT", lmt_price=(mid + D("0.05")).quantize(D("0.01"))), START
        )
        venue.place(req(3, "BUY", "100", "PEG MID", aux_price=D("0")), START)
        fills = run(venue, market, 240)
        results.append(
            [(f.execution.exec_id, f.execution.shares, f.execution.price) for f in fills]
        )
        assert fills, "four minutes of a calm SPY should cross a 5-cent limit"
        for x in (f.execution for f in fills):
            snap = venue.order(1, x.order_id)
            assert snap is not None and snap.filled >= x.cum_qty
        pos = {i.con_id: q for i, q, _ in venue.positions()}
        bought = sum(f.execution.shares for f in fills if f.execution.side == "BOT")
        sold = sum(f.execution.shares for f in fills if f.execution.side == "SLD")
        assert pos.get(SPY_ID, D(0)) == bought - sold
    assert results[0] == results[1]


def test_option_vertical_combo_on_the_real_chain() -> None:
    venue, market, catalog = build()
    spot = market.quote(SPY_ID).mid
    calls = sorted(
        (
            o
            for o in catalog.options_of(SPY_ID)
            if o.right is not None and o.right.value == "C" and o.expiry == date(2026, 11, 20)
        ),
        key=lambda o: abs((o.strike or D(0)) - spot),
    )
    near, far = sorted(calls[:2], key=lambda o: o.strike or D(0))
    legs = (ComboLegSpec(near.con_id, 1, "BUY"), ComboLegSpec(far.con_id, 1, "SELL"))
    ev = venue.place(
        req(1, "BUY", "1", "MKT", con_id=0, sec_type=SecType.BAG, combo_legs=legs), START
    )
    execs = [e.execution for e in ev if isinstance(e, Executed)]
    assert [x.con_id for x in execs[:2]] == [near.con_id, far.con_id]
    assert execs[2].sec_type == SecType.BAG
    assert execs[2].price == execs[0].price - execs[1].price
    assert venue.order(1, 1).status == OrderStatusName.FILLED  # type: ignore[union-attr]
