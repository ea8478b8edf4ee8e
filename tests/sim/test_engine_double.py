"""The engine tests' market double (`tests/sim/engine_kit.py`) behaves as documented."""

from __future__ import annotations

from tests.sim.engine_kit import AAPL, CALL_600, SPY, standard_market
from tws_sim.types import HaltState


def test_double_depth_matches_top_of_book() -> None:
    m = standard_market()
    q = m.quote(SPY.con_id)
    asks = [lv for lv in m.depth(SPY.con_id, 10) if lv.side == 0]
    bids = [lv for lv in m.depth(SPY.con_id, 10) if lv.side == 1]
    assert (asks[0].price, asks[0].size) == (q.ask, q.ask_size)
    assert (bids[0].price, bids[0].size) == (q.bid, q.bid_size)
    assert len(m.depth(SPY.con_id, 2)) == 4


def test_double_option_inherits_underlying_halt() -> None:
    m = standard_market()
    m.set_halt(SPY.con_id, HaltState.HALTED)
    assert m.halt_state(CALL_600.con_id) == HaltState.HALTED
    assert m.halt_state(AAPL.con_id) == HaltState.TRADING
