"""Celery settings: routes per queue, exact JSON round trips of money and time, acks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from kombu.serialization import dumps, loads, prepare_accept_content

import celeryconfig


def test_task_routes_send_each_module_to_its_queue() -> None:
    for queue in celeryconfig.Queue:
        assert celeryconfig.task_routes[f"tasks.{queue.value}.*"] == {"queue": queue.value}
    declared = {q.name for q in celeryconfig.task_queues}
    assert declared == {q.value for q in celeryconfig.Queue}


def test_json_serializer_round_trips_decimal_exactly() -> None:
    payload = {
        "price": Decimal("0.1234567891234567891"),
        "qty": Decimal("-100"),
        "tiny": Decimal("1E-12"),
        "nested": [{"fee": Decimal("1.005")}],
    }
    content_type, encoding, body = dumps(payload, serializer=celeryconfig.task_serializer)
    back = loads(
        body, content_type, encoding, accept=prepare_accept_content(celeryconfig.accept_content)
    )
    assert back == payload
    assert isinstance(back["price"], Decimal)
    assert str(back["price"]) == "0.1234567891234567891"
    assert isinstance(back["nested"][0]["fee"], Decimal)


def test_json_serializer_round_trips_aware_datetimes() -> None:
    now = datetime(2026, 11, 27, 17, 59, 59, 123456, tzinfo=UTC)
    eastern = datetime(2026, 11, 27, 12, 59, tzinfo=timezone(timedelta(hours=-5)))
    content_type, encoding, body = dumps(
        {"ts": now, "et": eastern}, serializer=celeryconfig.task_serializer
    )
    back = loads(
        body, content_type, encoding, accept=prepare_accept_content(celeryconfig.accept_content)
    )
    assert back["ts"] == now and back["ts"].tzinfo is not None
    assert back["et"] == eastern and back["et"].utcoffset() == timedelta(hours=-5)


def test_delivery_settings_favour_repeating_over_losing_work() -> None:
    assert celeryconfig.task_acks_late is True
    assert celeryconfig.task_reject_on_worker_lost is True
    assert celeryconfig.worker_prefetch_multiplier == 1
    assert celeryconfig.accept_content == ["json"]
    assert celeryconfig.timezone == "UTC"


def test_every_task_name_the_bridge_publishes_is_a_registered_task() -> None:
    """The bridge publishes by name (it never imports tasks): a name without a task would be a
    message no worker ever takes."""
    import ibgateway_bridge.payloads as payloads
    from tasks.app import celery_app

    celery_app.loader.import_default_modules()
    names = {v for k, v in vars(payloads).items() if k.startswith("TASK_") and isinstance(v, str)}
    assert len(names) >= 8
    assert names <= set(celery_app.tasks), sorted(names - set(celery_app.tasks))
