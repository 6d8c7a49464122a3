"""Reading the query parameters, bodies and cursors of the engine's Cloudflare API.

Part of :mod:`runcast.engine.cloudflare_api`; every refusal is an :class:`ApiError`
answered with the failure envelope (400, or 413 for a body over the limit).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from starlette.requests import Request

from runcast.engine._cloudflare_shapes import (
    CODE_TOO_LARGE,
    CODE_VALIDATION,
    INSTANCE_ID_PATTERN,
    RESERVED_ID_PATTERN,
    ApiError,
)
from runcast.limits import MAX_ID_LENGTH
from runcast.models import JSON


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter ``name`` within ``[low, high]`` (``default`` when absent)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, CODE_VALIDATION, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, CODE_VALIDATION, f"{name} must be between {low} and {high}")
    return value


def date_param(request: Request, name: str) -> datetime | None:
    """The ISO-8601 query parameter ``name`` as an aware datetime, or ``None``."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, CODE_VALIDATION, f"{name} must be an ISO-8601 date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def choice_param(request: Request, name: str, choices: Sequence[str], default: str) -> str:
    """The query parameter ``name``, which must be one of ``choices``."""
    raw = request.query_params.get(name, default)
    if raw not in choices:
        raise ApiError(400, CODE_VALIDATION, f"{name} must be one of {', '.join(choices)}")
    return raw


async def json_body(request: Request, *, limit: int) -> tuple[bool, JSON]:
    """Read at most ``limit`` bytes of body; returns (present, value)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, CODE_TOO_LARGE, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, CODE_TOO_LARGE, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return False, None
    try:
        return True, json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, CODE_VALIDATION, "the body is not valid JSON") from None


def _check_instance_id(value: JSON) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        raise ApiError(
            400, CODE_VALIDATION, f"instance_id must be a string of 1 to {MAX_ID_LENGTH} characters"
        )
    if not INSTANCE_ID_PATTERN.fullmatch(value):
        raise ApiError(400, CODE_VALIDATION, "instance_id must match ^[a-zA-Z0-9_][a-zA-Z0-9-_]*$")
    if RESERVED_ID_PATTERN.match(value):
        raise ApiError(400, CODE_VALIDATION, "instance_id of the form cf_<64 hex> is reserved")
    return value


def _decode_params(value: JSON) -> JSON:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def creation(item: JSON) -> tuple[str | None, JSON]:
    """The ``(instance_id, params)`` of one create request item."""
    if not isinstance(item, dict):
        raise ApiError(400, CODE_VALIDATION, "each instance to create must be a JSON object")
    return _check_instance_id(item.get("instance_id")), _decode_params(item.get("params"))


def encode_cursor(direction: str, after: str) -> str:
    """The opaque cursor for the position after instance ``after``."""
    raw = json.dumps({"d": direction, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The ``(direction, after)`` of a cursor made by :func:`encode_cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        direction, after = data["d"], data["a"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, CODE_VALIDATION, "cursor is not valid") from None
    if direction not in ("asc", "desc") or not isinstance(after, str):
        raise ApiError(400, CODE_VALIDATION, "cursor is not valid")
    return direction, after
