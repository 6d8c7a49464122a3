"""The workflow file format, defined once: pydantic models of one YAML or JSON file.

The loader validates every file with :class:`WorkflowFile`, turns each pydantic
error into one line (``file: node 'name': what is wrong``), and the JSON Schema
that editors use (``runcast workflows schema``) is generated from the same models
(:func:`json_schema`), so the two never disagree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from importlib import resources
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
)
from pydantic_core import ErrorDetails

__all__ = [
    "ACTIONS",
    "DURATION_UNITS",
    "NAME_RULE",
    "NODE_TYPES",
    "SCHEMA_ID",
    "Action",
    "FailBody",
    "HttpBody",
    "NodeModel",
    "RetriesModel",
    "WorkflowFile",
    "json_schema",
    "shipped_json_schema",
]

NODE_TYPES = ("step", "sleep", "sleep_until", "wait_for_event")
ACTIONS = ("return", "http", "fail", "python")
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
NAME_RULE = "use letters, digits, '-' and '_' only"
SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_PATTERN = r"^env\.[A-Za-z_][A-Za-z0-9_]*$"
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$"
PYTHON_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
RETRY_CLASSES = ("4xx", "5xx", "connection")
SCHEMA_ID = "https://runcast.dev/schemas/workflow.schema.json"


def check_duration(value: object) -> str:
    """``value`` if it is a duration with units (``30s``); raises ``ValueError`` saying why not."""
    plain_number = isinstance(value, int | float) and not isinstance(value, bool)
    if plain_number or (isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value)):
        number = str(value).strip()
        raise ValueError(f"{number} has no unit: write {number}s (or 500ms, 30s, 5m, 2h, 1d)")
    if not isinstance(value, str) or not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"{value!r} is not a duration: write e.g. 500ms, 30s, 5m, 2h, 1d")
    return value


def _duration_text(value: object) -> object:
    return check_duration(value) if value is not None else value


def _timeout_text(value: object) -> object:
    if value is None:
        return value
    text = check_duration(value)
    if not any(digit in "123456789" for digit in text):
        raise ValueError(f"{text!r} is too short: a timeout must be longer than zero")
    return text


def _timestamp_text(value: object) -> object:
    # YAML reads an unquoted timestamp as a datetime (or a date) already.
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day).isoformat()
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not an ISO-8601 timestamp or an expression giving one")
    return value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _template_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _fail_body(value: object) -> object:
    return {"message": value} if isinstance(value, str) else value


def _retry_item(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    if value in RETRY_CLASSES:
        return value
    raise ValueError(
        f"{value!r} is not a status code (100-599) or one of: " + ", ".join(RETRY_CLASSES)
    )


Duration = Annotated[
    str,
    BeforeValidator(_duration_text),
    Field(
        pattern=DURATION_PATTERN,
        description="A duration with a unit: 500ms, 30s, 5m, 2h, 1d (parts combine: 1h30m).",
    ),
]
Timeout = Annotated[
    str,
    BeforeValidator(_timeout_text),
    Field(pattern=DURATION_PATTERN, description="A duration longer than zero: 30s, 5m, 1h."),
]
Name = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description="Letters, digits, '-' and '_'. In expressions a name with '-' or a "
        'leading digit is quoted: "fetch-price".body',
    ),
]
Template = Annotated[
    str,
    BeforeValidator(_template_text, json_schema_input_type=str | int | float | bool),
    Field(description="Text; each ${expression} in it is replaced by the expression's value."),
]
RetryOn = Annotated[
    int | str,
    BeforeValidator(_retry_item, json_schema_input_type=int | Literal[RETRY_CLASSES]),
    Field(description="A status code, 4xx, 5xx, or connection (connection errors)."),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RetriesModel(_Strict):
    """How often a failing step is tried again."""

    limit: int = Field(
        0,
        ge=0,
        description="Retries after the first attempt: limit 2 means at most 3 attempts.",
    )
    delay: Duration = Field("1s", description="The wait before the first retry.")
    backoff: Literal["constant", "linear", "exponential"] = Field(
        "constant", description="constant: delay each time; linear: delay x n; exponential: x 2^n."
    )


class HttpBody(_Strict):
    """A real HTTP request; url, headers and query are templates, json is like ``return``."""

    method: Annotated[Literal[HTTP_METHODS], BeforeValidator(_upper)] = "GET"  # type: ignore[valid-type]
    url: str = Field(
        min_length=1,
        description="http:// or https:// URL; ${expression} parts are filled in.",
    )
    headers: dict[str, Template] | None = None
    query: dict[str, Template] | None = Field(
        None, description="Query parameters (URL-encoded); values are templates."
    )
    json_body: Any = Field(
        None,
        alias="json",
        description="The JSON body: strings are JMESPath expressions, as in return.",
    )
    result: Literal["body", "full"] = Field(
        "body", description="body: the parsed body; full: {status, headers, body}."
    )
    retry_on: list[RetryOn] | None = Field(
        None,
        description="Failures that are retried: status codes, 4xx, 5xx, connection. "
        "Default: [429, 5xx, connection]; any other failure ends the run at once.",
    )


class FailBody(_Strict):
    """Fail the attempt with ``message``."""

    message: str = Field(min_length=1)
    times: int | None = Field(None, ge=1, description="Only the first N attempts fail.")
    retry: bool = Field(True, description="false: the run errors at once, without retries.")


class ReturnAction(_Strict):
    return_value: Any = Field(
        alias="return",
        description="JSON built from the context: every string is a JMESPath expression "
        "(a literal string is written in backticks).",
    )


class HttpAction(_Strict):
    http: HttpBody


class FailAction(_Strict):
    fail: Annotated[FailBody, BeforeValidator(_fail_body, json_schema_input_type=str | FailBody)]


class PythonAction(_Strict):
    python: str = Field(
        pattern=PYTHON_PATTERN,
        description="module.path:function, called with the run context (sync or async).",
    )


def _first_key(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if isinstance(key, str) else None
    return None


def _node_type(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in value:
            if key in NODE_TYPES:
                return str(key)
    return None


def _tagged_by(
    tag_of: Callable[[Any], str | None], error_type: str, expected: str, tags: tuple[str, ...]
) -> Discriminator:
    """Pick the member of a tagged union by ``tag_of(value)``; no tag is error ``error_type``."""
    message = f"{expected}: " + ", ".join(tags)
    return Discriminator(tag_of, custom_error_type=error_type, custom_error_message=message)


Action = Annotated[
    Annotated[ReturnAction, Tag("return")]
    | Annotated[HttpAction, Tag("http")]
    | Annotated[FailAction, Tag("fail")]
    | Annotated[PythonAction, Tag("python")],
    _tagged_by(_first_key, "unknown_action", "must be a mapping with one key", ACTIONS),
]

When = Annotated[
    str | None,
    Field(description="A JMESPath expression; the node is skipped (status skipped) when false."),
]


class StepModel(_Strict):
    step: Name
    action: Action
    retries: RetriesModel | None = None
    timeout: Timeout | None = Field(None, description="Wall time per attempt (default 30s).")
    when: When = None


class SleepModel(_Strict):
    sleep: Name
    duration: Duration
    when: When = None


class SleepUntilModel(_Strict):
    sleep_until: Name
    until: Annotated[str, BeforeValidator(_timestamp_text)] = Field(
        min_length=1, description="An ISO-8601 timestamp, or an expression giving one."
    )
    when: When = None


class WaitForEventModel(_Strict):
    wait_for_event: Name
    event_type: str = Field(min_length=1)
    timeout: Timeout | None = Field(None, description="On expiry the run errors.")
    when: When = None


NodeModelType: TypeAlias = StepModel | SleepModel | SleepUntilModel | WaitForEventModel
ActionType: TypeAlias = ReturnAction | HttpAction | FailAction | PythonAction

NodeModel = Annotated[
    Annotated[StepModel, Tag("step")]
    | Annotated[SleepModel, Tag("sleep")]
    | Annotated[SleepUntilModel, Tag("sleep_until")]
    | Annotated[WaitForEventModel, Tag("wait_for_event")],
    _tagged_by(_node_type, "unknown_node_type", "a node's first key is its type", NODE_TYPES),
]


class RetentionModel(_Strict):
    """How long finished runs are kept after they end; unset statuses use the engine's default."""

    complete: Duration | None = Field(None, description="Runs that completed (default 7d).")
    errored: Duration | None = Field(None, description="Runs that errored (default 30d).")
    terminated: Duration | None = Field(None, description="Runs terminated (default 30d).")


