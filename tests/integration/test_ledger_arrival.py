"""Arrival order never changes the books (issue 9, items 7-9), on SQLite and PostgreSQL.

Every test here delivers one scenario's callbacks in every order (`itertools.permutations`);
each permutation works on its own order (distinct ref, IB ids, permId and execIds), so the
final rows can be compared without wiping between permutations.
"""

from __future__ import annotations

import itertools
import random
import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services import ledger
from store.schema import (
    UNATTRIBUTED_STRATEGY,
    execution_orders,
    fills,
    order_events,
    positions_current,
)
from tests.integration.test_ledger import (
    T0,
    D,
    execution,
    one,
    open_order,
    order_row,
    our_order,
    rows,
    run,
    status,
)

Callback = tuple[str, dict[str, Any]]

# The columns the FSM owns: these must be identical whatever the arrival order.
FSM_COLUMNS = (
    "state",
    "quantity",
    "filled_qty",
    "avg_fill_price",
    "ib_filled_qty",
    "last_ib_status",
    "reject_code",
    "reject_reason",
)


def _at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def _fsm_columns(engine: Engine, coid: str) -> dict[str, Any]:
    row = order_row(engine, coid)
    return {name: getattr(row, name) for name in FSM_COLUMNS}


def _con_id(n: int) -> int:
    return 700_000 + n


def _position_quantity(engine: Engine, con_id: int) -> Any:
    found = rows(
        engine,
        sa.select(positions_current.c.quantity).where(
            positions_current.c.con_id == con_id,
            positions_current.c.strategy_id == "Momentum_EQ",
        ),
    )
    return found[0].quantity if found else D(0)


def _deliver(engine: Engine, callbacks: tuple[Callback, ...]) -> None:
    for kind, payload in callbacks:
        assert run(engine, kind, payload)["outcome"] != "rejected", (kind, payload)


# ----------------------------------------------------------------------------- item 7

# How the upsized order ends after the modify and the first fill.
UPSIZE_ENDINGS = ("working", "cancelled", "cancel_confirmed", "filled_by_status", "filled")


def _upsized_callbacks(n: int, ending: str) -> list[Callback]:
    """Order `U-{n}`: target 100 modified to 150 at the venue; 100 fill before the modify's view.

    IB sends: openOrder 100 Submitted, openOrder 150 Submitted (the modify), execDetails 100,
    orderStatus Submitted filled 100 remaining 50, then the ending.
    """
    ids = {"order_id": 1000 + n, "perm_id": 50_000 + n}
    # Each permutation's own contract too, so its position holds only its fills.
    mine = {"order_ref": f"U-{n}", "con_id": _con_id(n), **ids}
    callbacks: list[Callback] = [
        ("open_order", open_order("100", T0 + timedelta(seconds=1), **mine)),
        ("open_order", open_order("150", T0 + timedelta(seconds=2), **mine)),
        ("execution", execution(f"u{n}a.01.01", "100", "190", **mine)),
        ("order_status", status("Submitted", "100", "50", received_at=_at(3), **ids)),
    ]
    if ending == "cancelled":
        callbacks.append(
            ("order_status", status("Cancelled", "100", "50", received_at=_at(4), **ids))
        )
    elif ending == "cancel_confirmed":
        error = {
            "order_id": ids["order_id"],
            "client_id": 1,
            "code": 202,
            "message": "Order Canceled - reason:",
            "received_at": _at(4),
        }
        callbacks.append(("order_error", error))
    elif ending == "filled_by_status":
        # IB's own word that the order is done (remaining 0), before our fills add up.
        callbacks.append(("order_status", status("Filled", "150", "0", received_at=_at(4), **ids)))
    elif ending == "filled":
        callbacks.append(("execution", execution(f"u{n}b.01.01", "50", "191", **mine)))
        callbacks.append(("order_status", status("Filled", "150", "0", received_at=_at(5), **ids)))
    return callbacks


UPSIZE_EXPECTED: dict[str, dict[str, Any]] = {
    "working": {"state": "PARTIAL_FILLED", "filled_qty": D("100"), "ib_filled_qty": D("100")},
    "cancelled": {"state": "CANCELLED", "filled_qty": D("100"), "ib_filled_qty": D("100")},
    "cancel_confirmed": {"state": "CANCELLED", "filled_qty": D("100"), "ib_filled_qty": D("100")},
    "filled_by_status": {"state": "FILLED", "filled_qty": D("100"), "ib_filled_qty": D("150")},
    "filled": {"state": "FILLED", "filled_qty": D("150"), "ib_filled_qty": D("150")},
}
UPSIZE_LAST_STATUS = {
    "working": "Submitted",
    "cancelled": "Cancelled",
    "cancel_confirmed": "Submitted",
    "filled_by_status": "Filled",
    "filled": "Filled",
}


