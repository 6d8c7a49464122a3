"""A small checker of the Cloudflare Workflows API shapes, built from the reference field lists.

Each schema says which fields are required and which optional (from
``shared/reference/cloudflare-workflows-api.md``); an unexpected field is an error
too, so the local API sends nothing undocumented. ``check(value, schema)`` raises
``AssertionError`` naming the path of the first mismatch.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

Schema = Callable[[Any, str], None]


def _fail(path: str, message: str, value: Any) -> None:
    raise AssertionError(f"{path or '$'}: {message}, got {value!r}"[:500])


def check(value: Any, schema: Schema) -> None:
    """Raise ``AssertionError`` unless ``value`` has the shape ``schema`` describes."""
    schema(value, "$")


def of_type(*types: type, name: str) -> Schema:
    """A value of one of ``types`` (``bool`` never counts as a number)."""

    def checker(value: Any, path: str) -> None:
        if isinstance(value, bool) and bool not in types:
            _fail(path, f"expected {name}", value)
        if not isinstance(value, types):
            _fail(path, f"expected {name}", value)

    return checker


STR = of_type(str, name="string")
INT = of_type(int, name="integer")
NUM = of_type(int, float, name="number")
BOOL = of_type(bool, name="boolean")


def ANY(value: Any, path: str) -> None:
    """Any JSON value."""


def NULL(value: Any, path: str) -> None:
    """JSON null."""
    if value is not None:
        _fail(path, "expected null", value)


def DATE(value: Any, path: str) -> None:
    """An ISO-8601 date-time string."""
    STR(value, path)
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(path, "expected an ISO-8601 date-time", value)


def UUID(value: Any, path: str) -> None:
    """A UUID string."""
    STR(value, path)
    try:
        uuid.UUID(value)
    except ValueError:
        _fail(path, "expected a uuid", value)


def const(expected: Any) -> Schema:
    """Exactly ``expected``."""

    def checker(value: Any, path: str) -> None:
        if value != expected or type(value) is not type(expected):
            _fail(path, f"expected {expected!r}", value)

    return checker


def one_of(*choices: str) -> Schema:
    """One of the string ``choices``."""

    def checker(value: Any, path: str) -> None:
        if value not in choices:
            _fail(path, f"expected one of {choices}", value)

    return checker


def nullable(schema: Schema) -> Schema:
    """Null or ``schema``."""

    def checker(value: Any, path: str) -> None:
        if value is not None:
            schema(value, path)

    return checker


def either(*schemas: Schema) -> Schema:
    """Any one of ``schemas``."""

    def checker(value: Any, path: str) -> None:
        problems = []
        for schema in schemas:
            try:
                schema(value, path)
                return
            except AssertionError as exc:
                problems.append(str(exc))
        _fail(path, "matches none of: " + " | ".join(problems), value)

    return checker


def arr(item: Schema, *, min_items: int = 0) -> Schema:
    """A list of ``item``."""

    def checker(value: Any, path: str) -> None:
        if not isinstance(value, list):
            _fail(path, "expected an array", value)
        if len(value) < min_items:
            _fail(path, f"expected at least {min_items} items", value)
        for index, element in enumerate(value):
            item(element, f"{path}[{index}]")

    return checker


def obj(required: Mapping[str, Schema], optional: Mapping[str, Schema] | None = None) -> Schema:
    """An object with every ``required`` field, maybe ``optional`` ones, and nothing else."""
    optional = optional or {}

    def checker(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            _fail(path, "expected an object", value)
        for key, schema in required.items():
            if key not in value:
                _fail(path, f"missing field {key!r}", sorted(value))
            schema(value[key], f"{path}.{key}")
        for key, element in value.items():
            if key in required:
                continue
            if key not in optional:
                _fail(path, f"undocumented field {key!r}", sorted(value))
            optional[key](element, f"{path}.{key}")

    return checker


def tagged(tag: str, variants: Mapping[str, Schema]) -> Schema:
    """A union told apart by the value of field ``tag``."""

    def checker(value: Any, path: str) -> None:
        if not isinstance(value, dict) or value.get(tag) not in variants:
            _fail(path, f"expected {tag} in {sorted(variants)}", value)
        variants[value[tag]](value, path)

    return checker


STATUSES = (
    "queued",
    "running",
    "paused",
    "errored",
    "terminated",
    "complete",
    "waitingForPause",
    "waiting",
    "rollingBack",
)
INSTANCE_STATUS = one_of(*STATUSES)
TRIGGER_SOURCE = one_of("unknown", "api", "binding", "event", "cron")
MESSAGE = obj({"code": INT, "message": STR})
RESULT_INFO = obj(
    {"count": INT, "per_page": INT, "total_count": INT},
    {"cursor": STR, "page": INT, "total_pages": INT},
)
ERROR = nullable(obj({"name": STR, "message": STR}))
STRING_OR_NUMBER = either(STR, NUM)

WORKFLOW = obj(
    {
        "id": UUID,
        "name": STR,
        "class_name": STR,
        "script_name": STR,
        "created_on": DATE,
        "modified_on": DATE,
        "triggered_on": nullable(DATE),
        "instances": obj({}, dict.fromkeys(STATUSES, INT)),
    },
    {"schedules": arr(obj({"cron": STR, "next_instance": DATE}))},
)
CREATED = obj(
    {"id": STR, "status": INSTANCE_STATUS, "version_id": UUID, "workflow_id": UUID},
    {"trigger_source": TRIGGER_SOURCE},
)
LIST_ITEM = obj(
    {
        "id": STR,
        "status": INSTANCE_STATUS,
        "created_on": DATE,
        "modified_on": DATE,
        "started_on": nullable(DATE),
        "ended_on": nullable(DATE),
        "version_id": UUID,
        "workflow_id": UUID,
    },
    {"trigger_source": TRIGGER_SOURCE},
)
ATTEMPT = obj({"start": DATE, "end": nullable(DATE), "success": nullable(BOOL), "error": ERROR})
CONFIG = obj(
    {
        "retries": obj(
            {"limit": NUM, "delay": STRING_OR_NUMBER},
            {"backoff": one_of("constant", "linear", "exponential")},
        ),
        "timeout": STRING_OR_NUMBER,
    },
    {"sensitive": const("output")},
)
STEP_STEP = obj(
    {
        "type": one_of("step", "rollback"),
        "name": STR,
        "start": DATE,
        "end": nullable(DATE),
        "success": nullable(BOOL),
        "output": nullable(STR),
        "attempts": arr(ATTEMPT),
        "config": CONFIG,
    }
)
STEP_SLEEP = obj(
    {
        "type": const("sleep"),
        "name": STR,
        "start": DATE,
        "end": DATE,
        "finished": BOOL,
        "error": ERROR,
    }
)
STEP_TERMINATION = obj({"type": const("termination"), "trigger": obj({"source": STR})})
STEP_WAIT = obj(
    {
        "type": const("waitForEvent"),
        "name": STR,
        "start": DATE,
        "end": DATE,
        "finished": BOOL,
        "error": ERROR,
    },
    {"output": STR, "event_type": STR},
)
STEP = tagged(
    "type",
    {
        "step": STEP_STEP,
        "rollback": STEP_STEP,
        "sleep": STEP_SLEEP,
        "termination": STEP_TERMINATION,
        "waitForEvent": STEP_WAIT,
    },
)
INSTANCE = obj(
    {
        "status": INSTANCE_STATUS,
        "queued": DATE,
        "start": nullable(DATE),
        "end": nullable(DATE),
        "success": nullable(BOOL),
        "error": ERROR,
        "output": STRING_OR_NUMBER,
        "params": ANY,
        "trigger": obj({"source": TRIGGER_SOURCE}),
        "versionId": UUID,
        "step_count": INT,
    },
    {
        "steps": arr(STEP),
        "rollback": nullable(
            obj({"outcome": one_of("complete", "failed"), "error": ERROR}),
        ),
        "schedule": obj({"cron": STR, "scheduledTime": NUM}),
    },
)
STEP_RESULT = obj(
    {"status": INSTANCE_STATUS, "error": ERROR},
    {"output": ANY, "event_type": STR},
)
STATUS_RESULT = obj({"status": INSTANCE_STATUS, "timestamp": DATE})
EVENT_RESULT = obj({"instanceId": STR, "timestamp": DATE})


def success(result: Schema, *, listing: bool = False) -> Schema:
    """The success envelope around ``result``; ``listing`` requires ``result_info``."""
    fields: dict[str, Schema] = {
        "success": const(True),
        "errors": arr(MESSAGE),
        "messages": arr(MESSAGE),
        "result": result,
    }
    if listing:
        return obj({**fields, "result_info": RESULT_INFO})
    return obj(fields)


FAILURE = obj(
    {
        "success": const(False),
        "errors": arr(MESSAGE, min_items=1),
        "messages": arr(MESSAGE),
        "result": NULL,
    }
)


def is_cursor(value: Any) -> bool:
    """Whether ``value`` looks like an opaque cursor (non-empty URL-safe text)."""
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_\-=.]+", value) is not None
