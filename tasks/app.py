"""The Celery application; `celery -A tasks.app worker -Q ledger` runs a worker."""

from __future__ import annotations

from celery import Celery

# Every task module is listed so a worker on any queue knows every task name; a deployed task is
# never renamed, because in-flight messages carry the name.
TASK_MODULES: list[str] = ["tasks.intake", "tasks.ledger"]

celery_app = Celery("epm", include=TASK_MODULES)
celery_app.config_from_object("celeryconfig")

app = celery_app