@pytest.mark.parametrize("ending", UPSIZE_ENDINGS)
def test_upsized_modify_ends_the_same_in_every_arrival_order(engine: Engine, ending: str) -> None:
    # Issue 9 item 7: 100 filled against the stale target 100 made the order FILLED, and the
    # view raising the target to 150 arrived too late to undo it (the cancel then was "late").
    template = _upsized_callbacks(0, ending)
    finals: dict[tuple[int, ...], dict[str, Any]] = {}
    for n, order in enumerate(itertools.permutations(range(len(template)))):
        our_order(engine, f"U-{n}", 1000 + n, con_id=_con_id(n))
        callbacks = _upsized_callbacks(n, ending)
        _deliver(engine, tuple(callbacks[i] for i in order))
        finals[order] = _fsm_columns(engine, f"U-{n}")
        assert _position_quantity(engine, _con_id(n)) == finals[order]["filled_qty"], order
    expected = {
        **UPSIZE_EXPECTED[ending],
        "quantity": D("150"),
        "last_ib_status": UPSIZE_LAST_STATUS[ending],
    }
    wrong = {
        order: final
        for order, final in finals.items()
        if {k: final[k] for k in expected} != expected
    }
    assert not wrong, (
        f"{len(wrong)} of {len(finals)} arrival orders differ, e.g. {next(iter(wrong.items()))}"
    )
    assert len({tuple(sorted(f.items(), key=lambda kv: kv[0])) for f in finals.values()}) == 1
    # Only our orders: no callback opened a stand-in.
    assert all(
        not r.client_order_id.startswith("ib:") for r in rows(engine, sa.select(execution_orders))
    )


# ----------------------------------------------------------------------------- item 8


@pytest.mark.parametrize("ref_first", [False, True])
def test_adopting_a_stand_in_with_no_fills_keeps_the_order_placed(
    engine: Engine, ref_first: bool
) -> None:
    # Issue 9 item 8: a ref-less Submitted opens the stand-in ib:1:11 (our order has no IB id
    # yet); the openOrder naming our ref adopts it. Nothing filled, so the order is PLACED.
    our_order(engine, ib_order_id=None, state="PLACED")
    callbacks: list[Callback] = [
        ("order_status", status("Submitted", "0", "100")),
        ("open_order", open_order("100", T0, ib_status="Submitted")),
    ]
    _deliver(engine, tuple(reversed(callbacks)) if ref_first else tuple(callbacks))
    assert [r.client_order_id for r in rows(engine, sa.select(execution_orders))] == ["A-1"]
    order = order_row(engine)
    assert (order.state, order.filled_qty, order.ib_filled_qty) == ("PLACED", D(0), D(0))
    assert order.last_ib_status == "Submitted"
    assert order.ib_order_id == 11


def test_adopting_a_stand_in_with_no_fills_keeps_a_validated_order_placed(engine: Engine) -> None:
    # Same race while the orders path has not recorded PLACED yet: IB's ack proves the order
    # was placed, nothing proves a fill.
    our_order(engine, ib_order_id=None, state="VALIDATED")
    _deliver(
        engine,
        (
            ("order_status", status("PreSubmitted", "0", "100")),
            ("open_order", open_order("100", T0, ib_status="PreSubmitted")),
        ),
    )
    order = order_row(engine)
    assert (order.state, order.filled_qty) == ("PLACED", D(0))


# ----------------------------------------------------------------------------- item 9


def _replaced_callbacks(n: int, exec_ref: bool) -> list[Callback]:
    """Order `Q-{n}` was placed as id 2000+n; after error 103 the bridge re-placed it as +1."""
    old, new, perm = 2000 + 10 * n, 2000 + 10 * n + 1, 60_000 + n
    ref = f"Q-{n}"
    link = {
        "old_order_id": old,
        "new_order_id": new,
        "client_order_id": ref,
        "client_id": 1,
        "reason": "IB_103_DUPLICATE_ORDER_ID",
        "at": _at(1),
    }
    contract = {"con_id": _con_id(n)}
    return [
        ("order_status", status("Submitted", "0", "100", order_id=new, perm_id=perm)),
        ("order_replaced", link),
        (
            "open_order",
            open_order("100", T0, order_id=new, perm_id=perm, order_ref=ref, **contract),
        ),
        (
            "execution",
            execution(
                f"q{n}.01.01",
                "40",
                "190",
                order_id=new,
                perm_id=perm,
                order_ref=ref if exec_ref else None,
                **contract,
            ),
        ),
    ]


