"""The venue: matching engine and paper account (`from tws_sim.engine import Venue`)."""

from tws_sim.engine.rules import (
    ComboRule,
    ComboSliceRule,
    CommissionDelay,
    CorrectionRule,
    RejectRule,
    VenueRules,
    Window,
)
from tws_sim.engine.venue import BAG_CON_ID, Venue

__all__ = [
    "BAG_CON_ID",
    "ComboRule",
    "ComboSliceRule",
    "CommissionDelay",
    "CorrectionRule",
    "RejectRule",
    "Venue",
    "VenueRules",
    "Window",
]
