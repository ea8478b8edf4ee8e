"""The orders queue: `tasks.orders.plan_intent` and beat's `tasks.orders.scheduler_tick`.

Celery shells over `services.orders` on `tasks.app`'s store-outage policy. The venue port
(`services.orders.venue.Venue`) is filled in here over the bridge's client API: IB order ids from
`ib:order:last_id` (floored by the ledger's highest id), placements and market-data
subscriptions queued on `ib:commands`, snapshots read from `md:{conid}`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery import Task
from sqlalchemy.engine import Engine

import ibgateway_bridge.client_api as client_api
from epm.calendar import session_close, trading_day
from epm.clock import session_clock
from models.clock import SessionClock
from models.intent import IntentStatus
from models.risk import AccountFacts
from services.orders.flatten import flatten_expiring
from services.orders.plan_intent import plan_admitted
from services.orders.reprice import reprice_pegged
from services.orders.send_due import send_due
from store import intent_life
from store.db import write_transaction
from store.order_ids import highest_ib_order_id
from tasks.app import TASK_OPTIONS, Outcome, Stores, celery_app, run_through_outages

# One scheduler at a time allocates and queues placements (see `Venue.sending`); the lock
# expires by itself should its holder die.
SEND_LOCK_KEY = "orders:send_lock"
SEND_LOCK_MS = 10_000
SEND_LOCK_WAIT_S = 0.5
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A VALIDATED intent older than this is planned by the tick (its plan task was lost).
PLAN_SWEEP_AFTER = timedelta(seconds=5)


class BridgeVenue:
    """`Venue` over the bridge's command stream and the market data it publishes."""

    def __init__(self, engine: Engine, client: redis.Redis, client_id: int) -> None:
        self._engine = engine
        self._redis = client
        self._client_id = client_id

    @contextmanager
    def sending(self) -> Iterator[bool]:
        token = uuid.uuid4().hex
        # Another scheduler's turn lasts tens of milliseconds: wait that long for ours rather
        # than leave a due child to the next tick.
        deadline = time.monotonic() + SEND_LOCK_WAIT_S
        while True:
            held = bool(self._redis.set(SEND_LOCK_KEY, token, nx=True, px=SEND_LOCK_MS))
            if held or time.monotonic() >= deadline:
                break
            time.sleep(0.005)
        try:
            yield held
        finally:
            if held:
                self._redis.eval(_RELEASE, 1, SEND_LOCK_KEY, token)

    def _floor(self) -> int:
        with self._engine.connect() as conn:
            return highest_ib_order_id(conn, self._client_id)

    def allocate_id(self) -> int:
        """A fresh id above every id the ledger knows for this client.

        Redis can lose the counter, and a new gateway (a reset paper account) starts its ids
        low again: the bridge then seeds the counter from the venue's nextValidId, below ids
        already in the ledger. An id the ledger holds is never handed out twice: the counter is
        re-seeded above the ledger's highest and the id allocated again.
        """
        allocated = client_api.allocate_order_id(
            self._redis, client_id=self._client_id, floor=self._floor
        )
        floor = self._floor()
        if allocated > floor:
            return allocated
        client_api.reseed_order_ids(
            floor, client=self._redis, client_id=self._client_id, raise_existing=True
        )
        return client_api.allocate_order_id(
            self._redis, client_id=self._client_id, floor=self._floor
        )

    def place(
        self,
        ib_order_id: int,
        client_order_id: str,
        contract: Mapping[str, Any],
        order: Mapping[str, Any],
        strategy: str | None,
    ) -> None:
        client_api.enqueue_place(
            ib_order_id, client_order_id, contract, order, strategy, client=self._redis
        )

    def modify(
        self,
        ib_order_id: int,
        version: int,
        client_order_id: str,
        contract: Mapping[str, Any],
        order: Mapping[str, Any],
        strategy: str | None,
    ) -> None:
        client_api.enqueue_modify(
            ib_order_id, version, client_order_id, contract, order, strategy, client=self._redis
        )

    def cancel(self, ib_order_id: int) -> None:
        client_api.enqueue_cancel(ib_order_id, client=self._redis)

    def market(self, con_id: int) -> Mapping[str, str]:
        raw = self._redis.hgetall(f"md:{con_id}")
        return {_text(k): _text(v) for k, v in raw.items()}

    def subscribe(
        self, con_id: int, requester: str, contract: Mapping[str, Any], depth: bool = False
    ) -> None:
        spec = {k: v for k, v in contract.items() if k != "con_id"}
        client_api.enqueue_subscribe(
            con_id,
            requester,
            {**spec, "con_id": con_id},
            depth=depth,
            bars=True,
            client=self._redis,
        )

    def request_contract(self, contract: Mapping[str, Any]) -> None:
        client_api.enqueue_contract_details(contract, client=self._redis)

    def what_if_answer(self, client_order_id: str) -> Mapping[str, str]:
        return client_api.what_if_answer(client_order_id, client=self._redis)

    def account(self, now: datetime) -> AccountFacts | None:
        from epm.settings import get_settings
        from services.risk.account import account_facts

        settings = get_settings()
        return account_facts(
            self._redis,
            now=now,
            mode=settings.headroom_check,
            client_id=settings.ib_client_id_account,
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _venue(stores: Stores) -> BridgeVenue:
    return BridgeVenue(stores.engine, stores.redis, stores.settings.ib_client_id_orders)


def _clock(stores: Stores) -> SessionClock:
    """The session's clock for this task's time rules (`EPM_CLOCK`, `epm.clock`)."""
    return session_clock(stores.settings, stores.redis, stores.now)


def _plan(stores: Stores, intent_id: int) -> Outcome:
    venue = _venue(stores)
    clock = _clock(stores)
    planned = plan_admitted(
        stores.engine,
        venue,
        intent_id,
        client_id=stores.settings.ib_client_id_orders,
        now=stores.now,
        clock=clock,
    )
    if planned.outcome == "planned":
        # The children due now go out from here, not a beat period later (the tick still sends
        # whatever this could not: a held child, or the turn taken by another scheduler).
        send_due(stores.engine, venue, datetime.now(UTC), intent_id=intent_id, clock=clock)
    return {
        "outcome": planned.outcome,
        "intent_id": intent_id,
        "children": planned.children,
        "template": planned.template,
        "reason": planned.reason,
    }


@celery_app.task(name="tasks.orders.plan_intent", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def plan_intent(self: Task, intent_id: int, orders_retry: object = None) -> Outcome:
    """Plan an admitted intent's children (idempotent: only a VALIDATED intent is planned)."""
    return run_through_outages(
        self,
        lambda stores: _plan(stores, int(intent_id)),
        name="orders",
        retry_state=orders_retry,
        state_kwarg="orders_retry",
        describe=lambda: {"intent_id": str(intent_id)},
    )


def _tick(stores: Stores) -> Outcome:
    venue = _venue(stores)
    clock = _clock(stores)
    with write_transaction(stores.engine) as conn:
        waiting = [
            row.id
            for row in intent_life.with_status(conn, [IntentStatus.VALIDATED.value])
            if stores.now - row.updated_at > PLAN_SWEEP_AFTER
        ]
    for intent_id in waiting:
        plan_admitted(
            stores.engine,
            venue,
            intent_id,
            client_id=stores.settings.ib_client_id_orders,
            now=stores.now,
            clock=clock,
        )
    result = send_due(stores.engine, venue, stores.now, clock=clock)
    repriced = reprice_pegged(stores.engine, venue, stores.now)
    return {
        "planned_late": waiting,
        "sent": result.sent,
        "resent": result.resent,
        "held": result.held,
        "skipped": result.skipped,
        "finished_intents": result.finished_intents,
        "repriced": repriced,
    }


@celery_app.task(name="tasks.orders.scheduler_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def scheduler_tick(self: Task, orders_retry: object = None) -> Outcome:
    """Beat, about every second: plan lost intents, send the due children, settle intents."""
    return run_through_outages(
        self,
        _tick,
        name="orders",
        retry_state=orders_retry,
        state_kwarg="orders_retry",
    )


def _flatten(stores: Stores) -> Outcome:
    # The session rule follows the session's clock (the venue's under an accelerated
    # simulator, `EPM_CLOCK=venue`); the intents it submits are stamped with the wall clock.
    clock = _clock(stores)
    session = clock.session_at(stores.now)
    today = trading_day(session)
    submitted = flatten_expiring(
        stores.engine,
        _venue(stores),
        stores.redis,
        stores.now,
        today=today,
        close=session_close(today),
        client_id=stores.settings.ib_client_id_orders,
        clock=clock,
    )
    return {"submitted": submitted, "session_time": session.isoformat()}


@celery_app.task(name="tasks.orders.flatten_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def flatten_tick(self: Task, orders_retry: object = None) -> Outcome:
    """Beat: close 0DTE positions from 5 minutes before the session's close."""
    return run_through_outages(
        self, _flatten, name="orders", retry_state=orders_retry, state_kwarg="orders_retry"
    )