def _assert_on_new_id(engine: Engine, n: int, arrival: tuple[int, ...]) -> dict[str, Any]:
    ref, new, perm = f"Q-{n}", 2000 + 10 * n + 1, 60_000 + n
    holders = rows(
        engine,
        sa.select(execution_orders).where(
            sa.or_(
                execution_orders.c.client_order_id == ref,
                execution_orders.c.ib_order_id.in_([new - 1, new]),
                execution_orders.c.perm_id == perm,
            )
        ),
    )
    assert [h.client_order_id for h in holders] == [ref], arrival
    order = holders[0]
    assert (order.ib_order_id, order.perm_id) == (new, perm), arrival
    assert (order.state, order.filled_qty) == ("PARTIAL_FILLED", D("40")), arrival
    assert order.details["previous_ib_order_ids"] == [new - 1], arrival
    assert _position_quantity(engine, _con_id(n)) == D("40"), arrival
    final = {name: getattr(order, name) for name in FSM_COLUMNS}
    fill = one(engine, sa.select(fills).where(fills.c.execution_id == f"q{n}.01.01"))
    assert (fill.order_id, fill.strategy) == (order.id, "Momentum_EQ"), arrival
    # Every callback's event is on our order (plus ledger events such as an adoption).
    events = rows(engine, sa.select(order_events).where(order_events.c.order_id == order.id))
    keys = {e.dedupe_key.split(":")[0] for e in events if e.dedupe_key}
    assert {"status", "replaced", "open", "exec"} <= keys, (arrival, keys)
    # A later callback for the new id lands on our order, not on another stand-in.
    later = status("Cancelled", "40", "60", order_id=new, perm_id=perm, received_at=_at(9))
    assert run(engine, "order_status", later)["client_order_id"] == ref, arrival
    assert order_row(engine, ref).state == "CANCELLED", arrival
    return final


@pytest.mark.parametrize("exec_ref", [True, False])
def test_order_replaced_after_103_ends_on_the_new_id_in_every_arrival_order(
    engine: Engine, exec_ref: bool
) -> None:
    # Issue 9 item 9: a ref-less status for the new id opened a stand-in holding it, the
    # replacement link was then refused ("id already belongs to another order"), and the
    # adoption that followed kept the old id: every later callback opened another stand-in.
    template = _replaced_callbacks(0, exec_ref)
    finals = []
    for n, arrival in enumerate(itertools.permutations(range(len(template)))):
        our_order(engine, f"Q-{n}", 2000 + 10 * n, con_id=_con_id(n))
        callbacks = _replaced_callbacks(n, exec_ref)
        _deliver(engine, tuple(callbacks[i] for i in arrival))
        finals.append(_assert_on_new_id(engine, n, arrival))
    assert all(final == finals[0] for final in finals)
    stand_ins = [
        r for r in rows(engine, sa.select(execution_orders)) if r.client_order_id.startswith("ib:")
    ]
    assert stand_ins == []
    stray = one(
        engine,
        sa.select(sa.func.count())
        .select_from(fills)
        .where(fills.c.strategy == UNATTRIBUTED_STRATEGY),
    )
    assert stray[0] == 0


# ----------------------------------------------------------------------------- racing workers


def _race(engine: Engine, callbacks: list[Callback], workers: int = 4) -> None:
    """Every worker delivers every callback (so each is recorded up to `workers` times), each
    in its own shuffled order, all at once; lock conflicts are retried as the task does."""
    errors: list[BaseException] = []

    def deliver(seed: int) -> None:
        delivery = list(callbacks)
        random.Random(seed).shuffle(delivery)
        try:
            for kind, payload in delivery:
                for attempt in range(30):
                    try:
                        assert run(engine, kind, payload)["outcome"] != "rejected"
                        break
                    except (sa.exc.DBAPIError, ledger.StaleOrderError):
                        if attempt == 29:
                            raise
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=deliver, args=(seed,)) for seed in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("seed", range(3))
def test_upsized_modify_under_racing_workers(engine: Engine, seed: int) -> None:
    n = seed
    our_order(engine, f"U-{n}", 1000 + n, con_id=_con_id(n))
    callbacks = _upsized_callbacks(n, "cancelled")
    random.Random(seed).shuffle(callbacks)
    _race(engine, callbacks)
    final = _fsm_columns(engine, f"U-{n}")
    assert {k: final[k] for k in ("state", "quantity", "filled_qty", "ib_filled_qty")} == {
        "state": "CANCELLED",
        "quantity": D("150"),
        "filled_qty": D("100"),
        "ib_filled_qty": D("100"),
    }
    assert final["last_ib_status"] == "Cancelled"


@pytest.mark.parametrize("seed", range(3))
def test_order_replaced_after_103_under_racing_workers(engine: Engine, seed: int) -> None:
    n = seed
    our_order(engine, f"Q-{n}", 2000 + 10 * n, con_id=_con_id(n))
    callbacks = _replaced_callbacks(n, exec_ref=False)
    random.Random(seed).shuffle(callbacks)
    _race(engine, callbacks)
    _assert_on_new_id(engine, n, (seed,))
