"""epm's log lines: JSON objects with the work's ids, exact money, readable in a terminal, to a
file when asked, and a clear refusal of a bad EPM_LOG_* setting."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from epm.logging import (
    LogConfigError,
    bound_ids,
    configure_logging,
    get_logger,
    ids_from_call,
    logs_diverted_to,
)

REPO = Path(__file__).resolve().parents[2]
# Created at import, before any configuration, like every module-level `log` in epm.
log = get_logger("tests.unit.test_logging")


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("EPM_LOG_FORMAT", "EPM_LOG_JSON", "EPM_LOG_FILE", "EPM_LOG_LEVEL"):
        monkeypatch.delenv(var, raising=False)
    yield
    # fd 2 itself: pytest's per-test capture of the file descriptor still sees later lines.
    configure_logging(stream=sys.__stderr__)


def _json_lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_line_carries_bound_ids_exact_money_and_iso_times() -> None:
    buf = io.StringIO()
    configure_logging("INFO", fmt="json", stream=buf)
    with bound_ids(signal_id="sig-1", strategy="0DTE_Scalp", client_id=1, order_id=None):
        log.info(
            "order_submit",
            ib_order_id=12345,
            payload={"limit": Decimal("1.10"), "qty": Decimal("3")},
            at=datetime(2026, 11, 27, 15, 0, tzinfo=UTC),
        )
    log.info("after")
    first, after = _json_lines(buf)
    assert first["event"] == "order_submit"
    assert first["signal_id"] == "sig-1" and first["strategy"] == "0DTE_Scalp"
    assert first["client_id"] == 1
    # The blueprint's order_id is IB's order id, filled in from epm's ib_order_id.
    assert first["order_id"] == 12345
    assert first["payload"] == {"limit": "1.10", "qty": "3"}  # strings, never floats
    assert first["at"] == "2026-11-27T15:00:00+00:00"
    assert first["level"] == "info" and first["logger"] == "tests.unit.test_logging"
    assert first["timestamp"].endswith("Z")
    assert "signal_id" not in after and "order_id" not in after
    assert buf.getvalue().splitlines()[0].startswith('{"event": "order_submit"')


def test_standard_library_lines_share_the_format_and_the_bound_ids() -> None:
    buf = io.StringIO()
    configure_logging("INFO", fmt="json", stream=buf)
    with bound_ids(task_id="t-1", signal_id="sig-2"):
        logging.getLogger("celery.app.trace").info("Task %s succeeded", "x")
    logging.getLogger("kombu").debug("below the level")
    (line,) = _json_lines(buf)
    assert line["event"] == "Task x succeeded"
    assert line["logger"] == "celery.app.trace"
    assert line["task_id"] == "t-1" and line["signal_id"] == "sig-2"


def test_reconfiguring_once_is_not_adding_a_second_handler() -> None:
    configure_logging("INFO", fmt="json", stream=io.StringIO())
    buf = io.StringIO()
    configure_logging("INFO", fmt="json", stream=buf)
    logging.getLogger("celery").warning("once")
    assert len(buf.getvalue().splitlines()) == 1


def test_exception_is_one_json_line_with_its_traceback() -> None:
    buf = io.StringIO()
    configure_logging("INFO", fmt="json", stream=buf)
    try:
        raise ValueError("bad fill")
    except ValueError:
        log.exception("ledger.failed", exec_id="e1")
    (line,) = _json_lines(buf)
    assert line["level"] == "error" and line["exec_id"] == "e1"
    assert "ValueError: bad fill" in line["exception"]


def test_level_filters_epm_and_library_lines() -> None:
    buf = io.StringIO()
    configure_logging("WARNING", fmt="json", stream=buf)
    get_logger("tests.level").info("quiet")
    logging.getLogger("celery").info("quiet too")
    get_logger("tests.level").warning("loud")
    assert [line["event"] for line in _json_lines(buf)] == ["loud"]


def test_auto_format_is_json_on_a_pipe_and_readable_on_a_terminal() -> None:
    pipe = io.StringIO()
    assert configure_logging("INFO", stream=pipe).fmt == "auto"
    log.info("piped", signal_id="s")
    assert json.loads(pipe.getvalue())["event"] == "piped"

    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as tty:
        configure_logging("INFO", stream=tty)
        log.info("on_a_terminal", signal_id="s-9")
        configure_logging("INFO", stream=io.StringIO())
        shown = os.read(leader, 4096).decode()
    os.close(leader)
    assert "on_a_terminal" in shown and "signal_id" in shown and "s-9" in shown
    assert not shown.lstrip().startswith("{")


def test_console_format_forced_is_plain_key_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPM_LOG_FORMAT", "console")
    buf = io.StringIO()
    configure_logging("INFO", stream=buf)
    log.info("relay.forwarded", signal_id="s-1")
    text = buf.getvalue()
    assert "relay.forwarded" in text and "signal_id=s-1" in text
    assert "\x1b[" not in text  # no colour codes into a file or pipe


def test_legacy_json_switch_still_means_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPM_LOG_JSON", "1")
    buf = io.StringIO()
    assert configure_logging("INFO", stream=buf).fmt == "json"


def test_log_file_receives_the_lines_and_stderr_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "logs" / "bridge.jsonl"
    monkeypatch.setenv("EPM_LOG_FILE", str(path))
    config = configure_logging("INFO")
    assert config.file == path
    log.info("to_the_file", client_id=2)
    logging.getLogger("kombu").warning("library line")
    events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert events == ["to_the_file", "library line"]  # a file is no terminal: JSON
    captured = capfd.readouterr()
    assert "to_the_file" not in captured.err + captured.out


def test_logs_diverted_while_a_view_is_drawn_then_back(tmp_path: Path) -> None:
    terminal = io.StringIO()
    configure_logging("INFO", fmt="json", stream=terminal)
    with logs_diverted_to(tmp_path / "view.log") as path:
        log.info("during_the_view")
    log.info("after_the_view")
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == [
        "during_the_view"
    ]
    assert [line["event"] for line in _json_lines(terminal)] == ["after_the_view"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "xml"}, "EPM_LOG_FORMAT must be json, console or auto, not 'xml'"),
        ({"level": "LOUD"}, "EPM_LOG_LEVEL must be one of"),
        ({"file": "/proc/no-such-dir/x.log"}, "EPM_LOG_FILE '/proc/no-such-dir/x.log' cannot"),
    ],
)
def test_bad_setting_is_a_clear_error(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(LogConfigError, match=message.replace("(", r"\(")):
        configure_logging(**kwargs)  # type: ignore[arg-type]


def test_epm_command_refuses_a_bad_log_format_without_a_traceback() -> None:
    env = {**os.environ, "EPM_LOG_FORMAT": "yaml", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "epm", "intents", "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "EPM_LOG_FORMAT must be json, console or auto, not 'yaml'" in done.stderr
    assert "Traceback" not in done.stderr


def test_ids_from_a_ledger_payload_and_named_arguments() -> None:
    payload = {
        "exec_id": "0000e.01",
        "order_id": 11,
        "client_id": 1,
        "perm_id": 9001,
        "order_ref": "7-a",
        "price": "190.01",
    }
    found = ids_from_call(("payload", "ledger_retry"), [payload], {})
    assert found == {
        "exec_id": "0000e.01",
        "order_id": 11,
        "client_id": 1,
        "perm_id": 9001,
        "client_order_id": "7-a",
    }
    assert ids_from_call(("intent_id", "orders_retry"), [42], {}) == {"intent_id": 42}


def test_ids_from_an_intent_given_as_json_text() -> None:
    text = json.dumps({"signal_id": "s-7", "strategy": "Momentum_EQ", "quantity": "5"})
    assert ids_from_call(("payload",), [text], {}) == {
        "signal_id": "s-7",
        "strategy": "Momentum_EQ",
    }


@pytest.mark.parametrize(
    "junk",
    ["{not json", "[1, 2]", 17, None, ["a"], {"signal_id": True}, {"strategy": ""}, "{" * 70_000],
)
def test_ids_from_junk_are_nothing(junk: object) -> None:
    assert ids_from_call(("payload",), [junk], {}) == {}


def test_long_id_is_cut_to_a_bounded_length() -> None:
    found = ids_from_call(("payload",), [{"signal_id": "x" * 5_000}], {})
    assert found == {"signal_id": "x" * 200}


@pytest.mark.parametrize(
    ("argv", "setting", "value", "message"),
    [
        (
            ["-m", "ibgateway_bridge"],
            "EPM_LOG_LEVEL",
            "LOUD",
            "EPM_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'LOUD'",
        ),
        # A worker's level is Celery's --loglevel; its format and file are epm's.
        (
            ["-m", "celery", "-A", "tasks.app", "worker", "-Q", "intake", "-c", "1"],
            "EPM_LOG_FORMAT",
            "xml",
            "EPM_LOG_FORMAT must be json, console or auto, not 'xml'",
        ),
    ],
    ids=["bridge", "celery-worker"],
)
def test_processes_outside_the_cli_refuse_a_bad_log_setting_too(
    argv: list[str], setting: str, value: str, message: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPM_")}
    env.update(
        {setting: value},
        # Nothing listens there: the refusal comes before any connection.
        EPM_REDIS_URL="redis://127.0.0.1:1/0",
        EPM_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(REPO),
    )
    done = subprocess.run(
        [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
