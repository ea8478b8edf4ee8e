"""A randomized race: many orders' places, modifies, cancels and fills interleaved with bridge
kill -9 restarts, gateway drops and duplicated commands, against the simulator, a real Celery
ledger worker and PostgreSQL.

Whatever the interleaving (seeded, so a failure replays), afterwards:
- the venue never filled more of an order than it was ever asked for;
- no order whose cancel went out is working, and no order is at the venue twice;
- the ledger's fills are exactly the venue's executions, per order.
"""

from __future__ import annotations

import random
import signal
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from ibgateway_bridge import client_api
from ibgateway_bridge import commands as cmds
from ibgateway_bridge.killswitch import kill_switch
from store.migrate import upgrade
from tests.bridge.harness import (
    SPY_CON,
    BridgeProcess,
    poll,
    sim_thread,
    wait_ready,
)
from tests.bridge.test_ledger_e2e import ledger_worker
from tws_sim.server.app import SimServerThread

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SPY = {"con_id": SPY_CON, "symbol": "SPY", "sec_type": "STK"}
TICK = Decimal("0.01")
WORKING = ("PreSubmitted", "Submitted", "PendingSubmit", "ApiPending")


@pytest.fixture(scope="module")
def ledger_db(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


@dataclass
class OrderPlan:
    """One order's commands, in the order its producer sends them."""

    ref: str
    order_id: int
    steps: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    intended: Decimal = Decimal(0)
    cancelled: bool = False


def _spec(action: str, qty: int, price: Decimal | None) -> dict[str, str]:
    if price is None:
        return {"action": action, "quantity": str(qty), "order_type": "MKT"}
    return {"action": action, "quantity": str(qty), "order_type": "LMT", "lmt_price": str(price)}


def plan_orders(
    rng: random.Random, r: redis.Redis, mid: Decimal, count: int, prefix: str
) -> list[OrderPlan]:
    plans = []
    for n in range(count):
        oid = client_api.allocate_order_id(r)
        plan = OrderPlan(f"{prefix}{oid}", oid)
        action = rng.choice(["BUY", "SELL"])
        sign = 1 if action == "BUY" else -1
        qty = rng.randint(1, 4)
        # Mostly resting a few ticks away (fills come as the market moves), some marketable.
        offset = Decimal(rng.randint(-3, 6)) * TICK
        price: Decimal | None = None if n % 7 == 0 else mid - sign * offset
        plan.steps.append(("place", _spec(action, qty, price), 0))
        plan.intended = Decimal(qty)
        for version in range(1, rng.randint(0, 3) + 1):
            # Peg updates chasing the market; some upsize.
            qty = qty + rng.choice([0, 0, 1])
            price = mid + sign * Decimal(rng.randint(-2, 3)) * TICK
            plan.steps.append(("modify", _spec(action, qty, price), version))
            plan.intended = max(plan.intended, Decimal(qty))
        if rng.random() < 0.5:
            plan.steps.append(("cancel", {}, 0))
            plan.cancelled = True
        plans.append(plan)
    return plans


def send(r: redis.Redis, plan: OrderPlan, step: tuple[str, dict[str, str], int]) -> None:
    kind, spec, version = step
    if kind == "place":
        client_api.enqueue_place(plan.order_id, plan.ref, SPY, spec, client=r)
    elif kind == "modify":
        client_api.enqueue_modify(plan.order_id, version, plan.ref, SPY, spec, client=r)
    else:
        client_api.enqueue_cancel(plan.order_id, client=r)


def script(rng: random.Random, plans: list[OrderPlan]) -> list[tuple[str, object]]:
    """Interleave every order's steps (each order's own in order), add duplicates of random
    commands at random later points (a Celery redelivery arrives whenever), and disruptions."""
    queues = {p.ref: list(p.steps) for p in plans}
    by_ref = {p.ref: p for p in plans}
    events: list[tuple[str, object]] = []
    while any(queues.values()):
        ref = rng.choice([k for k, q in queues.items() if q])
        step = queues[ref].pop(0)
        events.append(("send", (by_ref[ref], step)))
        if rng.random() < 0.25:
            events.insert(rng.randint(len(events), len(events) + 3), ("send", (by_ref[ref], step)))
    for kind in ("restart", "restart", "drop", "drop", "settle", "settle"):
        events.insert(rng.randint(1, len(events) - 1), (kind, None))
    return events


def venue_view(sim: SimServerThread) -> tuple[dict[str, list[tuple[int, str]]], set[str]]:
    """ref → [(order id, IB status)] of every order at the venue, and its effective exec ids."""

    def collect(server: object) -> tuple[dict[str, list[tuple[int, str]]], set[str]]:
        venue = server.venue  # type: ignore[attr-defined]
        snaps = venue.open_orders(1) + [
            o for o in venue.completed_orders() if o.request.client_id == 1
        ]
        orders: dict[str, list[tuple[int, str]]] = {}
        for snap in snaps:
            orders.setdefault(snap.request.order_ref, []).append(
                (snap.request.order_id, str(snap.status.value))
            )
        return orders, {e.exec_id for e, _c in venue.executions(None)}

    return sim.call(collect)


def venue_filled(sim: SimServerThread) -> dict[str, Decimal]:
    def collect(server: object) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for e, _c in server.venue.executions(None):  # type: ignore[attr-defined]
            out[e.order_ref] = out.get(e.order_ref, Decimal(0)) + e.shares
        return out

    return sim.call(collect)


def ledger_fills(db_url: str, prefix: str) -> tuple[set[str], dict[str, Decimal]]:
    """This run's effective fills in the ledger (the database is shared by the module)."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT execution_id, order_ref, shares FROM fills"
                    " WHERE superseded_by IS NULL AND order_ref LIKE :refs"
                ),
                {"refs": f"{prefix}%"},
            ).all()
    finally:
        engine.dispose()
    per_ref: dict[str, Decimal] = {}
    for row in rows:
        per_ref[row.order_ref] = per_ref.get(row.order_ref, Decimal(0)) + Decimal(row.shares)
    return {row.execution_id for row in rows}, per_ref


def quiet(r: redis.Redis) -> bool:
    """The live bridge has read and settled every command on the stream, and sends nothing."""
    state = r.hgetall("ib:bridge:state")
    beat = state.get("heartbeat")
    if not beat or datetime.now(UTC) - datetime.fromisoformat(beat) > timedelta(seconds=2):
        return False  # a killed bridge's state lingers; only a beating one counts
    (group,) = [g for g in r.xinfo_groups(cmds.COMMAND_STREAM) if g["name"] == cmds.COMMAND_GROUP]
    newest = r.xrevrange(cmds.COMMAND_STREAM, count=1)
    read_all = not newest or group["last-delivered-id"] == newest[0][0]
    return (
        read_all
        and group["pending"] == 0
        and state.get("client1") == "READY"
        and state.get("backlog_orders") == "0"
    )


@pytest.mark.parametrize("seed", [11, 2027])
def test_random_interleavings_never_overfill_revive_or_lose(
    r: redis.Redis,
    redis_url: str,
    ledger_db: str,
    tmp_path: Path,
    seed: int,
) -> None:
    rng = random.Random(seed)
    prefix = f"race{seed}-{uuid.uuid4().hex[:6]}-"  # this run's refs (the database is shared)
    with (
        sim_thread() as sim,
        ledger_worker(redis_url, ledger_db, tmp_path / "worker.log"),
    ):

        def bridge(n: int) -> BridgeProcess:
            return BridgeProcess(
                redis_url,
                sim.port,
                tmp_path / f"bridge-{n}.log",
                EPM_BRIDGE_SEND_EXTRA_TASKS="true",
                EPM_BRIDGE_LEASE_TTL_MS="1000",
                EPM_BRIDGE_LEASE_WAIT_S="10",
            ).start()

        current = bridge(0)
        try:
            wait_ready(r)
            mid = sim.call(lambda s: s.market.quote(SPY_CON)).mid.quantize(TICK)
            plans = plan_orders(rng, r, mid, 24, prefix)
            restarts = 0
            for kind, arg in script(rng, plans):
                if kind == "send":
                    plan, step = arg  # type: ignore[misc]
                    send(r, plan, step)
                elif kind == "restart":
                    current.signal(signal.SIGKILL)
                    current.wait(10)
                    restarts += 1
                    current = bridge(restarts)
                elif kind == "drop":
                    sim.call(lambda s: s.drop_all(0))
                else:  # let the bridge catch up, so later commands meet sent orders
                    poll(lambda: quiet(r), 60, interval=0.1, what="the bridge caught up")
            poll(lambda: quiet(r), 90, interval=0.2, what="every command settled")

            orders, _execs = venue_view(sim)
            filled = venue_filled(sim)
            for plan in plans:
                at_venue = orders.get(plan.ref, [])
                assert len(at_venue) <= 1, f"{plan.ref} is at the venue twice: {at_venue}"
                assert filled.get(plan.ref, Decimal(0)) <= plan.intended, plan
                if plan.cancelled:
                    working = [o for o in at_venue if o[1] in WORKING]
                    assert working == [], f"{plan.ref} was cancelled but works: {working}"

            # Stop the market's hand: nothing fills after this, so the books can settle.
            assert kill_switch(r, "127.0.0.1", sim.port, reason="race over").global_cancel_sent

            def books_agree() -> bool:
                _orders, venue_execs = venue_view(sim)
                ledger_execs, per_ref = ledger_fills(ledger_db, prefix)
                return ledger_execs == venue_execs and per_ref == venue_filled(sim)

            try:
                poll(books_agree, 120, interval=0.5, what="ledger fills equal to the venue's")
            except AssertionError:
                _orders, venue_execs = venue_view(sim)
                ledger_execs, per_ref = ledger_fills(ledger_db, prefix)
                venue_refs = sim.call(
                    lambda s: {
                        e.exec_id: (e.order_ref, e.order_id, str(e.shares))
                        for e, _c in s.venue.executions(None)
                    }
                )
                engine = sa.create_engine(ledger_db)
                with engine.connect() as conn:
                    rows = conn.execute(
                        sa.text("SELECT execution_id, order_ref, ib_order_id, shares FROM fills")
                    ).all()
                engine.dispose()
                differ = [
                    (
                        r.execution_id,
                        r.order_ref,
                        r.ib_order_id,
                        str(r.shares),
                        venue_refs.get(r.execution_id),
                    )
                    for r in rows
                    if venue_refs.get(r.execution_id, ("",))[0] != r.order_ref
                ]
                assert per_ref == venue_filled(sim), (
                    f"missing {sorted(venue_execs - ledger_execs)}, "
                    f"extra {sorted(ledger_execs - venue_execs)}, refs differ: {differ}"
                )
                raise
        finally:
            current.stop()
