"""Reading the query parameters, bodies and cursors of the engine's Cloudflare API.

Part of :mod:`runcast.engine.cloudflare_api`; every refusal is an :class:`ApiError`
answered with the failure envelope (400, or 413 for a body over the limit).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from starlette.requests import Request

from runcast.engine._cloudflare_shapes import (
    CODE_TOO_LARGE,
    CODE_VALIDATION,
    DEFAULT_INSTANCES_PER_PAGE,
    INSTANCE_ID_PATTERN,
    ApiError,
    instance_status,
)
from runcast.limits import MAX_ID_LENGTH
from runcast.models import JSON, Run
from runcast.wire import cloudflare as cf
from runcast.wire.cloudflare import (
    INSTANCE_STATUSES,
    MAX_PER_PAGE,
    RESERVED_ID_PATTERN,
    InstanceStatus,
    decode_json_text,
)
from runcast.wire.times import parse_iso_time


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
    value = parse_iso_time(raw)
    if value is None:
        raise ApiError(400, CODE_VALIDATION, f"{name} must be an ISO-8601 date-time")
    return value


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


def creation(item: JSON) -> tuple[str | None, JSON]:
    """The ``(instance_id, params)`` of one create request item."""
    if not isinstance(item, dict):
        raise ApiError(400, CODE_VALIDATION, "each instance to create must be a JSON object")
    return _check_instance_id(item.get("instance_id")), decode_json_text(item.get("params"))


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


def restart_from(body: dict[str, object]) -> str | None:
    """The step name of a restart's ``from: {name, count?, type?}`` (``None`` without one)."""
    origin = body.get("from")
    if origin is None:
        return None
    name = origin.get("name") if isinstance(origin, dict) else None
    if not isinstance(name, str) or not 1 <= len(name) <= 256:
        raise ApiError(400, CODE_VALIDATION, "from.name must be a step name of 1 to 256 characters")
    count = origin.get("count", 1) if isinstance(origin, dict) else 1
    if count != 1:
        raise ApiError(400, CODE_VALIDATION, "from.count must be 1: step names are unique here")
    return name


@dataclass(frozen=True)
class InstanceQuery:
    """The query of list-instances, read and checked by :func:`instance_query`."""

    per_page: int
    page: int
    paged: bool
    """Whether ``page`` was given (page-based ``result_info``, no cursor)."""
    direction: str
    status: InstanceStatus | None
    date_start: datetime | None
    date_end: datetime | None
    after: str | None
    """The instance the cursor points after."""

    def select(self, runs: list[Run]) -> list[Run]:
        """``runs`` (newest first) filtered by status and dates, in the query's direction."""
        if self.status is not None:
            runs = [r for r in runs if instance_status(r) == self.status]
        start, end = self.date_start, self.date_end
        if start is not None:
            runs = [r for r in runs if r.created_at is not None and r.created_at >= start]
        if end is not None:
            runs = [r for r in runs if r.created_at is not None and r.created_at <= end]
        if self.direction == "asc":
            runs.reverse()
        return runs

    def page_of(self, runs: list[Run]) -> tuple[list[Run], cf.ResultInfo]:
        """The page of ``runs`` the query asks for, and its ``result_info``."""
        if self.after is not None:
            ids = [r.instance_id for r in runs]
            start = ids.index(self.after) + 1 if self.after in ids else len(runs)
        else:
            start = (self.page - 1) * self.per_page
        chunk = runs[start : start + self.per_page]
        info: cf.ResultInfo = {
            "count": len(chunk),
            "per_page": self.per_page,
            "total_count": len(runs),
        }
        if self.paged:
            info["page"] = self.page
            info["total_pages"] = max(1, -(-len(runs) // self.per_page))
        elif start + self.per_page < len(runs) and chunk:
            info["cursor"] = encode_cursor(self.direction, chunk[-1].instance_id)
        return chunk, info


def instance_query(request: Request) -> InstanceQuery:
    """The checked query parameters of list-instances."""
    query = request.query_params
    if "cursor" in query and "page" in query:
        raise ApiError(400, CODE_VALIDATION, "cursor and page are mutually exclusive")
    per_page = int_param(request, "per_page", DEFAULT_INSTANCES_PER_PAGE, 1, MAX_PER_PAGE)
    page = int_param(request, "page", 1, 1, 1_000_000)
    direction = choice_param(request, "direction", ("asc", "desc"), "desc")
    status = _instance_status(query.get("status"))
    date_start = date_param(request, "date_start")
    date_end = date_param(request, "date_end")
    cursor = query.get("cursor") or None
    after: str | None = None
    if cursor is not None:
        direction, after = decode_cursor(cursor)
    return InstanceQuery(
        per_page, page, "page" in query, direction, status, date_start, date_end, after
    )


def _instance_status(raw: str | None) -> InstanceStatus | None:
    for status in INSTANCE_STATUSES:
        if raw == status:
            return status
    if raw is not None:
        raise ApiError(
            400, CODE_VALIDATION, f"status must be one of {', '.join(INSTANCE_STATUSES)}"
        )
    return None
