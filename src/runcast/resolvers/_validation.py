"""Argument checks done before any upstream call, each failing with ``BadUserInput``."""

from __future__ import annotations

from runcast.errors import BadUserInput, PayloadTooLarge
from runcast.limits import (
    ID_PATTERN,
    MAX_EVENT_TYPE_LENGTH,
    MAX_ID_LENGTH,
    MAX_PAGE_SIZE,
    json_size,
)
from runcast.models import JSON

__all__ = [
    "MAX_EVENT_TYPE_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_PAGE_SIZE",
    "check_event_type",
    "check_id",
    "check_page_size",
    "check_payload_size",
]


def check_id(value: str, *, argument: str) -> str:
    """Return ``value`` if it is a well-formed workflow or instance id.

    Raises:
        BadUserInput: empty, longer than 100 characters, or other than letters,
            digits, ``-`` and ``_`` (not starting with ``-``).
    """
    if not value:
        raise BadUserInput(f"{argument} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise BadUserInput(
            f"{argument} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
        )
    if not ID_PATTERN.fullmatch(value):
        raise BadUserInput(
            f"{argument} {value!r} is malformed: use letters, digits, '-' and '_' "
            "(not starting with '-')"
        )
    return value


def check_event_type(value: str) -> str:
    """Return ``value`` if it is a usable event type (1 to 100 characters, no blanks only)."""
    if not value.strip():
        raise BadUserInput("eventType must not be empty")
    if len(value) > MAX_EVENT_TYPE_LENGTH:
        raise BadUserInput(
            f"eventType is {len(value)} characters long; the limit is {MAX_EVENT_TYPE_LENGTH}"
        )
    return value


def check_payload_size(payload: JSON, *, limit: int, argument: str = "payload") -> None:
    """Refuse ``payload`` when its JSON encoding is larger than ``limit`` bytes.

    Raises:
        PayloadTooLarge: the encoded size is over ``limit``; the message names the limit.
    """
    try:
        size = json_size(payload)
    except RecursionError as exc:
        raise BadUserInput(f"{argument} nests too deeply to be stored") from exc
    except (TypeError, ValueError) as exc:
        raise BadUserInput(f"{argument} is not JSON: {exc}") from exc
    if size > limit:
        raise PayloadTooLarge(
            f"{argument} is {size} bytes as JSON; the limit is {limit} bytes",
            limit=limit,
        )


def check_page_size(first: int) -> int:
    """Return ``first`` if it is between 0 and 100."""
    if first < 0 or first > MAX_PAGE_SIZE:
        raise BadUserInput(f"first must be between 0 and {MAX_PAGE_SIZE}, got {first}")
    return first
