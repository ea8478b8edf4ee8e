"""The gauges of `epm metrics`, computed at scrape time from the ledger, Redis and the broker.

Computed, not observed: a gauge such as the number of working intents is changed by many worker
processes, and only the stores know its value exactly. A source that cannot be read is left out
of that scrape and counted in `epm_metrics_scrape_errors` rather than failing the whole page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis
from kombu.connection import Connection as BrokerConnection
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from epm.logging import get_logger
from epm.metrics.registry import GAUGES
from models.alerts import (
    CLIENT_ID_COLLISION,
    CONNECTED_STATES,
    URGENT_LEVELS,
    AlertFacts,
    AlertThresholds,
    conditions,
)
from services.alerts.facts import BRIDGE_STATE_KEY, bridge_facts
from store import ops_facts

log = get_logger(__name__)

# Written by the bridge (`ibgateway_bridge.commands`), spelled here so the exporter does not
# import the bridge's socket code.
HALT_GLOBAL_KEY = "epm:halt:global"
HALT_PATTERNS = {"strategy": "epm:halt:strategy:*", "instrument": "epm:halt:instrument:*"}
BRIDGE_REJECT_STREAM = "epm:bridge:rejects"
# The newest bridge refusals counted per scrape (the stream itself keeps up to 100,000).
_REJECT_SCAN = 5000


def _family(name: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, GAUGES[name], labels=list(labels))


def _num(value: Decimal | int | float) -> float:
    return float(value)


class OpsCollector(Collector):
    """One scrape: every family of `registry.GAUGES`, each possibly empty."""

    def __init__(
        self,
        engine: Engine,
        client: redis.Redis,
        broker_url: str,
        queues: Iterable[str],
        clock: Callable[[], datetime],
        thresholds: AlertThresholds | None = None,
    ) -> None:
        self.engine = engine
        self.redis = client
        self.broker_url = broker_url
        self.queues = tuple(queues)
        self.clock = clock
        self.thresholds = thresholds or AlertThresholds()

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        fam = {
            "exec_orders_active_total": _family("exec_orders_active_total", ["strategy"]),
            "exec_child_orders_in_flight": _family("exec_child_orders_in_flight"),
            "exec_positions_open": _family("exec_positions_open", ["security", "con_id"]),
            "exec_pnl_unrealized": _family("exec_pnl_unrealized", ["strategy"]),
            "exec_urgent_unfilled_oldest_seconds": _family(
                "exec_urgent_unfilled_oldest_seconds", ["strategy"]
            ),
            "epm_recon_position_difference": _family(
                "epm_recon_position_difference", ["security", "con_id"]
            ),
            "epm_rejects": _family("epm_rejects", ["source", "reason"]),
            "epm_risk_events_open": _family("epm_risk_events_open", ["kind", "severity"]),
            "epm_halted": _family("epm_halted", ["scope", "key"]),
            "epm_bridge_pacing_backlog": _family("epm_bridge_pacing_backlog", ["connection"]),
            "epm_bridge_session_up": _family("epm_bridge_session_up", ["client_id"]),
            "epm_bridge_client_id_in_use": _family("epm_bridge_client_id_in_use", ["client_id"]),
            "epm_bridge_heartbeat_age_seconds": _family("epm_bridge_heartbeat_age_seconds"),
            "epm_bridge_reconnects": _family("epm_bridge_reconnects", ["client_id"]),
            "epm_celery_queue_depth": _family("epm_celery_queue_depth", ["queue"]),
        }
        errors = _family("epm_metrics_scrape_errors", ["source"])
        for source, part in (
            ("ledger", self._ledger),
            ("redis", self._redis),
            ("broker", self._broker),
        ):
            try:
                part(fam, now)
                errors.add_metric([source], 0)
            except Exception as e:  # one unreadable store must not blank the others
                log.warning("metrics.source_failed", source=source, error=repr(e)[:300])
                errors.add_metric([source], 1)
        yield from fam.values()
        yield errors

    def _ledger(self, fam: dict[str, GaugeMetricFamily], now: datetime) -> None:
        with self.engine.connect() as conn:
            active = ops_facts.active_intents_by_strategy(conn)
            in_flight = ops_facts.child_orders_in_flight(conn)
            positions = ops_facts.open_positions(conn)
            unrealized = ops_facts.unrealized_by_strategy(conn)
            urgent = ops_facts.active_intents(conn, URGENT_LEVELS)
            gaps = ops_facts.latest_position_gaps(conn)
            rejects = ops_facts.rejects_by_reason(conn)
            risk = ops_facts.risk_events_by_kind(conn)
        for strategy, count in sorted(active.items()):
            fam["exec_orders_active_total"].add_metric([strategy], count)
        fam["exec_child_orders_in_flight"].add_metric([], in_flight)
        for p in positions:
            fam["exec_positions_open"].add_metric(
                [p.symbol or str(p.con_id), str(p.con_id)], _num(p.quantity)
            )
        for strategy, amount in sorted(unrealized.items()):
            fam["exec_pnl_unrealized"].add_metric([strategy], _num(amount))
        oldest: dict[str, float] = {}
        for intent in urgent:
            age = max((now - intent.received_at).total_seconds(), 0.0)
            oldest[intent.strategy] = max(oldest.get(intent.strategy, 0.0), age)
        for strategy, age in sorted(oldest.items()):
            fam["exec_urgent_unfilled_oldest_seconds"].add_metric([strategy], age)
        for g in gaps:
            fam["epm_recon_position_difference"].add_metric(
                [g.symbol or str(g.con_id), str(g.con_id)], _num(g.venue - g.ledger)
            )
        for (source, reason), count in sorted(rejects.items()):
            fam["epm_rejects"].add_metric([source, reason], count)
        for (kind, severity), count in sorted(risk.items()):
            fam["epm_risk_events_open"].add_metric([kind, severity], count)

    def _redis(self, fam: dict[str, GaugeMetricFamily], now: datetime) -> None:
        r = self.redis
        if r.get(HALT_GLOBAL_KEY):
            fam["epm_halted"].add_metric(["global", ""], 1)
        for scope, pattern in HALT_PATTERNS.items():
            for key in sorted(r.scan_iter(match=pattern, count=500)):
                value = r.get(key)
                if value not in (None, "", "0"):
                    fam["epm_halted"].add_metric([scope, str(key).rsplit(":", 1)[-1]], 1)
        by_reason: dict[str, int] = {}
        refusals: list[tuple[str, dict[str, str]]] = r.xrevrange(  # type: ignore[assignment]
            BRIDGE_REJECT_STREAM, count=_REJECT_SCAN
        )
        for _id, fields in refusals:
            reason = str(fields.get("reason") or "unknown")
            by_reason[reason] = by_reason.get(reason, 0) + 1
        for reason, count in sorted(by_reason.items()):
            fam["epm_rejects"].add_metric(["bridge", reason], count)
        self._bridge(fam, now)

    def _bridge(self, fam: dict[str, GaugeMetricFamily], now: datetime) -> None:
        state: dict[str, str] = self.redis.hgetall(BRIDGE_STATE_KEY)  # type: ignore[assignment]
        bridge = bridge_facts(self.redis)
        if bridge is None:
            return
        for name, value in sorted(state.items()):
            if name.startswith("backlog_") and value.isdigit():
                fam["epm_bridge_pacing_backlog"].add_metric(
                    [name.removeprefix("backlog_")], int(value)
                )
            elif name.startswith("ready_count_client") and value.isdigit():
                session_id = name.removeprefix("ready_count_client")
                fam["epm_bridge_reconnects"].add_metric([session_id], max(int(value) - 1, 0))
        if bridge.heartbeat_at is not None:
            age = max((now - bridge.heartbeat_at).total_seconds(), 0.0)
            fam["epm_bridge_heartbeat_age_seconds"].add_metric([], age)
        collisions = {
            a.key
            for a in conditions(AlertFacts(bridge=bridge), now, self.thresholds)
            if a.rule is CLIENT_ID_COLLISION
        }
        stale = bridge.heartbeat_at is None or (
            (now - bridge.heartbeat_at).total_seconds() > self.thresholds.heartbeat_stale_s
        )
        for client_id, session in sorted(bridge.sessions.items()):
            up = session in CONNECTED_STATES and not stale and not bridge.stopped
            fam["epm_bridge_session_up"].add_metric([str(client_id)], 1 if up else 0)
            taken = 1 if str(client_id) in collisions else 0
            fam["epm_bridge_client_id_in_use"].add_metric([str(client_id)], taken)

    def _broker(self, fam: dict[str, GaugeMetricFamily], now: datetime) -> None:
        with BrokerConnection(self.broker_url, connect_timeout=2) as conn:  # type: ignore[no-untyped-call]
            for queue in self.queues:
                fam["epm_celery_queue_depth"].add_metric([queue], _depth(conn, queue))


def _depth(conn: Any, queue: str) -> int:
    """Messages waiting on `queue`; a queue the broker does not know yet holds none."""
    channel = conn.channel()
    try:
        ok = channel.queue_declare(queue=queue, passive=True)
        return int(ok.message_count)
    except conn.channel_errors:
        return 0
    finally:
        try:
            channel.close()
        except conn.connection_errors + conn.channel_errors:
            pass
