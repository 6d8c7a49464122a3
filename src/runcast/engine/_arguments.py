"""The arguments of engine calls, checked: ids, JSON payloads and their size, page cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection

from ulid import ULID

from runcast.engine._checks import input_problem
from runcast.engine._state import encode
from runcast.engine.definitions import WorkflowDefinition
from runcast.errors import BadUserInput, PayloadTooLarge
from runcast.limits import ID_PATTERN, MAX_EVENT_TYPE_LENGTH, MIB
from runcast.models import JSON, RunStatus

__all__ = [
    "INSTANCE_ID_PATTERN",
    "MAX_PAGE_SIZE",
    "check_event_type",
    "check_input",
    "check_page_size",
    "decode_cursor",
    "encode_cursor",
    "encode_limited",
    "format_size",
    "instance_id_or_new",
    "wanted_statuses",
]

MAX_PAGE_SIZE = 1000
"""The largest ``limit`` of ``list_runs``."""
INSTANCE_ID_PATTERN = ID_PATTERN
"""What a caller-given instance id must look like (otherwise a ULID is made)."""


def instance_id_or_new(instance_id: str | None) -> str:
    """``instance_id`` if it is well formed, a new ULID if it is ``None``.

    Raises:
        BadUserInput: ``instance_id`` does not match ``INSTANCE_ID_PATTERN``.
    """
    if instance_id is None:
        return str(ULID())
    if not isinstance(instance_id, str) or not INSTANCE_ID_PATTERN.fullmatch(instance_id):
        raise BadUserInput(
            f"instance id {instance_id!r} is not valid: use 1 to 100 letters, digits,"
            " '_' or '-', not starting with '-'"
        )
    return instance_id


def check_input(definition: WorkflowDefinition, input: JSON) -> None:
    """Raise ``BadUserInput`` unless ``input`` matches the workflow's ``input_schema``."""
    if definition.input_schema is None:
        return
    problem = input_problem(definition.input_schema, input)
    if problem is not None:
        raise BadUserInput(f"input does not match the input_schema of {definition.id!r}: {problem}")


def check_event_type(event_type: str) -> None:
    """Raise ``BadUserInput`` unless ``event_type`` is a non-empty string, short enough."""
    if not isinstance(event_type, str) or not event_type.strip():
        raise BadUserInput("event type must be a non-empty string")
    if len(event_type) > MAX_EVENT_TYPE_LENGTH:
        raise BadUserInput(f"event type is longer than {MAX_EVENT_TYPE_LENGTH} characters")


def encode_limited(value: JSON, what: str, limit: int) -> str:
    """The JSON text of ``value``, at most ``limit`` bytes.

    Raises:
        BadUserInput: ``value`` is not JSON.
        PayloadTooLarge: its JSON text is over ``limit`` bytes.
    """
    try:
        text = encode(value)
    except (TypeError, ValueError) as exc:
        raise BadUserInput(f"{what} is not JSON: {exc}") from exc
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLarge(
            f"{what} is {size} bytes, over the limit of {limit} bytes ({format_size(limit)})",
            limit=limit,
        )
    return text


def format_size(limit: int) -> str:
    """``1 MiB``, ``64 KiB``, ``1000 B``: a byte count the way limits are written."""
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    if limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} B"


def check_page_size(limit: int) -> None:
    """Raise ``BadUserInput`` unless ``limit`` is 1 to ``MAX_PAGE_SIZE``."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise BadUserInput(f"limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}")


def wanted_statuses(statuses: Collection[RunStatus] | None) -> set[RunStatus] | None:
    """The statuses a listing keeps (``None``: all); raises ``BadUserInput`` for an unknown one."""
    if statuses is None:
        return None
    try:
        return {RunStatus(s) for s in statuses}
    except ValueError as exc:
        raise BadUserInput(f"unknown run status in {statuses!r}") from exc


def encode_cursor(seq: int) -> str:
    """The cursor of the page after the run ``seq``."""
    return base64.urlsafe_b64encode(f"r1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The run ``seq`` a cursor from ``encode_cursor`` names; raises ``BadUserInput``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "r1":
            raise ValueError(cursor)
        return int(number)
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise BadUserInput(f"cursor {cursor!r} is not valid") from exc
