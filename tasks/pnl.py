"""The pnl queue: the books' mark tick (`docs/books.md`).

- `tasks.pnl.mark_tick`, beat every `EPM_PNL_TICK_S` (5 s): marks every position from
  `md:{conid}`, writes the books' columns of `positions_current`, appends `pnl_snapshots`,
  publishes `pl:position:{conid}` / `pl:strategy:{strategy}`, compares with the bridge's
  reqPnLSingle figures (`ib:pnl:{account}:{conid}`) and flags differences over $10.
- `tasks.pnl.expiry_tick`, beat every minute: settles the option positions whose expiry day's
  close has passed (exercise, assignment, worthless; `services.books.expiry`), a no-op before.
- `tasks.pnl.attribution_tick`, beat every 5 minutes: after a session's close (+15 min) writes
  that day's P&L by signal to `{data_dir}/attribution/{day}.json`, once per day.
- `tasks.pnl.prune_snapshots_tick`, beat hourly: `pnl_snapshots` kept whole for
  `EPM_PNL_SNAPSHOT_FULL_DAYS`, then one a minute until `EPM_PNL_SNAPSHOT_MINUTE_DAYS`.
- `tasks.pnl.netting_tick`, beat every minute: delta, gamma, vega, theta per underlying from
  positions and live greeks into `risk:net:{underlying}` (`services.books.netting`).

The tick is idempotent (it recomputes from the stores; a snapshot repeated at the same time is
kept once), so a redelivered or doubled tick is harmless; a late one is dropped (`expires`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from celery import Task

from models.expiry import is_closing_quote
from models.market import MarketSnapshot
from models.snapshot_retention import Retention
from services.books.attribution_eod import attribution_tick as write_due_days
from services.books.expiry import settle_expiries
from services.books.marks import mark_books
from services.books.netting import net_tick
from services.books.retention import prune_snapshots
from tasks.app import TASK_OPTIONS, Outcome, Stores, celery_app, run_through_outages

# The bridge's reqPnLSingle hashes (`ibgateway_bridge.outbox.PNL_SINGLE_KEY`), spelled here so
# the tasks do not import the bridge; one older than this is not compared.
IB_PNL_SINGLE_PATTERN = "ib:pnl:*:*"
IB_PNL_MAX_AGE = timedelta(seconds=60)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def market_reader(stores: Stores) -> Callable[[int], MarketSnapshot | None]:
    """`md:{conid}` as a snapshot (None when the hash is missing or has no time stamp)."""

    def read(con_id: int) -> MarketSnapshot | None:
        raw = stores.redis.hgetall(f"md:{con_id}")
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return MarketSnapshot.from_fields(con_id, fields) if fields else None

    return read


def ib_unrealized(stores: Stores) -> Mapping[int, Decimal]:
    """IB's unrealized P&L per contract (summed over accounts) from fresh reqPnLSingle hashes."""
    out: dict[int, Decimal] = {}
    for key in stores.redis.scan_iter(match=IB_PNL_SINGLE_PATTERN, count=500):
        con_part = _text(key).rsplit(":", 1)[-1]
        if not con_part.isdigit():
            continue
        raw = stores.redis.hgetall(key)
        fields = {_text(k): _text(v) for k, v in raw.items()}
        try:
            ts = datetime.fromisoformat(fields.get("ts", ""))
            value = Decimal(fields.get("unrealized", ""))
        except (ValueError, InvalidOperation):
            continue
        if ts.tzinfo is None or stores.now - ts > IB_PNL_MAX_AGE or not value.is_finite():
            continue
        out[int(con_part)] = out.get(int(con_part), Decimal(0)) + value
    return out


def run_mark(stores: Stores) -> Outcome:
    """One mark tick on `stores` (what beat runs, and what tests call)."""
    return mark_books(
        stores.engine, market_reader(stores), ib_unrealized(stores), stores.redis, stores.now
    ).as_dict()


@celery_app.task(name="tasks.pnl.mark_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def mark_tick(self: Task, pnl_retry: object = None) -> Outcome:
    """Beat, every 5 s: mark the books and publish them."""
    return run_through_outages(
        self, run_mark, name="pnl", retry_state=pnl_retry, state_kwarg="pnl_retry"
    )


def closing_reader(stores: Stores) -> Callable[[int, datetime], Decimal | None]:
    """The underlying's closing price from `md:{conid}`: its last trade (at the close, the
    closing print), else the mid of a two-sided quote, if the hash was updated around the close
    (`models.expiry.is_closing_quote`); None otherwise."""
    read = market_reader(stores)

    def price(con_id: int, close: datetime) -> Decimal | None:
        snapshot = read(con_id)
        if snapshot is None or not is_closing_quote(snapshot.as_of, close):
            return None
        return snapshot.last if snapshot.last is not None else snapshot.mid

    return price


def run_expiry(stores: Stores) -> Outcome:
    """One expiry run on `stores` (what beat runs, and what tests call)."""
    return settle_expiries(stores.engine, closing_reader(stores), stores.now).as_dict()


@celery_app.task(name="tasks.pnl.expiry_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def expiry_tick(self: Task, expiry_retry: object = None) -> Outcome:
    """Beat, every minute: settle expired option positions (a no-op before the close)."""
    return run_through_outages(
        self, run_expiry, name="expiry", retry_state=expiry_retry, state_kwarg="expiry_retry"
    )


def run_netting(stores: Stores) -> Outcome:
    """One netting run on `stores` (what beat runs, and what tests call)."""
    return net_tick(stores.engine, stores.redis, stores.now)


@celery_app.task(name="tasks.pnl.netting_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def netting_tick(self: Task, netting_retry: object = None) -> Outcome:
    """Beat, every minute: net the greeks per underlying into `risk:net:{underlying}`."""
    return run_through_outages(
        self, run_netting, name="netting", retry_state=netting_retry, state_kwarg="netting_retry"
    )


def run_attribution(stores: Stores) -> Outcome:
    """One end-of-day attribution run on `stores` (what beat runs, and what tests call)."""
    root = stores.settings.data_dir / "attribution"
    written = write_due_days(stores.engine, root, stores.now)
    return {"written": [run.as_dict() for run in written]}


@celery_app.task(name="tasks.pnl.attribution_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def attribution_tick(self: Task, attribution_retry: object = None) -> Outcome:
    """Beat, every 5 minutes: write each closed session day's attribution once."""
    return run_through_outages(
        self,
        run_attribution,
        name="attribution",
        retry_state=attribution_retry,
        state_kwarg="attribution_retry",
    )


def run_prune(stores: Stores) -> Outcome:
    """One retention run of `pnl_snapshots` on `stores`."""
    retention = Retention(
        stores.settings.pnl_snapshot_full_days, stores.settings.pnl_snapshot_minute_days
    )
    return prune_snapshots(stores.engine, stores.redis, retention, stores.now).as_dict()


@celery_app.task(name="tasks.pnl.prune_snapshots_tick", **TASK_OPTIONS)  # type: ignore[untyped-decorator]
def prune_snapshots_tick(self: Task, prune_retry: object = None) -> Outcome:
    """Beat, hourly: thin and delete old `pnl_snapshots`."""
    return run_through_outages(
        self, run_prune, name="pnl_prune", retry_state=prune_retry, state_kwarg="prune_retry"
    )