class WorkflowFile(_Strict):
    """One workflow (``nodes``) or script (``url``) file."""

    model_config = ConfigDict(
        title="runcast workflow",
        json_schema_extra={"$id": SCHEMA_ID},
    )

    id: Name
    name: str | None = Field(None, min_length=1, description="Defaults to the id.")
    kind: Literal["workflow", "script"] = "workflow"
    url: str | None = Field(
        None, pattern=r"^https?://", description="A script's deployed Worker URL."
    )
    secrets: (
        dict[
            Annotated[str, Field(pattern=SECRET_NAME_PATTERN)],
            Annotated[str, Field(pattern=ENV_PATTERN)],
        ]
        | None
    ) = Field(
        None,
        description="NAME: env.VARIABLE. Read when an http step runs; usable as "
        "secrets.NAME only in http url, headers, query and json.",
    )
    input_schema: dict[str, Any] | None = Field(
        None, description="A JSON Schema the run input must match (checked at trigger)."
    )
    schedule: str | None = Field(
        None, description='A cron expression ("*/5 * * * *"): one run per tick, in UTC.'
    )
    schedule_input: Any = Field(None, description="The input of scheduled runs.")
    retention: RetentionModel | None = Field(
        None, description="How long finished runs are kept, e.g. {complete: 1d, errored: 30d}."
    )
    nodes: list[NodeModel] | None = None


