"""The broker settings follow EPM_BROKER_URL: on RabbitMQ a publish waits for the broker's
confirm, the delivery guarantees (acks late, requeue on a lost worker, one message per process)
are the same on both brokers, and Redis stays the store. RabbitMQ unreachable skips the broker
tests with the reason, or fails them under EPM_REQUIRE_SERVICES=1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.integration import brokers
from tests.integration.intake_procs import REPO, process_env

_PRINT = (
    "import json, celeryconfig as c; print(json.dumps({'url': c.broker_url, "
    "'opts': c.broker_transport_options, 'acks_late': c.task_acks_late, "
    "'reject': c.task_reject_on_worker_lost, 'prefetch': c.worker_prefetch_multiplier, "
    "'backend': c.result_backend}))"
)


def _settings(**env: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PRINT],
        cwd=REPO,
        env=process_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    ("env", "confirm"),
    [
        ({"EPM_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}, True),
        ({"EPM_BROKER_URL": "pyamqp://guest:guest@127.0.0.1:5672//"}, True),
        ({"EPM_REDIS_URL": "redis://127.0.0.1:6379/9"}, False),
    ],
)
def test_publisher_confirms_on_rabbitmq_only_and_the_same_guarantees_on_both(
    env: dict[str, str], confirm: bool
) -> None:
    settings = _settings(**env, EPM_VISIBILITY_TIMEOUT="120")
    assert settings["url"] == next(iter(env.values()))
    opts = settings["opts"]
    assert isinstance(opts, dict)
    assert opts.get("confirm_publish", False) is confirm
    assert opts["visibility_timeout"] == 120  # read by Redis only; the retry cap uses it too
    assert settings["acks_late"] is True and settings["reject"] is True
    assert settings["prefetch"] == 1
    assert settings["backend"] is None  # RabbitMQ is the broker only; no result store


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rabbitmq_unreachable_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EPM_REQUIRE_SERVICES", raising=False)
    monkeypatch.setattr(brokers, "AMQP_PORT", _closed_port())
    skipped = pytest.raises(
        pytest.skip.Exception, match=r"RabbitMQ at 127\.0\.0\.1:\d+ unreachable"
    )
    with skipped, brokers.rabbitmq_vhost():
        pass


def test_rabbitmq_unreachable_fails_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EPM_REQUIRE_SERVICES", "1")
    monkeypatch.setattr(brokers, "AMQP_PORT", _closed_port())
    with (
        pytest.raises(pytest.fail.Exception, match="EPM_REQUIRE_SERVICES=1"),
        brokers.rabbitmq_vhost(),
    ):
        pass
