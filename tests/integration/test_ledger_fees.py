"""Fees (issue 12 item 1): the IB tiered estimate stands until IB's report and its error is
recorded; a correction is charged what the execution it replaces was charged, and the
replaced execution no longer is; a position's fees are its effective executions' commissions."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.fills import (
    TieredSchedule,
    carried_commission,
    estimate_tiered,
    tiered_schedule,
)
from services.ledger.fees import MONTHLY_SHARES_ENV
from store.schema import commissions, order_events
from tests.integration.test_ledger import (
    commission,
    execution,
    one,
    our_order,
    position,
    rows,
    run,
)

D = Decimal
TIER1 = TieredSchedule()


@pytest.mark.parametrize(
    ("sec_type", "shares", "price", "expected"),
    [
        ("STK", "100", "190", "0.35"),  # 0.35 minimum
        ("STK", "1000", "190", "3.50"),  # 0.0035 a share
        ("STK", "1001", "190", "3.50"),  # 3.5035 to the cent, half-even
        ("STK", "10", "2", "0.20"),  # the 1 % cap wins over the minimum
        ("OPT", "1", "0.04", "1.00"),  # option minimum
        ("OPT", "10", "0.04", "2.50"),  # premium < 0.05: 0.25 a contract
        ("OPT", "10", "0.07", "5.00"),  # premium < 0.10: 0.50
        ("OPT", "10", "3.20", "6.50"),  # 0.65
        ("STK", "0", "190", "0"),
    ],
)
def test_tiered_estimate(sec_type: str, shares: str, price: str, expected: str) -> None:
    multiplier = D(100) if sec_type == "OPT" else D(1)
    assert estimate_tiered(TIER1, sec_type, D(shares), D(price), multiplier) == D(expected)


def test_monthly_volume_picks_the_tier() -> None:
    assert tiered_schedule(0).stock_rate == D("0.0035")
    assert tiered_schedule(299_999).stock_rate == D("0.0035")
    assert tiered_schedule(300_000).stock_rate == D("0.0020")
    assert tiered_schedule(150_000_000).stock_rate == D("0.0005")


def test_carried_commission_is_the_latest_earlier_version_with_one() -> None:
    versions = [("x.01.01", D("1.10")), ("x.01.02", D("1.20")), ("x.01.03", None)]
    assert carried_commission("x.01.03", versions) == D("1.20")
    assert carried_commission("x.01.02", versions) == D("1.10")
    assert carried_commission("x.01.01", versions) is None
    assert carried_commission("x.01.02", [("x.01.01", None)]) is None


def test_the_configured_monthly_volume_sets_the_estimate(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MONTHLY_SHARES_ENV, "500000")
    our_order(engine, quantity=D(1000))
    run(engine, "execution", execution("v.01.01", "1000", "190"))
    assert position(engine).commissions == D("2.00")  # 0.0020 a share


def test_the_estimate_stands_until_the_report_and_its_error_is_recorded(engine: Engine) -> None:
    our_order(engine)
    run(engine, "execution", execution("g.01.01", "60", "190"))
    assert position(engine).commissions == D("0.35")
    row = one(engine, sa.select(commissions).where(commissions.c.execution_id == "g.01.01"))
    assert (row.commission, row.estimated) == (D("0.35"), True)
    run(engine, "commission", commission("g.01.01", "0.4120"))
    assert position(engine).commissions == D("0.4120")
    (event,) = rows(
        engine, sa.select(order_events).where(order_events.c.event_type == "COMMISSION_REPORTED")
    )
    assert event.applied is False
    assert event.payload == {
        "exec_id": "g.01.01",
        "estimate": "0.35",
        "commission": "0.4120",
        "error": "0.0620",
    }
    # A repeat of the report changes nothing and records no second error.
    assert run(engine, "commission", commission("g.01.01", "0.4120"))["outcome"] == "duplicate"
    assert len(rows(engine, sa.select(order_events.c.id).where(
        order_events.c.event_type == "COMMISSION_REPORTED"))) == 1  # fmt: skip


def test_a_report_before_its_execution_leaves_no_estimate_and_no_error(engine: Engine) -> None:
    our_order(engine)
    run(engine, "commission", commission("h.01.01", "0.50"))
    run(engine, "execution", execution("h.01.01", "60", "190"))
    assert position(engine).commissions == D("0.50")
    row = one(engine, sa.select(commissions).where(commissions.c.execution_id == "h.01.01"))
    assert row.estimated is False
    assert (
        rows(
            engine,
            sa.select(order_events).where(order_events.c.event_type == "COMMISSION_REPORTED"),
        )
        == []
    )


def test_a_correction_carries_the_commission_and_the_replaced_execution_is_not_charged(
    engine: Engine,
) -> None:
    our_order(engine)
    run(engine, "execution", execution("k.01.01", "60", "190"))
    run(engine, "commission", commission("k.01.01", "1.23"))
    run(engine, "execution", execution("k.01.02", "60", "190.05"))
    # Charged once, what the venue charged the original (not 1.23 + an estimate).
    assert position(engine).commissions == D("1.23")
    row = one(engine, sa.select(commissions).where(commissions.c.execution_id == "k.01.02"))
    assert (row.commission, row.estimated) == (D("1.23"), True)
    # The venue's report for the correction replaces the carried figure; still charged once.
    run(engine, "commission", commission("k.01.02", "1.23"))
    assert position(engine).commissions == D("1.23")
    run(engine, "execution", execution("k2.01.01", "40", "190"))
    run(engine, "commission", commission("k2.01.01", "0.14"))
    assert position(engine).commissions == D("1.37")


def test_a_correction_recorded_before_its_original_is_estimated_then_reported(
    engine: Engine,
) -> None:
    our_order(engine)
    run(engine, "execution", execution("m.01.02", "60", "190.05"))
    run(engine, "execution", execution("m.01.01", "60", "190"))
    run(engine, "commission", commission("m.01.01", "1.23"))
    assert position(engine).commissions == D("0.35")  # the correction's own estimate
    run(engine, "commission", commission("m.01.02", "1.23"))
    assert position(engine).commissions == D("1.23")