def _keys(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(info.alias or name for name, info in model.model_fields.items())


_KEYS_BY_PARENT: dict[str, tuple[str, ...]] = {
    "retries": _keys(RetriesModel),
    "http": _keys(HttpBody),
    "fail": _keys(FailBody),
    "retention": _keys(RetentionModel),
}
_KEYS_BY_NODE = {
    "step": _keys(StepModel),
    "sleep": _keys(SleepModel),
    "sleep_until": _keys(SleepUntilModel),
    "wait_for_event": _keys(WaitForEventModel),
}


def _allowed_keys(loc: tuple[int | str, ...], where: tuple[int | str, ...]) -> tuple[str, ...]:
    parent = where[-2] if len(where) >= 2 else None
    if isinstance(parent, str) and parent in _KEYS_BY_PARENT:
        return _KEYS_BY_PARENT[parent]
    if len(where) == 1 and len(loc) >= 3 and loc[0] == "nodes":
        return _KEYS_BY_NODE.get(str(loc[2]), ())
    if len(where) == 1 and loc[0] != "nodes":
        return _keys(WorkflowFile)
    return ()


_PATTERN_RULES = {
    NAME_PATTERN: NAME_RULE,
    PYTHON_PATTERN: "write module.path:function",
    r"^https?://": "it must start with http:// or https://",
    ENV_PATTERN: "write env.VARIABLE_NAME",
    SECRET_NAME_PATTERN: "a secret's name is letters, digits and '_', not starting with a digit",
}
_SHAPES = {
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _special(error: ErrorDetails, path: str) -> str | None:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        if path == "action":
            return "a step needs an 'action' (one of: " + ", ".join(ACTIONS) + ")"
        return f"missing '{path}'"
    if kind == "unknown_node_type":
        if isinstance(value, dict) and value:
            first = next(iter(value))
            return f"unknown node type {first!r} (expected one of: {', '.join(NODE_TYPES)})"
        return "a node must be a mapping like {step: NAME, action: ...}"
    if kind == "unknown_action":
        if isinstance(value, dict) and len(value) == 1:
            return f"unknown action {next(iter(value))!r} (expected one of: {', '.join(ACTIONS)})"
        return "'action' must be a mapping with one key: " + ", ".join(ACTIONS)
    if kind == "string_pattern_mismatch":
        rule = _PATTERN_RULES.get(str((error.get("ctx") or {}).get("pattern")))
        if rule:
            return f"bad '{path}': {value!r} is invalid: {rule}"
    if kind in _SHAPES:
        return f"bad '{path}': {_SHAPES[kind]}"
    return None


def describe_error(error: ErrorDetails, where: tuple[int | str, ...]) -> str:
    """One line for a person: what is wrong at ``where`` (the error's path, tags removed)."""
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in where)
    path = path.lstrip(".")
    kind = error["type"]
    message = str(error["msg"])
    special = _special(error, path)
    if special is not None:
        return special
    if kind == "extra_forbidden":
        allowed = _allowed_keys(error["loc"], where)
        expected = f" (expected: {', '.join(allowed)})" if allowed else ""
        return f"unknown key '{where[-1]}'{expected}"
    message = message.removeprefix("Value error, ")
    if kind != "value_error":
        message = message[:1].lower() + message[1:]
        value = error.get("input")
        if value is None or isinstance(value, str | int | float | bool):
            message += f", not {value!r}"
    return f"bad '{path}': {message}" if path else message


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow file, generated from the models."""
    schema = WorkflowFile.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def shipped_json_schema() -> str:
    """The JSON Schema file shipped in the package (kept equal to :func:`json_schema`)."""
    return (resources.files("runcast.engine") / "workflow.schema.json").read_text("utf-8")


def schema_text() -> str:
    """:func:`json_schema` as the text of the shipped file."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
