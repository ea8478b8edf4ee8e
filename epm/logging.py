"""Structured logs (structlog): one JSON object per line in production, readable lines in a
terminal, and the ids of the work (signal_id, strategy, order_id, client_id, Celery's task_id)
on every line written while that work runs.

Switches, read by `configure_logging` (every epm process calls it once at start; a Celery worker
through the `setup_logging` signal, so Celery's own lines are rendered the same way):

- `EPM_LOG_FORMAT`: `json`, `console` or `auto` (the default): JSON unless the log stream is a
  terminal. A process under honcho, systemd or a supervisor writes to a pipe or a file, so
  production gets JSON without a setting; a developer's terminal gets readable lines.
  `EPM_LOG_JSON=1` (the older switch) still means `json`.
- `EPM_LOG_FILE`: append the lines to this file instead of stderr. A process that draws a live
  terminal view sets it (or calls `logs_diverted_to`) so log lines never cut through the view.
- `EPM_LOG_LEVEL`: DEBUG, INFO (default), WARNING, ERROR.

epm's own loggers and the standard library's (Celery, kombu, SQLAlchemy) write through one sink,
so a process writes one stream with one format, each line in a single write (lines from the
prefork children of a worker appending to one file do not tear each other).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import IO, Any

import structlog
from structlog.typing import EventDict, WrappedLogger

FORMATS = ("json", "console", "auto")
# The ids a log line carries when the code running knows them (blueprint §12.2, STYLE.md).
ID_FIELDS = (
    "signal_id",
    "strategy",
    "intent_id",
    "order_id",
    "client_id",
    "client_order_id",
    "ib_order_id",
    "perm_id",
    "exec_id",
)
# The bridge's payloads name epm's client order id as IB does: the order's `orderRef`.
_ALIASES = {"order_ref": "client_order_id"}
_MAX_ID_CHARS = 200
# A JSON text argument longer than this is not parsed for ids (an intent is far smaller).
_MAX_JSON_ARG_CHARS = 65_536


class LogConfigError(ValueError):
    """An EPM_LOG_* setting that cannot be used; the message names the setting and its values."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    """What `configure_logging` resolved: the level, the format and where the lines go."""

    level: int
    fmt: str
    file: Path | None


class _Sink:
    """Where every line goes. Loggers hold the sink, never the stream, so a logger cached before
    a reconfiguration (module-level `log` objects) follows the new stream and format."""

    def __init__(self) -> None:
        self.stream: IO[str] = sys.stderr
        self.json = False
        self.colors = False
        self.owned: IO[str] | None = None
        self.lock = threading.Lock()

    def write_line(self, line: str) -> None:
        with self.lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                # A closed or broken stream (the terminal went away) must not fail the work
                # that was logging.
                pass

    def after_fork(self) -> None:
        self.lock = threading.Lock()


_sink = _Sink()
os.register_at_fork(after_in_child=_sink.after_fork)


class _SinkLogger:
    """The structlog logger: every method writes the rendered line to the sink."""

    __slots__ = ("name",)

    def __init__(self, name: str | None) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        _sink.write_line(message)

    debug = info = warning = warn = error = critical = exception = fatal = failure = log = msg


def _logger_factory(*args: object) -> _SinkLogger:
    return _SinkLogger(str(args[0]) if args else None)


def _add_logger_name(logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    if isinstance(logger, _SinkLogger) and logger.name:
        event.setdefault("logger", logger.name)
    return event


def _json_default(value: object) -> object:
    """Money and quantities stay exact strings (never floats), times ISO-8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def dumps(event: Mapping[str, object]) -> str:
    """One log line of JSON: `event` first, then the rest as bound."""
    ordered = {"event": event.get("event"), **{k: v for k, v in event.items() if k != "event"}}
    return json.dumps(ordered, default=_json_default, ensure_ascii=False)


_format_exc_info = structlog.processors.format_exc_info
_console_plain = structlog.dev.ConsoleRenderer(colors=False, sort_keys=False)
_console_colored: structlog.dev.ConsoleRenderer | None = None


