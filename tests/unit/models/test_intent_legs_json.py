"""A combo's legs in a payload sent as JSON text (the relay's `payload` field, `epm submit`):
integers decode as Decimal there, and a whole one is as good a ratio as an int."""

from __future__ import annotations

import json
from datetime import date

from models.intent import Intent, validate_intent
from models.rejects import Reject, RejectReason

TODAY = date(2025, 11, 21)


def roll(ratio: object) -> dict[str, object]:
    return {
        "signal_id": "roll-1",
        "strategy": "Spread_Roll",
        "instrument": "QQQ   251128C00520000",
        "side": "BUY",
        "quantity": "2",
        "urgency": "Passive",
        "time_in_force": "DAY",
        "legs": [
            {"instrument": "QQQ   251121C00520000", "ratio": ratio, "action": "SELL"},
            {"instrument": "QQQ   251128C00520000", "ratio": 1, "action": "BUY"},
        ],
    }


def test_legs_in_json_text_are_admitted_with_their_ratios() -> None:
    result = validate_intent(json.dumps(roll(2)), today=TODAY)
    assert isinstance(result, Intent), result
    assert result.legs is not None and [leg.ratio for leg in result.legs] == [2, 1]


def test_a_fractional_ratio_in_json_text_is_still_refused() -> None:
    result = validate_intent(json.dumps(roll(1.5)), today=TODAY)
    assert isinstance(result, Reject) and result.reason is RejectReason.INVALID_LEGS
