"""IB's order id is `ib_order_id` in every ledger payload; payloads queued before the rename
(`order_id`, `old_order_id`, `new_order_id`) are still read, to the same report."""

from __future__ import annotations

from typing import Any

import pytest

from models.ledger_reports import (
    ExecutionReport,
    OpenOrderReport,
    OrderErrorReport,
    OrderReplacedReport,
    OrderStatusReport,
    ReportError,
    parse_report,
)

AT = "2026-12-03T15:00:00+00:00"
BASES: list[tuple[type[Any], dict[str, object]]] = [
    (
        ExecutionReport,
        {"exec_id": "e.01.01", "side": "BOT", "shares": "1", "price": "1", "received_at": AT},
    ),
    (
        OrderStatusReport,
        {"ib_status": "Submitted", "filled": "0", "remaining": "1", "received_at": AT},
    ),
    (OpenOrderReport, {"received_at": AT}),
    (OrderErrorReport, {"code": 201, "received_at": AT}),
]


@pytest.mark.parametrize(("model", "base"), BASES)
def test_old_and_new_names_of_the_ib_order_id_read_the_same(
    model: type[Any], base: dict[str, object]
) -> None:
    new = parse_report(model, {**base, "ib_order_id": 42})
    old = parse_report(model, {**base, "order_id": 42})
    assert new == old
    assert new.ib_order_id == 42
    assert "order_id" not in new.model_dump()


def test_replacement_links_read_under_both_names() -> None:
    base = {"client_order_id": "EPM-1", "client_id": 1, "at": AT, "received_at": AT}
    new = OrderReplacedReport.model_validate({**base, "old_ib_order_id": 7, "new_ib_order_id": 9})
    old = OrderReplacedReport.model_validate({**base, "old_order_id": 7, "new_order_id": 9})
    assert new == old
    assert (new.old_ib_order_id, new.new_ib_order_id) == (7, 9)


def test_a_payload_without_the_id_is_refused_with_a_reason() -> None:
    with pytest.raises(ReportError):
        parse_report(OrderStatusReport, BASES[1][1])
