"""The alert tick is scheduled, routed and registered the way beat and the workers find it."""

from __future__ import annotations

import celeryconfig


def test_the_alert_tick_is_on_beat_on_the_recon_queue_and_registered() -> None:
    import tasks.alerts  # noqa: F401 - registers the task
    from tasks.app import celery_app

    (entry,) = [
        e for e in celeryconfig.beat_schedule.values() if e["task"] == "tasks.alerts.alert_tick"
    ]
    assert "tasks.alerts" in celeryconfig.imports
    assert "tasks.alerts.alert_tick" in celery_app.tasks
    route = celery_app.amqp.router.route({}, "tasks.alerts.alert_tick")
    assert route["queue"].name == "recon"
    schedule = float(str(entry["schedule"]))
    # A late tick is dropped, not run in a pile: it expires within one period.
    assert 0 < schedule <= float(str(entry["options"]["expires"]))  # type: ignore[index]
