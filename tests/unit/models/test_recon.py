"""The reconciliation's pure comparisons: what is missing, unknown, and how bad (§12.3)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models.recon import (
    LedgerFill,
    ReconStatus,
    compare_executions,
    compare_positions,
    executions_status,
    net_by_con_id,
    severity_of,
    worst,
)

D = Decimal


def fill(exec_id: str, shares: str = "10", side: str = "BUY", con_id: int = 1) -> LedgerFill:
    return LedgerFill(exec_id, con_id, side, D(shares), "Momentum_EQ", "ref-1")


def test_missing_executions_keep_the_venues_order_and_known_ones_match() -> None:
    venue = ["a.01", "c.01", "b.01", "c.01"]
    result = compare_executions(venue, {"a.01"}, [fill("a.01")])
    assert result.missing == ("c.01", "b.01")
    assert result.unknown == ()
    assert result.checked == 3


def test_a_ledger_fill_the_venue_does_not_list_is_unknown() -> None:
    result = compare_executions(["a.01"], {"a.01", "z.01"}, [fill("a.01"), fill("z.01")])
    assert [f.execution_id for f in result.unknown] == ["z.01"]
    assert result.missing == ()


def test_a_correction_the_ledger_lacks_is_missing_and_its_original_not_unknown() -> None:
    # The venue replaced a.01 by a.02; the ledger only has a.01 (in effect).
    result = compare_executions(["a.02"], {"a.01"}, [fill("a.01")])
    assert result.missing == ("a.02",)
    assert result.unknown == ()
    assert result.corrected_at_venue == ("a.01",)


def test_a_venue_execution_held_as_superseded_is_not_missing() -> None:
    # The ledger holds a.01 superseded by a.02 (in effect); the venue lists a.01 again.
    result = compare_executions(["a.01"], {"a.01", "a.02"}, [fill("a.02")])
    assert result.missing == ()
    assert [f.execution_id for f in result.unknown] == ["a.02"]


def test_blank_venue_exec_ids_are_reported_not_ingested() -> None:
    result = compare_executions(["  ", "a.01"], set(), [])
    assert result.malformed == ("  ",)
    assert result.missing == ("a.01",)


@pytest.mark.parametrize(
    ("quantity", "status"),
    [("0", "ok"), ("1", "warning"), ("-5", "warning"), ("5.01", "critical"), ("-6", "critical")],
)
def test_severity_above_five_is_critical(quantity: str, status: str) -> None:
    assert severity_of(D(quantity)) == ReconStatus(status)


def test_executions_status() -> None:
    clean = compare_executions(["a.01"], {"a.01"}, [fill("a.01")])
    assert executions_status(clean, recovered=0, unrecoverable=0) is ReconStatus.OK
    assert executions_status(clean, recovered=2, unrecoverable=0) is ReconStatus.WARNING
    assert executions_status(clean, recovered=0, unrecoverable=1) is ReconStatus.WARNING
    small = compare_executions([], set(), [fill("x.01", "3")])
    assert executions_status(small, 0, 0) is ReconStatus.WARNING
    # Unknown fills weigh by their net quantity per conId: 4 + 4 on one conId is 8 > 5.
    big = compare_executions([], set(), [fill("x.01", "4"), fill("y.01", "4")])
    assert executions_status(big, 0, 0) is ReconStatus.CRITICAL
    # A buy and a sell of 100 net to zero: still a warning, never ok.
    flat = compare_executions([], set(), [fill("x.01", "100"), fill("y.01", "100", "SELL")])
    assert executions_status(flat, 0, 0) is ReconStatus.WARNING


def test_positions_compare_per_con_id_summed_over_strategies() -> None:
    ledger = net_by_con_id([(1, D("60")), (1, D("40")), (2, D("-3")), (3, D("7"))])
    venue = {1: D("100"), 2: D("0"), 4: D("-10")}
    result = compare_positions(venue, ledger, {4: "QQQ"})
    by_con = {d.con_id: d for d in result.differences}
    assert set(by_con) == {2, 3, 4}
    assert by_con[2].status is ReconStatus.WARNING and by_con[2].difference == D("3")
    assert by_con[3].status is ReconStatus.CRITICAL and by_con[3].difference == D("-7")
    assert by_con[4].status is ReconStatus.CRITICAL and by_con[4].symbol == "QQQ"
    assert result.status is ReconStatus.CRITICAL
    assert [d.con_id for d in result.critical] == [3, 4]
    assert result.checked == 4


def test_equal_positions_are_ok_and_exact() -> None:
    result = compare_positions({1: D("0.1") + D("0.2")}, {1: D("0.3")})
    assert result.differences == () and result.status is ReconStatus.OK


def test_worst() -> None:
    assert worst([]) is ReconStatus.OK
    assert (
        worst([ReconStatus.WARNING, ReconStatus.FAILED, ReconStatus.CRITICAL]) is ReconStatus.FAILED
    )


@pytest.mark.parametrize(
    ("value", "text"), [("160.0", "160"), ("1E+2", "100"), ("-0.50", "-0.5"), ("0.000", "0")]
)
def test_decimal_text(value: str, text: str) -> None:
    from models.recon import decimal_text

    assert decimal_text(D(value)) == text
