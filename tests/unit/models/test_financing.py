"""Borrow-fee allocation (`models.financing`): pieces to the cent that add up exactly."""

from __future__ import annotations

from decimal import Decimal

from models.financing import split_cents

D = Decimal


def test_split_is_proportional_to_the_cent_and_exact() -> None:
    assert split_cents(D("12.35"), {"A": D(300), "B": D(100)}) == {"A": D("9.27"), "B": D("3.08")}
    three = split_cents(D("1.00"), {"A": D(1), "B": D(1), "C": D(1)})
    assert three == {"A": D("0.34"), "B": D("0.33"), "C": D("0.33")}
    assert sum(three.values()) == D("1.00")


def test_a_rebate_splits_with_its_sign_and_sub_cent_fees_stay_exact() -> None:
    assert split_cents(D("-0.05"), {"A": D(2), "B": D(1)}) == {"A": D("-0.04"), "B": D("-0.01")}
    fine = split_cents(D("0.0125"), {"A": D(1), "B": D(1)})
    assert sum(fine.values()) == D("0.0125") and fine["B"] == D(0)
