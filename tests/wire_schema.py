"""Checking values against the wire shapes of :mod:`runcast.wire` with JSON Schema.

The schema of a shape is generated from its ``TypedDict`` by pydantic and closed
(``additionalProperties: false`` on every object), so an undocumented field is an
error too. ``check(value, shape)`` raises ``AssertionError`` naming the path of the
first mismatch.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import jsonschema
from pydantic import TypeAdapter

from runcast.wire.times import parse_iso_time

FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or parse_iso_time(value) is not None


@FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(uuid.UUID(value))


def _is_integer(checker: object, value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def _closed(schema: Any) -> Any:
    """``schema`` with every object schema refusing fields it does not list."""
    if isinstance(schema, dict):
        closed = {key: _closed(value) for key, value in schema.items()}
        if closed.get("type") == "object" and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


@functools.cache
def validator(shape: Any) -> jsonschema.protocols.Validator:
    """The validator of ``shape`` (a ``TypedDict``, or a type built of them)."""
    schema = _closed(TypeAdapter(shape).json_schema())
    checker: jsonschema.protocols.Validator = Validator(schema, format_checker=FORMATS)
    return checker


def check(value: Any, shape: Any) -> None:
    """Raise ``AssertionError`` unless ``value`` has the shape ``shape`` describes."""
    error = jsonschema.exceptions.best_match(validator(shape).iter_errors(value))
    if error is not None:
        raise AssertionError(f"{error.json_path}: {error.message}"[:500])
