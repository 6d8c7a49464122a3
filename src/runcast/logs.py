"""runcast's log output: plain text lines (default) or one JSON object per line.

:func:`configure_logging` sets it up for ``runcast serve`` and ``runcast engine``:
``RUNCAST_LOG_FORMAT`` (``text`` or ``json``), ``RUNCAST_LOG_LEVEL`` (``info``) and
``RUNCAST_ACCESS_LOG`` (uvicorn's access lines, on by default). Every record carries the
fields ``run_id``, ``workflow_id``, ``operation`` and ``trace_id`` when they are known:
given by the call (``extra=``), bound for a block of work with :func:`bound_fields`, or,
for ``trace_id``, read from the current span while tracing is on.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

from runcast.errors import BadUserInput

__all__ = [
    "CONTEXT_FIELDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ContextFilter",
    "JsonFormatter",
    "LogFormat",
    "bound_fields",
    "configure_logging",
    "parse_log_format",
    "parse_log_level",
    "set_trace_id_source",
]

LogFormat = Literal["text", "json"]

LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
"""The values of ``RUNCAST_LOG_FORMAT``."""
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
"""The values of ``RUNCAST_LOG_LEVEL``."""

CONTEXT_FIELDS = ("run_id", "workflow_id", "operation", "trace_id")
"""Fields a record gets from its context (and that JSON lines always show when known)."""

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_FIELDS: ContextVar[dict[str, str] | None] = ContextVar("runcast_log_fields", default=None)
_trace_id_source: Callable[[], str | None] | None = None

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def set_trace_id_source(source: Callable[[], str | None] | None) -> None:
    """Read ``trace_id`` from ``source`` for every record (the tracing module sets it)."""
    global _trace_id_source
    _trace_id_source = source


@contextmanager
def bound_fields(**fields: str | None) -> Iterator[None]:
    """Give every record logged inside the block these fields (``None`` values are left out)."""
    current = _FIELDS.get()
    merged = {**(current or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _FIELDS.set(merged)
    try:
        yield
    finally:
        _FIELDS.reset(token)


class ContextFilter(logging.Filter):
    """Adds the bound fields and the trace id to each record that does not carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _FIELDS.get()
        if fields:
            for name, value in fields.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        source = _trace_id_source
        if source is not None and not hasattr(record, "trace_id"):
            trace_id = source()
            if trace_id is not None:
                record.trace_id = trace_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, context and extra fields.

    A record's exception is reduced to its type and message: stack traces go to the text
    format only, so a JSON log shipped to an aggregator never holds source code lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _RESERVED and not name.startswith("_"):
                entry[name] = value if _is_plain(value) else str(value)
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            entry["error"] = f"{type(error).__name__}: {error}"
        return json.dumps(entry, ensure_ascii=False, default=str)


def parse_log_format(value: str) -> LogFormat:
    """``value`` as a :data:`LogFormat`.

    Raises:
        BadUserInput: it is neither ``text`` nor ``json``.
    """
    lowered = value.strip().lower()
    for known in LOG_FORMATS:
        if lowered == known:
            return known
    raise BadUserInput(f"RUNCAST_LOG_FORMAT={value!r} is not 'text' or 'json'")


def parse_log_level(value: str) -> str:
    """``value`` as a logging level name (``debug``, ``info``, ``warning``, ``error``).

    Raises:
        BadUserInput: it is not one of those.
    """
    lowered = value.strip().lower()
    if lowered in LOG_LEVELS:
        return lowered
    raise BadUserInput(f"RUNCAST_LOG_LEVEL={value!r} is not debug, info, warning or error")


def _is_plain(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def configure_logging(
    *,
    format: LogFormat = "text",
    level: str = "info",
    access_log: bool = True,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send runcast's and uvicorn's records to ``stream`` (stderr) in ``format``.

    Args:
        format: ``text`` (one readable line) or ``json`` (one object per line).
        level: the least level shown for runcast's loggers (``debug``, ``info``, ...).
        access_log: whether uvicorn's access lines are shown (uvicorn is also told,
            with ``uvicorn.Config(access_log=...)``).
        stream: where lines go; stderr when ``None``.

    Returns:
        The handler installed (replacing any installed before by this function).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    handler.set_name("runcast")
    runcast_logger = logging.getLogger("runcast")
    runcast_logger.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.INFO if access_log else logging.WARNING)
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.setLevel(max(logging.INFO, runcast_logger.level))
    # uvicorn.error and uvicorn.access propagate to "uvicorn"; uvicorn itself is run with
    # log_config=None, so these are the only handlers (the root logger has none).
    for target in (runcast_logger, uvicorn_logger):
        for old in [h for h in target.handlers if h.get_name() == "runcast"]:
            target.removeHandler(old)
        target.addHandler(handler)
    return handler
