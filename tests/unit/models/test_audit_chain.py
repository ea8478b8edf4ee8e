"""The audit chain's pure core: canonical form, hashing, and what a walk reports for each kind of
tampering (the store tests repeat these against real tables)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.audit_chain import (
    GENESIS,
    AuditEntry,
    canonical,
    json_safe,
    row_hash,
    verify_chain,
)

T0 = datetime(2026, 12, 4, 14, 30, 0, 123456, tzinfo=UTC)


def _chain(n: int, *, first_id: int = 1, unchained: int = 0) -> list[AuditEntry]:
    rows: list[AuditEntry] = []
    for i in range(unchained):
        rows.append(AuditEntry(i + first_id, T0, "old", "legacy", None, {"i": i}, None, None))
    prev = GENESIS
    for i in range(n):
        rid = first_id + unchained + i
        details = {"qty": str(Decimal("100.50") + i), "n": i}
        ts = T0 + timedelta(seconds=i)
        h = row_hash(prev, canonical(ts=ts, actor="ops", action="act", target="t", details=details))
        rows.append(AuditEntry(rid, ts, "ops", "act", "t", details, prev, h))
        prev = h
    return rows


def test_canonical_sorts_keys_writes_decimal_as_string_and_ts_as_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    text = canonical(
        ts=T0.astimezone(eastern),
        actor="a",
        action="b",
        target=None,
        details={"z": Decimal("1.10"), "a": "x"},
    )
    assert text == (
        '{"action":"b","actor":"a","details":{"a":"x","z":"1.10"},"target":null,'
        '"ts":"2026-12-04T14:30:00.123456+00:00"}'
    )


def test_float_in_details_is_refused() -> None:
    with pytest.raises(ValueError, match="float"):
        json_safe({"price": 1.5})


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        canonical(ts=datetime(2026, 1, 1), actor="a", action="b", target=None, details=None)


def test_intact_chain_reports_counts_and_head() -> None:
    rows = _chain(5, unchained=2)
    report = verify_chain(rows)
    assert report.ok
    assert (report.unchained, report.chained) == (2, 5)
    assert report.head_id == rows[-1].id
    assert report.head_hash == rows[-1].row_hash


def test_empty_log_is_intact() -> None:
    report = verify_chain([])
    assert report.ok and report.chained == 0 and report.head_hash is None


def test_modified_row_is_named() -> None:
    rows = _chain(5)
    rows[2] = replace(rows[2], details={**dict(rows[2].details or {}), "qty": "1"})
    report = verify_chain(rows)
    assert report.broken is not None
    assert report.broken.row_id == rows[2].id
    assert "modified" in report.broken.reason
    assert report.chained == 2


def test_modified_timestamp_or_actor_is_named() -> None:
    for change in ({"ts": T0 + timedelta(microseconds=1)}, {"actor": "someone else"}):
        rows = _chain(3)
        rows[0] = replace(rows[0], **change)  # type: ignore[arg-type]
        report = verify_chain(rows)
        assert report.broken is not None and report.broken.row_id == rows[0].id


def test_deleted_row_is_named_at_the_row_after_it() -> None:
    rows = _chain(5)
    del rows[2]
    report = verify_chain(rows)
    assert report.broken is not None
    assert report.broken.row_id == 4
    assert "deleted or inserted" in report.broken.reason
    assert "row 2" in report.broken.reason


def test_deleted_first_rows_are_detected() -> None:
    rows = _chain(4)[1:]
    report = verify_chain(rows)
    assert report.broken is not None and report.broken.row_id == 2
    assert "genesis" in report.broken.reason


def test_inserted_row_with_forged_hash_is_detected() -> None:
    rows = _chain(4)
    prev = rows[1].row_hash or ""
    forged_details = {"qty": "9000000"}
    forged = AuditEntry(
        99,
        T0,
        "intruder",
        "act",
        "t",
        forged_details,
        prev,
        row_hash(
            prev,
            canonical(ts=T0, actor="intruder", action="act", target="t", details=forged_details),
        ),
    )
    rows.insert(2, forged)
    report = verify_chain(rows)
    assert report.broken is not None
    assert report.broken.row_id == 3  # the genuine row after the forgery no longer chains
    assert "deleted or inserted" in report.broken.reason


def test_inserted_hashless_row_after_the_chain_began_is_tampering() -> None:
    rows = _chain(3)
    rows.append(AuditEntry(10, T0, "x", "y", None, None, None, None))
    report = verify_chain(rows)
    assert report.broken is not None and report.broken.row_id == 10
    assert "inserted" in report.broken.reason


def test_half_hashed_row_is_tampering() -> None:
    rows = _chain(2)
    rows[1] = replace(rows[1], row_hash=None)
    report = verify_chain(rows)
    assert report.broken is not None and report.broken.row_id == rows[1].id


def test_an_expected_head_that_is_gone_means_the_tail_was_dropped() -> None:
    rows = _chain(5)
    noted = rows[-1].row_hash
    assert verify_chain(rows, expect=noted).ok
    assert verify_chain(rows, expect=rows[2].row_hash).ok  # an older head is still found
    report = verify_chain(rows[:-1], expect=noted)
    assert report.broken is not None and report.broken.row_id == rows[-2].id
    assert "deleted from the end" in report.broken.reason


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=12),
    op=st.sampled_from(["edit_details", "edit_actor", "edit_ts", "delete", "insert", "swap"]),
    data=st.data(),
)
def test_any_single_tampering_is_found_at_or_before_the_row_after_it(
    n: int, op: str, data: st.DataObject
) -> None:
    """Every edit, deletion (but of the last row: that needs `expect`), insertion or swap of
    rows is reported, at the first row whose content or link no longer holds."""
    rows = _chain(n, unchained=data.draw(st.integers(min_value=0, max_value=2)))
    first = next(i for i, r in enumerate(rows) if r.row_hash is not None)
    k = data.draw(
        st.integers(min_value=first, max_value=len(rows) - 2 if op == "delete" else len(rows) - 1)
    )
    if op == "edit_details":
        rows[k] = replace(rows[k], details={**dict(rows[k].details or {}), "qty": "0"})
    elif op == "edit_actor":
        rows[k] = replace(rows[k], actor=rows[k].actor + "x")
    elif op == "edit_ts":
        rows[k] = replace(rows[k], ts=rows[k].ts + timedelta(microseconds=1))
    elif op == "delete":
        del rows[k]
    elif op == "insert":
        prev = rows[k - 1].row_hash if k > first else GENESIS
        text = canonical(ts=T0, actor="x", action="y", target=None, details=None)
        rows.insert(
            k, AuditEntry(1000, T0, "x", "y", None, None, prev, row_hash(prev or GENESIS, text))
        )
    else:
        j = k - 1 if k > first else k + 1
        if j >= len(rows):
            return
        rows[k], rows[j] = rows[j], rows[k]
    report = verify_chain(rows)
    assert not report.ok
