"""The simulator's market: contract catalog, seeded price processes, option pricing, scenarios,
the simulated clock and IB's commission schedule."""

from tws_sim.market.catalog import Catalog, occ_symbol, price_increment
from tws_sim.market.clock import SimClock, in_regular_hours, session_bounds
from tws_sim.market.commissions import commission_for, commission_increment
from tws_sim.market.market import HistoryError, Market, UnknownContractError
from tws_sim.market.scenario import Scenario, ScenarioError

__all__ = [
    "Catalog",
    "HistoryError",
    "Market",
    "Scenario",
    "ScenarioError",
    "SimClock",
    "UnknownContractError",
    "commission_for",
    "commission_increment",
    "in_regular_hours",
    "occ_symbol",
    "price_increment",
    "session_bounds",
]
