"""Child-order templates (blueprint §6.2) as pure planners: intent + clock (+ market) → children.

Each planner returns `ChildPlan`s with due times and pricing rules; `models.child_orders.price`
sizes and prices a child when it is due. Planners never size beyond the intent: every child takes
at most what is left when it is sent (property-tested in tests/unit/models/test_planners.py).
"""

from models.planners.bracket import Exit, bracket
from models.planners.pegged_mid import pegged_mid, reprice
from models.planners.sweep import sweep
from models.planners.tranches import tranches
from models.planners.twap import twap

__all__ = ["Exit", "bracket", "pegged_mid", "reprice", "sweep", "tranches", "twap"]