def _render(logger: WrappedLogger, name: str, event: EventDict) -> str:
    if _sink.json:
        return dumps(_format_exc_info(logger, name, event))
    if _sink.colors:
        global _console_colored
        if _console_colored is None:
            _console_colored = structlog.dev.ConsoleRenderer(colors=True, sort_keys=False)
        return str(_console_colored(logger, name, event))
    return str(_console_plain(logger, name, event))


def _order_id_from_ib(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """The blueprint's `order_id` is IB's order id; epm's code names it `ib_order_id`."""
    if "order_id" not in event and event.get("ib_order_id") not in (None, ""):
        event["order_id"] = event["ib_order_id"]
    return event


_SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _order_id_from_ib,
]


class _SinkHandler(logging.Handler):
    """The standard library's records (Celery, kombu, ...) rendered like epm's own lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _sink.write_line(self.format(record))
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def _parse_level(raw: str | int | None) -> int:
    if isinstance(raw, int):
        return raw
    name = (raw or os.environ.get("EPM_LOG_LEVEL") or "INFO").strip().upper()
    levels = logging.getLevelNamesMapping()
    if name not in levels or name == "NOTSET":
        choices = "DEBUG, INFO, WARNING, ERROR, CRITICAL"
        raise LogConfigError(f"EPM_LOG_LEVEL must be one of {choices}, not {name!r}")
    return levels[name]


def _parse_format(raw: str | None) -> str:
    if raw is None:
        raw = os.environ.get("EPM_LOG_FORMAT")
        if raw is None and os.environ.get("EPM_LOG_JSON") == "1":
            raw = "json"
    fmt = (raw or "auto").strip().lower()
    if fmt not in FORMATS:
        raise LogConfigError(f"EPM_LOG_FORMAT must be json, console or auto, not {fmt!r}")
    return fmt


def _open_file(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a", encoding="utf-8", buffering=1)
    except OSError as e:
        raise LogConfigError(f"EPM_LOG_FILE {str(path)!r} cannot be opened: {e}") from e


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _point_sink(stream: IO[str], owned: IO[str] | None, fmt: str) -> None:
    old = _sink.owned
    with _sink.lock:
        tty = _isatty(stream)
        _sink.stream = stream
        _sink.owned = owned
        _sink.json = fmt == "json" or (fmt == "auto" and not tty)
        _sink.colors = tty and not _sink.json and "NO_COLOR" not in os.environ
    if old is not None and old is not owned:
        old.close()


def configure_logging(
    level: str | int | None = None,
    *,
    fmt: str | None = None,
    file: str | Path | None = None,
    stream: IO[str] | None = None,
) -> LogConfig:
    """Set up structlog and the standard library's root logger for this process.

    Arguments override the EPM_LOG_* variables (module docstring); `stream` (tests, views) wins
    over a file. Safe to call again: the sink and the root handler are replaced, not added.

    Raises:
        LogConfigError: an unknown level or format, or a log file that cannot be opened.
    """
    level_no = _parse_level(level)
    resolved = _parse_format(fmt)
    if file is None and stream is None:
        file = os.environ.get("EPM_LOG_FILE") or None
    path = Path(file) if file is not None and stream is None else None
    owned = _open_file(path) if path is not None else None
    _point_sink(stream or owned or sys.stderr, owned, resolved)

    structlog.configure(
        processors=[_add_logger_name, *_SHARED, _render],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=_logger_factory,
        cache_logger_on_first_use=True,
    )
    handler = _SinkHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_SHARED],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _render],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _SinkHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
    return LogConfig(level=level_no, fmt=resolved, file=path)


@contextmanager
def logs_diverted_to(path: str | Path) -> Iterator[Path]:
    """Send this process's log lines to `path` while a live terminal view is drawn, then back."""
    target = Path(path)
    owned = _open_file(target)
    previous = (_sink.stream, _sink.owned, _sink.json, _sink.colors)
    _sink.owned = None  # the previous owned file stays open for the way back
    _point_sink(owned, owned, "json" if previous[2] else "console")
    try:
        yield target
    finally:
        with _sink.lock:
            _sink.stream, _sink.owned, _sink.json, _sink.colors = previous
        owned.close()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger whose lines carry `logger=name`; configuration may come later (lazy proxy)."""
    return structlog.get_logger(name)  # type: ignore[no-any-return]


def bound_ids(**ids: object) -> Any:
    """Bind the known ids (None values skipped) to every line logged inside the `with`."""
    return structlog.contextvars.bound_contextvars(
        **{k: v for k, v in ids.items() if v is not None}
    )


# --- Celery: the task's ids on every line logged while it runs -------------------------------


def _id_value(value: object) -> str | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value:
        return value[:_MAX_ID_CHARS]
    return None


def _ids_in(mapping: Mapping[object, object]) -> dict[str, str | int]:
    found: dict[str, str | int] = {}
    for key, value in mapping.items():
        name = _ALIASES.get(str(key), str(key))
        if name in ID_FIELDS:
            clean = _id_value(value)
            if clean is not None:
                found.setdefault(name, clean)
    return found


def ids_from_call(
    params: Sequence[str], args: Sequence[object], kwargs: Mapping[str, object]
) -> dict[str, str | int]:
    """The ids a task call names: arguments called like an id (`intent_id`), and the id fields
    of a payload argument (a dict, or an intent's JSON text). Junk yields nothing, never raises.
    """
    named: dict[str, object] = dict(zip(params, args, strict=False))
    named.update(kwargs)
    found: dict[str, str | int] = {}
    for name, value in named.items():
        if name in ID_FIELDS:
            clean = _id_value(value)
            if clean is not None:
                found.setdefault(name, clean)
            continue
        payload = value
        if isinstance(value, str) and value.lstrip().startswith("{"):
            if len(value) > _MAX_JSON_ARG_CHARS:
                continue
            try:
                payload = json.loads(value)
            except ValueError:
                continue
        if isinstance(payload, Mapping):
            for key, clean in _ids_in(payload).items():
                found.setdefault(key, clean)
    return found


_params_cache: dict[str, tuple[str, ...]] = {}


def _task_params(task: Any) -> tuple[str, ...]:
    name = str(getattr(task, "name", ""))
    if name not in _params_cache:
        try:
            params = tuple(inspect.signature(task.run).parameters)
        except (TypeError, ValueError, AttributeError):
            params = ()
        _params_cache[name] = params
    return _params_cache[name]


def _bind_task(
    task_id: str | None = None,
    task: Any = None,
    args: Sequence[object] | None = None,
    kwargs: Mapping[str, object] | None = None,
    **_: object,
) -> None:
    structlog.contextvars.clear_contextvars()
    context: dict[str, object] = {"task_id": task_id, "task": getattr(task, "name", None)}
    retries = getattr(getattr(task, "request", None), "retries", 0)
    if isinstance(retries, int) and retries > 0:
        context["retries"] = retries
    try:
        context.update(ids_from_call(_task_params(task), args or (), kwargs or {}))
    except Exception as e:  # binding ids must never stop the task
        context["bind_error"] = repr(e)[:200]
    structlog.contextvars.bind_contextvars(**context)


def _unbind_task(**_: object) -> None:
    structlog.contextvars.clear_contextvars()


def _celery_setup_logging(loglevel: int | str | None = None, **_: object) -> None:
    try:
        configure_logging(loglevel if loglevel else None)
    except LogConfigError as e:
        print(f"epm: {e}", file=sys.stderr)
        raise SystemExit(2) from e


def install_celery_logging() -> None:
    """Let epm render Celery's logging (workers, beat) and bind each task's ids while it runs.

    Connected receivers of `setup_logging` tell Celery to leave the logging setup to them.
    """
    from celery.signals import setup_logging, task_postrun, task_prerun

    setup_logging.connect(_celery_setup_logging, weak=False)
    task_prerun.connect(_bind_task, weak=False)
    task_postrun.connect(_unbind_task, weak=False)
